//! `atex run`: discover FMF tests and run them on a pool of remotes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atex::aggregator::{Aggregator, MultiAggregator, ReportAggregator, ReportOutputs};
use atex::executor::beakerlib::BeakerlibFramework;
use atex::executor::fmf::{FmfExecutorFactory, FmfOptions};
use atex::fmf::{Context, DiscoverOptions, DiscoveredTests};
use atex::orchestrator::adhoc::{Policy, SetupHook, TestInfo};
use atex::orchestrator::events::event_channel;
use atex::orchestrator::render::{Mode, Renderer, SummaryTable};
use atex::orchestrator::{AdHocOrchestrator, RunSummary};
use atex::provisioner::{LocalProvisioner, Provisioner};
use atex::scope::{Scope, ShutdownOptions};

use crate::errors;

mod args;
mod resume;

use args::Order;
pub use args::RunArgs;

/// Exit code: every test passed.
const EXIT_PASSED: u8 = 0;
/// Exit code: some test did not pass (its verdict is `warn`, `fail`, `error` or `infra`) or
/// did not run.
const EXIT_FAILED: u8 = 1;
/// Exit code: atex itself could not run, or could not record every result (an ingest
/// failed, `results.jsonl` cannot be read back).
const EXIT_ERROR: u8 = 2;
/// Exit code: interrupted.
const EXIT_INTERRUPTED: u8 = 130;

/// Why a run could not start: what failed; the cause is the source.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot discover the tests")]
    Fmf(#[from] atex::fmf::FmfError),
    #[error("cannot set up the results")]
    Aggregator(#[from] atex::aggregator::AggregatorError),
    #[cfg(feature = "ssh")]
    #[error("cannot use the hosts file {}", .0.display())]
    Hosts(
        PathBuf,
        #[source] atex::provisioner::ssh_pool::HostsFileError,
    ),
    #[error("cannot create {}", .0.display())]
    CreateDir(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Resume(Box<resume::ResumeError>),
    #[cfg(all(feature = "testingfarm", feature = "ssh"))]
    #[error(transparent)]
    TestingFarm(#[from] crate::tf_provisioner::TfSpecError),
    #[cfg(feature = "podman")]
    #[error("cannot use the podman provisioner")]
    Podman(#[from] atex::podman::provisioner::ConfigError),
    #[error(transparent)]
    Hooks(#[from] crate::setup_hooks::HookArgError),
    #[error(transparent)]
    RunFile(#[from] crate::run_file::RunFileError),
    #[error("{}: {key}", file.display())]
    InRunFile {
        file: PathBuf,
        key: String,
        #[source]
        source: Box<SetupError>,
    },
}

impl From<resume::ResumeError> for SetupError {
    fn from(e: resume::ResumeError) -> Self {
        match e {
            resume::ResumeError::Usage(text) => SetupError::Usage(text),
            resume::ResumeError::CreateDir(path, e) => SetupError::CreateDir(path, e),
            resume::ResumeError::Aggregator(e) => SetupError::Aggregator(e),
            other => SetupError::Resume(Box::new(other)),
        }
    }
}

fn parse_pairs(pairs: &[String], what: &str) -> Result<Vec<(String, String)>, SetupError> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| SetupError::Usage(format!("{what} '{p}' is not KEY=VALUE")))
        })
        .collect()
}

fn discover(args: &RunArgs, context: &[String]) -> Result<DiscoveredTests, SetupError> {
    let context = Context::from_pairs(context)
        .map_err(|bad| SetupError::Usage(format!("--context {bad}")))?;
    let mut opts = DiscoverOptions::new(args.tree());
    opts.plan = args.plan.clone();
    opts.context = context;
    opts.names = args.names.clone();
    opts.filters = args.filter.clone();
    opts.excludes = args.exclude.clone();
    opts.skip_unsupported_steps = args.skip_unsupported_steps;
    opts.library_paths = args.library_paths.clone();
    Ok(atex::fmf::discover(&opts)?)
}

fn make_provisioners(
    args: &RunArgs,
    specs: &[String],
    remotes: u32,
) -> Result<Vec<Arc<dyn Provisioner>>, SetupError> {
    let mut out: Vec<Arc<dyn Provisioner>> = Vec::new();
    for spec in specs {
        let (kind, rest) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
        match (kind, rest) {
            ("local", "") => out.push(Arc::new(
                LocalProvisioner::new().with_max_remotes(remotes as usize),
            )),
            #[cfg(feature = "ssh")]
            ("ssh", file) if !file.is_empty() => {
                let mut template = atex::connection::ssh::SshConfig::new("template")
                    .host_key_policy(args.ssh_host_key_policy);
                template.known_hosts = args.ssh_known_hosts.clone();
                let pool =
                    atex::provisioner::SshHostPool::from_hosts_file(Path::new(file), &template)
                        .map_err(|e| SetupError::Hosts(PathBuf::from(file), e))?;
                out.push(Arc::new(pool));
            }
            #[cfg(feature = "libvirt")]
            ("virt", origin) => out.push(
                crate::virt_run::provisioner(origin, &args.virt, remotes as usize)
                    .map_err(SetupError::Usage)?,
            ),
            #[cfg(feature = "libvirt")]
            ("shvirt", rest) => {
                let mut template = atex::connection::ssh::SshConfig::new("template")
                    .host_key_policy(args.ssh_host_key_policy);
                template.known_hosts = args.ssh_known_hosts.clone();
                out.push(
                    crate::virt_run::shvirt_provisioner(
                        rest,
                        &args.virt,
                        remotes as usize,
                        &template,
                    )
                    .map_err(SetupError::Usage)?,
                )
            }
            #[cfg(all(feature = "testingfarm", feature = "ssh"))]
            ("testingfarm", rest) => {
                out.push(crate::tf_provisioner::make(rest, remotes, &args.tf)?)
            }
            #[cfg(feature = "podman")]
            ("podman", image) if !image.is_empty() => out.push(Arc::new(
                crate::podman_cmd::provisioner(image, remotes, &args.podman)?,
            )),
            _ => {
                return Err(SetupError::Usage(format!(
                    "unknown provisioner '{spec}' (known: local, ssh:HOSTS_FILE, podman:IMAGE, testingfarm:COMPOSE[@ARCH], virt:ORIGIN, shvirt:HOST_SPEC:IMAGE)"
                )));
            }
        }
    }
    Ok(out)
}

/// The live JUnit/HTML reports, when asked for; their files link into `--results`.
fn prepare_reports(args: &RunArgs) -> Result<Option<ReportAggregator>, SetupError> {
    if args.junit.is_none() && args.html.is_none() {
        return Ok(None);
    }
    let outputs = ReportOutputs {
        junit: args.junit.clone(),
        html: args.html.clone(),
        files_dir: Some(args.results_dir().join("files")),
        title: format!("atex run on {}", args.platform),
        ..ReportOutputs::default()
    };
    Ok(Some(ReportAggregator::create(outputs)?))
}

/// Gives the reports each attempt's duration (reruns first, then the final attempt).
fn record_durations(reports: &ReportAggregator, platform: &str, summary: &RunSummary) {
    let mut per_test: std::collections::HashMap<&str, Vec<Duration>> =
        std::collections::HashMap::new();
    for t in summary.reruns.iter().chain(&summary.tests) {
        per_test.entry(&t.name).or_default().push(t.duration);
    }
    for (name, durations) in per_test {
        reports.set_durations(platform, name, &durations);
    }
}

fn test_infos(tests: &DiscoveredTests) -> Vec<TestInfo> {
    // With each test's FMF data, so that policies can read any key.
    TestInfo::from_discovered(tests)
}

/// Reads the results file back (plain, gzip or xz): every line must be a result row.
/// Returns the rows; an unreadable or corrupt file is an error naming the file and line, so
/// that a damaged results file never passes for "no failures".
fn check_results_file(
    path: &Path,
) -> Result<Vec<atex::results::ResultRow>, atex::results::ReadError> {
    atex::results::read_rows(path, &atex::results::ReadOptions::default())
}

/// How the run is shown on stderr: nothing with `--quiet`, a live bar on a terminal, one
/// line per event otherwise.
fn render_mode(quiet: bool) -> Mode {
    use std::io::IsTerminal as _;
    if quiet {
        Mode::Silent
    } else if std::io::stderr().is_terminal() {
        Mode::Live
    } else {
        Mode::Lines
    }
}

/// Runs `atex run`.
pub fn run(args: RunArgs, quiet: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errors::print(&errors::CliError::failed(
                "cannot start the async runtime",
                e,
            ));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    runtime.block_on(run_async(args, quiet))
}

/// One platform of the run: the command line's, or one entry of `--run-file`.
struct PlatformRun {
    name: String,
    tests: DiscoveredTests,
    provisioners: Vec<Arc<dyn Provisioner>>,
    reruns: u32,
    env: Vec<(String, String)>,
}

/// The platforms to run, each discovered and with its provisioners made.
fn prepare_platforms(
    args: &RunArgs,
    env: &[(String, String)],
) -> Result<Vec<PlatformRun>, SetupError> {
    let platforms = match &args.run_file {
        Some(file) => crate::run_file::load(file)?,
        None => vec![crate::run_file::Platform {
            name: args.platform.clone(),
            context: args.context.clone(),
            provisioners: args.provisioners.clone(),
            remotes: args.remotes,
            reruns: None,
            env: Vec::new(),
            key: String::new(),
        }],
    };
    let mut out = Vec::with_capacity(platforms.len());
    for p in platforms {
        // Errors of a run file's platform name the file and the key.
        let at = |key: &str, e: SetupError| match &args.run_file {
            Some(file) => SetupError::InRunFile {
                file: file.clone(),
                key: format!("{}.{key}", p.key),
                source: Box::new(e),
            },
            None => e,
        };
        let tests = discover(args, &p.context).map_err(|e| at("context", e))?;
        if tests.tests.is_empty() {
            return Err(at(
                "context",
                SetupError::Usage("no tests discovered".into()),
            ));
        }
        let provisioners = make_provisioners(args, &p.provisioners, p.remotes)
            .map_err(|e| at("provisioner", e))?;
        let mut env = env.to_vec();
        env.extend(parse_pairs(&p.env, "env").map_err(|e| at("env", e))?);
        out.push(PlatformRun {
            name: p.name,
            tests,
            provisioners,
            reruns: p.reruns.unwrap_or(args.reruns),
            env,
        });
    }
    Ok(out)
}

/// The orchestrator of one platform.
fn build_orchestrator(
    args: &RunArgs,
    run: &PlatformRun,
    aggregator: &Arc<dyn Aggregator>,
    old: Option<&Arc<dyn Aggregator>>,
    hooks: &[Arc<dyn SetupHook>],
) -> Result<AdHocOrchestrator, atex::orchestrator::OrchestratorError> {
    let PlatformRun {
        name,
        tests,
        provisioners,
        reruns,
        env,
    } = run;
    // The factory refers to files of `tests`, which the caller keeps until the run ended.
    let infos = test_infos(tests);
    let mut options = FmfOptions::from_env();
    options.contain_daemons |= args.contain_daemons;
    let mut beakerlib = BeakerlibFramework::new();
    if let Some(from) = &args.beakerlib_from {
        beakerlib = beakerlib.from_path(from);
    }
    let mut factory = FmfExecutorFactory::new(tests)
        .with_options(options)
        .with_framework(Arc::new(beakerlib));
    for (k, v) in env {
        factory = factory.with_env(k.clone(), v.clone());
    }
    let factory = Arc::new(factory);
    let mut builder = AdHocOrchestrator::builder(name)
        .tests(infos)
        .executor(factory)
        .aggregator(aggregator.clone())
        // Only tests tagged `destructive` (and remotes that broke under a test) destroy
        // their remote: a plain failure keeps it, because `ssh:` pools are fixed machines
        // that a destroyed verdict retires for the rest of the run.
        .policy(Policy::destructive_tag("destructive"))
        .policy(Policy::destructive_if(|_| Some(false)));
    for p in provisioners {
        builder = builder.provisioner(p.clone());
    }
    for hook in hooks {
        builder = builder.setup_hook(hook.clone());
    }
    if let Some(old) = old {
        builder = builder.old_aggregator(old.clone());
    }
    if *reruns > 0 {
        builder = builder.policy(Policy::limited_reruns(*reruns));
    }
    builder = match args.order {
        Order::Given => builder,
        Order::LongestFirst => builder.policy(Policy::longest_first()),
        Order::Priority => builder.policy(Policy::priority()),
    };
    builder.build()
}

async fn run_async(mut args: RunArgs, quiet: bool) -> ExitCode {
    let started = Instant::now();
    let plan = match resume::load(&mut args) {
        Ok(p) => p,
        Err(e) => {
            errors::print(&e);
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let prepared = (|| {
        let env = parse_pairs(&args.env, "--env")?;
        if let Some(from) = &args.beakerlib_from
            && !from.exists()
        {
            return Err(SetupError::Usage(format!(
                "--beakerlib-from '{}' does not exist",
                from.display()
            )));
        }
        let hooks =
            crate::setup_hooks::hooks(&args.sync, &args.sync_exclude, args.setup_script.as_ref())?;
        let mut platforms = prepare_platforms(&args, &env)?;
        let mut all_tests = Vec::new();
        for p in &mut platforms {
            all_tests.extend(resume::select(&plan, &args, &mut p.tests)?);
        }
        let Some(first) = platforms.first() else {
            return Err(SetupError::Usage("no platform to run".into()));
        };
        let outputs = resume::open(&plan, &args, &first.tests, all_tests)?;
        let reports = prepare_reports(&args)?;
        Ok((platforms, hooks, outputs, reports))
    })();
    let (platforms, hooks, outputs, reports) = match prepared {
        Ok(p) => p,
        Err(e) => {
            errors::print(&e);
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let aggregator: Arc<dyn Aggregator> = match &reports {
        // The reports read each result first; the JSONL aggregator then keeps the files.
        Some(r) => match MultiAggregator::named(vec![
            (
                "reports".to_string(),
                Arc::new(r.clone()) as Arc<dyn Aggregator>,
            ),
            ("results".to_string(), Arc::new(outputs.main.clone())),
        ]) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                errors::print(&e);
                return ExitCode::from(EXIT_ERROR);
            }
        },
        None => Arc::new(outputs.main.clone()),
    };
    let scope = Scope::root("atex-run");
    let signals = match atex::signal::install(&scope) {
        Ok(s) => s,
        Err(e) => {
            errors::print(&errors::CliError::failed(
                "cannot install signal handlers",
                e,
            ));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let old = match resume::old_aggregator(reports.as_ref().map(|r| r.superseded()), &outputs) {
        Ok(old) => old,
        Err(e) => {
            errors::print(&e);
            return ExitCode::from(EXIT_ERROR);
        }
    };
    // One orchestrator per platform, all publishing to one progress display and
    // recording into one aggregator, all under the run's scope (Ctrl-C stops them all).
    let several = platforms.len() > 1;
    let (events_tx, events) = event_channel(4096);
    let merger = crate::merged_events::Merger::new(events_tx.clone(), platforms.len());
    let mut orchestrators = Vec::with_capacity(platforms.len());
    for (index, run) in platforms.iter().enumerate() {
        let name = run.name.clone();
        let mut orchestrator =
            match build_orchestrator(&args, run, &aggregator, old.as_ref(), &hooks) {
                Ok(o) => o,
                Err(e) => {
                    errors::print(&e);
                    return ExitCode::from(EXIT_ERROR);
                }
            };
        if several {
            let own = orchestrator.subscribe(4096);
            scope.spawn(
                "progress-merge",
                crate::merged_events::forward(merger.clone(), index, name.clone(), own),
            );
        } else {
            orchestrator.set_event_sender(events_tx.clone());
        }
        orchestrators.push((name, orchestrator));
    }
    drop((events_tx, merger));
    let display = scope.spawn(
        "progress",
        Renderer::new(render_mode(quiet))
            .stats_every(args.stats_every)
            .drive(events),
    );
    let outcomes = futures::future::join_all(
        orchestrators
            .into_iter()
            .map(|(name, o)| async { (name, o.run(&scope).await) }),
    )
    .await;
    let _ = display.await;
    if let Some(r) = &reports {
        for (name, outcome) in &outcomes {
            if let Ok(summary) = outcome {
                record_durations(r, name, summary);
            }
        }
    }
    let finish = aggregator.finish().await;
    let finish = match resume::finish_old(&outputs).await {
        Ok(()) => finish,
        Err(e) => finish.and(Err(e)),
    };
    let report = scope.shutdown(ShutdownOptions::default()).await;
    if !report.is_clean() {
        errors::print_message(&format!("cleanup incomplete: {report:?}"));
    }
    let mut summaries = Vec::with_capacity(outcomes.len());
    let mut run_failed = false;
    for (name, outcome) in outcomes {
        match outcome {
            Ok(s) => summaries.push((name, s)),
            Err(e) if several => {
                errors::print(&errors::CliError::failed(format!("platform {name}"), e));
                run_failed = true;
            }
            Err(e) => {
                errors::print(&e);
                run_failed = true;
            }
        }
    }
    if run_failed && !several {
        return ExitCode::from(if signals.interrupted() {
            EXIT_INTERRUPTED
        } else {
            EXIT_ERROR
        });
    }
    if let Err(e) = finish {
        errors::print(&e);
        return ExitCode::from(EXIT_ERROR);
    }
    if !quiet {
        for (name, summary) in &summaries {
            if several {
                println!("platform {name}:");
            }
            print!("{}", SummaryTable::new(summary, started.elapsed()));
        }
        println!("results: {}", outputs.file.display());
    }
    if signals.interrupted() || summaries.iter().any(|(_, s)| s.cancelled()) {
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    if run_failed {
        return ExitCode::from(EXIT_ERROR);
    }
    let rows = match check_results_file(&outputs.file) {
        Ok(rows) => rows,
        Err(e) => {
            errors::print(&e);
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let ingest_errors: usize = summaries.iter().map(|(_, s)| s.ingest_errors.len()).sum();
    if ingest_errors > 0 {
        errors::print_message(&format!(
            "the results of {ingest_errors} test attempt(s) could not be recorded"
        ));
        return ExitCode::from(EXIT_ERROR);
    }
    if summaries
        .iter()
        .any(|(_, s)| s.failed() > 0 || !s.not_run.is_empty())
        || resume::earlier_failed(&plan, &rows)
    {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::from(EXIT_PASSED)
    }
}
