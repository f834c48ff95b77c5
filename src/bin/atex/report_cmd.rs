//! `atex report`: JUnit XML, HTML, YAML and ReportPortal from results files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use atex::aggregator::{Report, html, junit, write_atomic, yaml};
use atex::results::{ReadOptions, locate};

use crate::errors::{self, CliError, Context as _};

/// Exit code: the reports could not be made (usage, a bad results file, a write error).
const EXIT_ERROR: u8 = 2;

/// Arguments of `atex report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Results directories (holding `results.jsonl`, `.gz` or `.xz`) or results files,
    /// oldest first: a test found in several shows its earlier attempts as reruns.
    #[arg(required = true, value_name = "RESULTS")]
    inputs: Vec<PathBuf>,
    /// Results of attempts that reruns superseded (an old-results directory or file), read
    /// before RESULTS (repeatable).
    #[arg(long = "old", value_name = "RESULTS")]
    old: Vec<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a self-contained HTML report here (links to uploaded files are relative to it).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write upstream-style YAML documents here.
    #[arg(long, value_name = "FILE")]
    yaml: Option<PathBuf>,
    /// Title of the HTML report.
    #[arg(long, default_value = "atex results")]
    title: String,
    #[cfg(feature = "reportportal")]
    #[command(flatten)]
    rp: RpReportArgs,
}

/// ReportPortal options of `atex report`.
#[cfg(feature = "reportportal")]
#[derive(clap::Args, Debug)]
struct RpReportArgs {
    /// Report to ReportPortal at this URL (or $ATEX_REPORTPORTAL_URL, else
    /// $TMT_PLUGIN_REPORT_REPORTPORTAL_URL, when --rp-launch or --rp-rerun is given).
    #[arg(long, value_name = "URL")]
    rp_url: Option<String>,
    /// ReportPortal project (or $ATEX_REPORTPORTAL_PROJECT, else
    /// $TMT_PLUGIN_REPORT_REPORTPORTAL_PROJECT).
    #[arg(long, value_name = "NAME")]
    rp_project: Option<String>,
    /// ReportPortal API token; prefer $ATEX_REPORTPORTAL_TOKEN (or
    /// $TMT_PLUGIN_REPORT_REPORTPORTAL_TOKEN): an option is visible in the process list.
    #[arg(long, value_name = "TOKEN")]
    rp_token: Option<String>,
    /// Name of the new launch (default "atex report").
    #[arg(long, value_name = "NAME", conflicts_with = "rp_rerun")]
    rp_launch: Option<String>,
    /// Report as a rerun of this launch (UUID).
    #[arg(long, value_name = "UUID")]
    rp_rerun: Option<String>,
    /// Subtests as sibling items named TEST<JOIN>SUBTEST instead of nested steps.
    #[arg(long, value_name = "JOIN")]
    rp_join_subtest: Option<String>,
    /// Do not verify the ReportPortal server's TLS certificate.
    #[arg(long)]
    rp_no_ssl_verify: bool,
    /// Retries of a ReportPortal call failing with 408, 429, 5xx or a connection error.
    #[arg(long, value_name = "N", default_value_t = 130)]
    rp_max_retries: u32,
}

#[cfg(feature = "reportportal")]
impl RpReportArgs {
    fn wanted(&self) -> bool {
        self.rp_url.is_some()
            || self.rp_launch.is_some()
            || self.rp_rerun.is_some()
            || self.rp_join_subtest.is_some()
    }
}

fn dir_of(p: &Path) -> PathBuf {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn load(args: &ReportArgs) -> Result<Report, CliError> {
    let mut report = Report::new();
    for input in args.old.iter().chain(&args.inputs) {
        let loc = locate(input).map_err(CliError::lib)?;
        let n = report
            .add_results(&loc, &ReadOptions::default())
            .map_err(CliError::lib)?;
        tracing::info!(file = %loc.file.display(), rows = n, "results read");
    }
    Ok(report)
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    write_atomic(path, text.as_bytes()).context(|| format!("writing {}", path.display()))
}

#[cfg(feature = "reportportal")]
async fn report_portal(rp: &RpReportArgs, report: &Report) -> Result<String, CliError> {
    use atex::aggregator::Aggregator as _;
    use atex::aggregator::reportportal::{ReportPortalAggregator, RpOptions};
    use serde_json::{Map, Value};
    let client = crate::rp_cmd::client(
        rp.rp_url.as_deref(),
        rp.rp_project.as_deref(),
        rp.rp_token.as_deref(),
        !rp.rp_no_ssl_verify,
        rp.rp_max_retries,
    )?;
    let mut options = match &rp.rp_rerun {
        Some(uuid) => RpOptions::rerun(uuid.clone()),
        None => RpOptions::new_launch(
            rp.rp_launch
                .clone()
                .unwrap_or_else(|| "atex report".to_string()),
        ),
    };
    options.join_subtest = rp.rp_join_subtest.clone();
    let agg = ReportPortalAggregator::start(client, options)
        .await
        .context(|| "cannot start the ReportPortal launch")?;
    let empty = tempfile::tempdir().context(|| "cannot create a temporary directory")?;
    let mut result = Ok(());
    'tests: for t in report.tests() {
        for a in &t.attempts {
            let objects: Vec<Map<String, Value>> = a
                .lines
                .iter()
                .map(|l| {
                    let mut m = Map::new();
                    if let Some(n) = &l.name {
                        m.insert("name".into(), n.clone().into());
                    }
                    if let Some(s) = &l.status {
                        m.insert("status".into(), s.clone().into());
                    }
                    if let Some(n) = &l.note {
                        m.insert("note".into(), n.clone().into());
                    }
                    m.insert(
                        "files".into(),
                        Value::Array(l.files.iter().cloned().map(Value::String).collect()),
                    );
                    m
                })
                .collect();
            let files = a.files_dir.as_deref().unwrap_or(empty.path());
            if let Err(e) = agg
                .report_results(&t.platform, &t.name, &objects, files)
                .await
            {
                result = Err(CliError::failed(
                    format!("reporting {} on {}", t.name, t.platform),
                    e,
                ));
                break 'tests;
            }
        }
    }
    let finished = agg
        .finish()
        .await
        .context(|| "finishing the ReportPortal launch");
    result?;
    finished?;
    Ok(agg.launch_uuid().to_string())
}

/// Runs `atex report`.
pub fn run(args: ReportArgs) -> ExitCode {
    #[cfg(feature = "reportportal")]
    let rp_wanted = args.rp.wanted();
    #[cfg(not(feature = "reportportal"))]
    let rp_wanted = false;
    if args.junit.is_none() && args.html.is_none() && args.yaml.is_none() && !rp_wanted {
        errors::print_message(
            "nothing to write: give --junit, --html, --yaml or a ReportPortal launch",
        );
        return ExitCode::from(EXIT_ERROR);
    }
    let report = match load(&args) {
        Ok(r) => r,
        Err(e) => {
            errors::print(&e);
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let mut outcome: Result<(), CliError> = Ok(());
    if let Some(p) = &args.junit {
        let opts = junit::JunitOptions {
            base_dir: dir_of(p),
            ..Default::default()
        };
        outcome = outcome.and_then(|()| write(p, &junit::render(&report, &opts)));
    }
    if let Some(p) = &args.html {
        let opts = html::HtmlOptions {
            title: args.title.clone(),
            base_dir: dir_of(p),
            in_progress: false,
        };
        outcome = outcome.and_then(|()| write(p, &html::render(&report, &opts)));
    }
    if let Some(p) = &args.yaml {
        outcome = outcome.and_then(|()| write(p, &yaml::render(&report)));
    }
    #[cfg(feature = "reportportal")]
    if outcome.is_ok() && rp_wanted {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context(|| "cannot start the async runtime");
        outcome = runtime
            .and_then(|rt| rt.block_on(report_portal(&args.rp, &report)))
            .map(|uuid| println!("ReportPortal launch {uuid}"));
    }
    match outcome {
        Ok(()) => {
            let tests = report.tests().len();
            let passed = report
                .tests()
                .iter()
                .filter(|t| t.verdict().passed())
                .count();
            eprintln!(
                "atex report: {tests} tests on {} platform(s), {passed} passed",
                report.platforms().len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            errors::print(&e);
            ExitCode::from(EXIT_ERROR)
        }
    }
}
