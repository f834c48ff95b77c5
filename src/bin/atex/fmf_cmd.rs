//! `atex fmf`: inspect FMF trees (canonical dump, tmt discovery, node display).
//!
//! Two forms live side by side:
//!
//! - upstream's: `atex fmf [--root DIR] [--plan NAME] [-t RE]... [--exclude RE]...
//!   [--condition EXPR]... [--filter EXPR]... [-c KEY=VALUE]... requires|discover|show`
//!   (`req` and `di` as aliases): the tests of a plan, printed as packages, names or
//!   metadata; bad input exits with 2;
//! - atex's own, with the tree as an argument: `dump TREE`, `discover TREE` (JSON lines),
//!   `show TREE [NAME]` (tree nodes); errors exit with 1.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use atex::fmf::{self, Context, DiscoverOptions, DiscoveredTests, FmfError, Tree};

/// Arguments of `atex fmf`.
#[derive(clap::Args, Debug)]
pub struct FmfArgs {
    /// Tree root for `requires`, `discover` and `show` without a TREE argument (any
    /// directory inside the tree; default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// tmt plan whose tests to use (default: every test of the tree).
    #[arg(long, value_name = "NAME")]
    pub plan: Option<String>,
    /// Test name regex (repeatable; any may match).
    #[arg(
        short = 't',
        long = "test",
        value_name = "RE",
        allow_hyphen_values = true
    )]
    pub tests: Vec<String>,
    /// Exclude test names matching this regex (repeatable).
    #[arg(long = "exclude", value_name = "RE", allow_hyphen_values = true)]
    pub excludes: Vec<String>,
    /// Python-like condition over the test's metadata (repeatable; all must hold).
    #[arg(long = "condition", value_name = "EXPR", allow_hyphen_values = true)]
    pub conditions: Vec<String>,
    /// fmf filter expression (repeatable; all must match).
    #[arg(long = "filter", value_name = "EXPR", allow_hyphen_values = true)]
    pub filters: Vec<String>,
    /// Context dimension `KEY=VALUE` for adjust (repeatable; last wins).
    #[arg(short = 'c', value_name = "KEY=VALUE", allow_hyphen_values = true)]
    pub context: Vec<String>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: FmfCommand,
}

/// How discovery resolves libraries and plan steps (`requires`, `discover`, `show`).
#[derive(clap::Args, Debug, Default)]
pub struct DiscoveryFlags {
    /// Do not resolve beakerlib libraries.
    #[arg(long)]
    pub no_libraries: bool,
    /// Skip plan steps atex cannot run (one warning each) instead of failing.
    #[arg(long)]
    pub skip_unsupported_steps: bool,
    /// Allow library requirements whose `path` is in DIR although it is outside the
    /// tree (repeatable; otherwise such a library is refused).
    #[arg(long = "library-path", value_name = "DIR")]
    pub library_paths: Vec<PathBuf>,
}

/// `atex fmf` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum FmfCommand {
    /// Print the sorted, unique packages the selected tests and the plan need: the tests'
    /// `require` and `recommend` strings (with the packages their beakerlib libraries need;
    /// not the libraries themselves, unless one could not be fetched) and the plan's
    /// `prepare: how: install` packages, one per line.
    #[command(visible_alias = "req")]
    Requires {
        #[command(flatten)]
        flags: DiscoveryFlags,
    },
    /// Print the listed nodes of a tree in the canonical dump format.
    Dump {
        /// Tree path (any directory inside the tree).
        tree: PathBuf,
        /// Context dimension `KEY=VALUE` for adjust (repeatable; last wins).
        #[arg(long = "context", value_name = "K=V", allow_hyphen_values = true)]
        context: Vec<String>,
        /// Filter expression (repeatable; all must match).
        #[arg(long = "filter", value_name = "EXPR", allow_hyphen_values = true)]
        filter: Vec<String>,
        /// Node name regex (repeatable; any may match).
        #[arg(long = "names", value_name = "RE", allow_hyphen_values = true)]
        names: Vec<String>,
    },
    /// Discover tests through a tmt plan. Without TREE (upstream's form, options before
    /// `discover`): one test name per line. With TREE: one JSON object per test.
    #[command(visible_alias = "di")]
    Discover {
        /// Tree path (any directory inside the tree).
        tree: Option<PathBuf>,
        /// Plan node name (default: all tests of the tree through a default plan).
        #[arg(long)]
        plan: Option<String>,
        /// Context dimension `KEY=VALUE` for adjust (repeatable; last wins).
        #[arg(long = "context", value_name = "K=V", allow_hyphen_values = true)]
        context: Vec<String>,
        /// Filter expression (repeatable).
        #[arg(long = "filter", value_name = "EXPR", allow_hyphen_values = true)]
        filter: Vec<String>,
        /// Test name regex (repeatable).
        #[arg(long = "names", value_name = "RE", allow_hyphen_values = true)]
        names: Vec<String>,
        /// Exclude test names matching this regex (repeatable).
        #[arg(long = "exclude", value_name = "RE", allow_hyphen_values = true)]
        exclude: Vec<String>,
        #[command(flatten)]
        flags: DiscoveryFlags,
    },
    /// Without TREE (upstream's form): each selected test's name and metadata (one
    /// `  key: JSON` line per key). With TREE: nodes of the tree in a human-friendly form.
    Show {
        /// Tree path (any directory inside the tree).
        tree: Option<PathBuf>,
        /// Node name (default: all listed nodes; only with TREE).
        name: Option<String>,
        /// Context dimension `KEY=VALUE` for adjust (repeatable; last wins; only with TREE).
        #[arg(long = "context", value_name = "K=V", allow_hyphen_values = true)]
        context: Vec<String>,
        #[command(flatten)]
        flags: DiscoveryFlags,
    },
}

/// The options of upstream's form given before the subcommand, if any.
fn upstream_options_used(args: &FmfArgs) -> Option<&'static str> {
    if args.root.is_some() {
        Some("--root")
    } else if args.plan.is_some() {
        Some("--plan")
    } else if !args.tests.is_empty() {
        Some("--test")
    } else if !args.excludes.is_empty() {
        Some("--exclude")
    } else if !args.conditions.is_empty() {
        Some("--condition")
    } else if !args.filters.is_empty() {
        Some("--filter")
    } else if !args.context.is_empty() {
        Some("-c")
    } else {
        None
    }
}

/// Discovery for upstream's form: the options before the subcommand.
fn discover_upstream(args: &FmfArgs, flags: &DiscoveryFlags) -> Result<DiscoveredTests, FmfError> {
    let mut opts = upstream_options(args.root.clone(), args.plan.clone(), &args.context, flags)?;
    opts.names = args.tests.clone();
    opts.excludes = args.excludes.clone();
    opts.conditions = args.conditions.clone();
    opts.filters = args.filters.clone();
    fmf::discover(&opts)
}

/// The discovery options of upstream's form (`--root`, `--plan`, `-c`, the discovery
/// flags); `-c` pairs are checked.
fn upstream_options(
    root: Option<PathBuf>,
    plan: Option<String>,
    context_pairs: &[String],
    flags: &DiscoveryFlags,
) -> Result<DiscoverOptions, FmfError> {
    for pair in context_pairs {
        if pair.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return Err(FmfError::Usage {
                message: format!("-c '{pair}' is not KEY=VALUE"),
            });
        }
    }
    let mut opts = DiscoverOptions::new(root.unwrap_or_else(|| PathBuf::from(".")));
    opts.plan = plan;
    opts.context = context(context_pairs)?;
    opts.libraries = !flags.no_libraries;
    opts.skip_unsupported_steps = flags.skip_unsupported_steps;
    opts.library_paths = flags.library_paths.clone();
    Ok(opts)
}

/// The packages `atex fmf --root ROOT [--plan PLAN] [-c K=V]... requires` prints: what the
/// plan installs and its tests require and recommend.
#[cfg_attr(not(feature = "podman"), allow(dead_code))]
pub fn required_packages(
    root: PathBuf,
    plan: Option<String>,
    context_pairs: &[String],
    flags: &DiscoveryFlags,
) -> Result<Vec<String>, FmfError> {
    let opts = upstream_options(Some(root), plan, context_pairs, flags)?;
    Ok(fmf::discover(&opts)?.all_packages())
}

/// Runs upstream's form: `print` turns the discovered tests into the output; an error
/// exits with 2.
fn run_upstream(
    args: &FmfArgs,
    flags: &DiscoveryFlags,
    print: impl FnOnce(&DiscoveredTests) -> String,
) -> ExitCode {
    match discover_upstream(args, flags) {
        Ok(found) => emit(&print(&found)),
        Err(e) => {
            crate::errors::print(&e);
            ExitCode::from(2)
        }
    }
}

/// A usage mistake: mixing the two forms.
fn mixed(option: &str, sub: &str) -> ExitCode {
    crate::errors::print_message(&format!(
        "{option} before '{sub}' selects upstream's form, which takes no TREE argument \
         (use `atex fmf --root TREE ... {sub}` or `atex fmf {sub} TREE ...`)"
    ));
    ExitCode::from(2)
}

fn context(pairs: &[String]) -> Result<Context, FmfError> {
    Context::from_pairs(pairs).map_err(|bad| FmfError::Usage {
        message: format!("--context {bad}"),
    })
}

fn emit(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn fail(err: &FmfError, json: bool) -> ExitCode {
    crate::errors::print(err);
    if json {
        let _ = emit(&format!("{{\"error\":\"{}\"}}\n", err.kind()));
    }
    ExitCode::from(1)
}

/// Run `atex fmf`.
pub fn run(args: FmfArgs) -> ExitCode {
    match run_upstream_form(&args) {
        Some(code) => code,
        None => run_tree_form(args.cmd),
    }
}

/// Upstream's form (and mistakes mixing the forms); `None` for the forms with a TREE.
fn run_upstream_form(args: &FmfArgs) -> Option<ExitCode> {
    let upstream = upstream_options_used(args);
    let code = match &args.cmd {
        FmfCommand::Requires { flags } => run_upstream(args, flags, |found| {
            found.all_packages().into_iter().map(|p| p + "\n").collect()
        }),
        FmfCommand::Discover {
            tree: None,
            plan: None,
            context,
            filter,
            names,
            exclude,
            flags,
        } if context.is_empty() && filter.is_empty() && names.is_empty() && exclude.is_empty() => {
            run_upstream(args, flags, |found| {
                found.names().map(|n| format!("{n}\n")).collect()
            })
        }
        FmfCommand::Show {
            tree: None,
            name: None,
            context,
            flags,
        } if context.is_empty() => run_upstream(args, flags, |found| {
            found.tests.iter().map(|t| t.show_text()).collect()
        }),
        FmfCommand::Discover { tree: None, .. } => {
            crate::errors::print_message(
                "the options after 'discover' (--plan, --context, --filter, --names, \
                 --exclude) need a TREE argument; upstream's form takes its options before \
                 'discover'",
            );
            ExitCode::from(2)
        }
        FmfCommand::Show { tree: None, .. } => {
            crate::errors::print_message("'show --context' needs a TREE argument");
            ExitCode::from(2)
        }
        cmd => {
            let sub = match cmd {
                FmfCommand::Discover { .. } => "discover",
                FmfCommand::Show { .. } => "show",
                _ => "dump",
            };
            return upstream.map(|option| mixed(option, sub));
        }
    };
    Some(code)
}

/// The forms with a TREE argument: `dump`, `discover TREE`, `show TREE`.
fn run_tree_form(cmd: FmfCommand) -> ExitCode {
    match cmd {
        FmfCommand::Dump {
            tree,
            context: ctx,
            filter,
            names,
        } => {
            let result = context(&ctx).and_then(|c| {
                let mut t = Tree::load(&tree)?;
                t.adjust(&c)?;
                let text = t.dump(&filter, &names);
                // The process exits right after printing: skip freeing the (large)
                // tree piece by piece, the OS reclaims it at once.
                std::mem::forget(t);
                text
            });
            match result {
                Ok(text) => emit(&text),
                Err(e) => fail(&e, true),
            }
        }
        // Handled by `run_upstream_form`.
        FmfCommand::Requires { .. }
        | FmfCommand::Discover { tree: None, .. }
        | FmfCommand::Show { tree: None, .. } => ExitCode::from(2),
        FmfCommand::Discover {
            tree: Some(tree),
            plan,
            context: ctx,
            filter,
            names,
            exclude,
            flags:
                DiscoveryFlags {
                    no_libraries,
                    skip_unsupported_steps,
                    library_paths,
                },
        } => {
            let result = context(&ctx).and_then(|context| {
                fmf::discover(&DiscoverOptions {
                    tree,
                    plan,
                    context,
                    names,
                    filters: filter,
                    conditions: Vec::new(),
                    excludes: exclude,
                    libraries: !no_libraries,
                    cache_dir: None,
                    skip_unsupported_steps,
                    library_paths,
                })
            });
            match result {
                Ok(found) => {
                    let mut text = String::new();
                    for t in &found.tests {
                        text.push_str(&t.to_json_line());
                        text.push('\n');
                    }
                    emit(&text)
                }
                Err(e) => fail(&e, false),
            }
        }
        FmfCommand::Show {
            tree: Some(tree),
            name,
            context: ctx,
            flags,
        } => {
            if flags.no_libraries || flags.skip_unsupported_steps || !flags.library_paths.is_empty()
            {
                crate::errors::print_message(
                    "--no-libraries, --skip-unsupported-steps and --library-path are for \
                     upstream's form of 'show' (without a TREE argument)",
                );
                return ExitCode::from(2);
            }
            let result = context(&ctx).and_then(|c| {
                let mut t = Tree::load(&tree)?;
                t.adjust(&c)?;
                let nodes: Vec<&fmf::Node> = match &name {
                    Some(n) => t.find(n).into_iter().collect(),
                    None => t.selected(),
                };
                if nodes.is_empty() {
                    return Err(FmfError::General {
                        message: format!("node '{}' not found", name.unwrap_or_default()),
                    });
                }
                let mut text = String::new();
                for n in nodes {
                    text.push_str(&fmf::dump::show_node(n));
                    text.push('\n');
                }
                Ok(text)
            });
            match result {
                Ok(text) => emit(&text),
                Err(e) => fail(&e, false),
            }
        }
    }
}
