//! `atex fmf`: inspect FMF trees (canonical dump, tmt discovery, node display).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use atex::fmf::{self, Context, DiscoverOptions, FmfError, Tree};

/// Arguments of `atex fmf`.
#[derive(clap::Args, Debug)]
pub struct FmfArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: FmfCommand,
}

/// `atex fmf` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum FmfCommand {
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
    /// Discover tests through a tmt plan; prints one JSON object per test.
    Discover {
        /// Tree path (any directory inside the tree).
        tree: PathBuf,
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
        /// Do not resolve beakerlib libraries.
        #[arg(long)]
        no_libraries: bool,
        /// Skip plan steps atex cannot run (one warning each) instead of failing.
        #[arg(long)]
        skip_unsupported_steps: bool,
        /// Allow library requirements whose `path` is in DIR although it is outside the
        /// tree (repeatable; otherwise such a library is refused).
        #[arg(long = "library-path", value_name = "DIR")]
        library_paths: Vec<PathBuf>,
    },
    /// Show nodes in a human-friendly form.
    Show {
        /// Tree path (any directory inside the tree).
        tree: PathBuf,
        /// Node name (default: all listed nodes).
        name: Option<String>,
        /// Context dimension `KEY=VALUE` for adjust (repeatable; last wins).
        #[arg(long = "context", value_name = "K=V", allow_hyphen_values = true)]
        context: Vec<String>,
    },
}

fn context(pairs: &[String]) -> Result<Context, FmfError> {
    Context::from_pairs(pairs).map_err(|bad| FmfError::Usage {
        message: format!("--context '{bad}' is not KEY=VALUE"),
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
    eprintln!("atex fmf: {err}");
    if json {
        let _ = emit(&format!("{{\"error\":\"{}\"}}\n", err.kind()));
    }
    ExitCode::from(1)
}

/// Run `atex fmf`.
pub fn run(args: FmfArgs) -> ExitCode {
    match args.cmd {
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
        FmfCommand::Discover {
            tree,
            plan,
            context: ctx,
            filter,
            names,
            exclude,
            no_libraries,
            skip_unsupported_steps,
            library_paths,
        } => {
            let result = context(&ctx).and_then(|context| {
                fmf::discover(&DiscoverOptions {
                    tree: tree.clone(),
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
            tree,
            name,
            context: ctx,
        } => {
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
