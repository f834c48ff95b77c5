//! The results side of `atex run`: compression (`--compress`), the old-results directory
//! (`--old-results`), the run manifest, resuming a killed run (`--resume`) and starting a
//! run with the tests an earlier one did not pass (`--rerun-failed-from`).
//!
//! # The results directory of a run
//!
//! * `run.json` — the [`Manifest`]: the run's options and its test list, written (atomically)
//!   before the first test starts, so that `--resume DIR` needs nothing else.
//! * `results.jsonl` (`.gz`, `.xz` with `--compress`) — the results.
//! * `files/` — uploaded files.
//! * `run.journal` — one JSON line `[platform, test]` per test whose final result is
//!   recorded whole, appended right after the results file took it. This, not the results
//!   file, says which tests finished: rows of a test whose ingest a crash cut off (a torn
//!   last line, a compressed stream cut mid-member, a test with several rows of which only
//!   some were written) are not in it.
//!
//! # Resuming
//!
//! `--resume DIR` reads `run.json`, discovers the tree again with the recorded options,
//! reads the journal (a torn last line is dropped) and the results file (plain, gzip or xz;
//! a torn last line or a cut compressed stream is dropped with a warning), then:
//!
//! * rewrites the results file with the rows of the journaled tests only, into a new file
//!   renamed over the old one (a cut xz/gzip stream cannot be continued; the rewrite ends
//!   with complete members and the new appends start a new member);
//! * removes the uploaded files of every test that runs again (an ingest cut off after it
//!   placed the files but before it wrote the rows leaves them; they must not mix with the
//!   new attempt's) and the ingest staging directories;
//! * runs the tests of the recorded list that are not journaled, appending to the same
//!   results (and old results).
//!
//! A journaled test never runs again. What a killed run leaves outside the results
//! directory (its remotes' scratch directories, temporary artifact directories) is not
//! touched here.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use atex::aggregator::{Aggregator, AggregatorError, JsonlAggregator, MultiAggregator, Report};
use atex::fmf::DiscoveredTests;
use atex::results::{ReadOptions, TornTail, locate};
use atex::verdict::Verdict;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::args::{CompressKind, Order, ResultsArgs, RunArgs};

/// The manifest's file name in the results directory.
pub(super) const MANIFEST: &str = "run.json";
/// The journal's file name in the results directory.
pub(super) const JOURNAL: &str = "run.journal";
/// The manifest format this version writes and reads.
const FORMAT: u32 = 1;

/// What `run.json` holds: everything `--resume` needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    format: u32,
    tree: PathBuf,
    plan: Option<String>,
    context: Vec<String>,
    names: Vec<String>,
    filters: Vec<String>,
    excludes: Vec<String>,
    provisioners: Vec<String>,
    remotes: u32,
    platform: String,
    reruns: u32,
    order: String,
    env: Vec<String>,
    contain_daemons: bool,
    skip_unsupported_steps: bool,
    library_paths: Vec<PathBuf>,
    beakerlib_from: Option<PathBuf>,
    compress: Option<CompressKind>,
    compress_files: bool,
    old_results: Option<PathBuf>,
    /// The results file's name in the results directory.
    results_file: String,
    /// The run file of a run of several platforms (which `--resume` refuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_file: Option<PathBuf>,
    /// The tests of the run, in order.
    tests: Vec<String>,
}

/// Why `--resume` or `--rerun-failed-from` cannot go on.
#[derive(Debug, thiserror::Error)]
pub(super) enum ResumeError {
    #[error(
        "{}: no run manifest (run.json): not the results directory of an `atex run` that can be resumed",
        .0.display()
    )]
    NoManifest(PathBuf),
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{}: not a valid run manifest", .0.display())]
    BadManifest(PathBuf, #[source] serde_json::Error),
    #[error("{}: manifest format {} (this atex reads {FORMAT})", .0.display(), .1)]
    Format(PathBuf, u32),
    #[error("{}: bad value: {}", .0.display(), .1)]
    BadValue(PathBuf, String),
    #[error("{}:{}: not a journal entry", .0.display(), .1)]
    BadJournal(PathBuf, usize, #[source] serde_json::Error),
    #[error("test '{}' of the run is no longer discovered in {}", .0, .1.display())]
    TestGone(String, PathBuf),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    #[error("{}: {} exists already (the results of a run); continue it with --resume or choose another directory", .0.display(), .1)]
    NotEmpty(PathBuf, String),
    #[error("{}: another atex run is still writing these results (its journal is locked)", .0.display())]
    Busy(PathBuf),
    #[error("cannot read the earlier results")]
    Results(#[from] atex::results::ReadError),
    #[error("{}: a run of several platforms (--run-file {}) cannot be resumed yet", .0.display(), .1.display())]
    SeveralPlatforms(PathBuf, PathBuf),
    /// Bad usage (reported like the run's other usage errors).
    #[error("{0}")]
    Usage(String),
    /// A directory or file of the results cannot be made.
    #[error("cannot create {}", .0.display())]
    CreateDir(PathBuf, #[source] std::io::Error),
    /// The results cannot be opened.
    #[error("cannot set up the results")]
    Aggregator(#[from] AggregatorError),
}

/// What the run does with its results: fresh, resumed, or a rerun of failed tests.
#[derive(Debug)]
pub(super) enum Plan {
    /// A new run.
    Fresh,
    /// `--resume`: the loaded manifest.
    Resume(Box<Manifest>),
    /// `--rerun-failed-from`: the names of the tests that did not pass there.
    RerunFailed(HashSet<String>),
}

/// The aggregators of a run.
#[derive(Debug)]
pub(super) struct Outputs {
    /// The results (journaled).
    pub main: Journaled,
    /// The old results, with their directory.
    pub old: Option<(JsonlAggregator, PathBuf)>,
    /// The results file.
    pub file: PathBuf,
}

fn order_name(order: Order) -> String {
    use clap::ValueEnum as _;
    order
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Reads `--resume`'s manifest and fills `args` from it; reads `--rerun-failed-from`.
pub(super) fn load(args: &mut RunArgs) -> Result<Plan, ResumeError> {
    if let Some(dir) = args.results_opts.resume.clone() {
        let m = read_manifest(&dir)?;
        let bad = |what: String| ResumeError::BadValue(dir.join(MANIFEST), what);
        args.order = <Order as clap::ValueEnum>::from_str(&m.order, false)
            .map_err(|_| bad(format!("order '{}'", m.order)))?;
        if m.remotes == 0 {
            return Err(bad("remotes 0".into()));
        }
        if !m.results_file.starts_with("results.jsonl") || m.results_file.contains('/') {
            return Err(bad(format!("results file '{}'", m.results_file)));
        }
        args.tree = Some(m.tree.clone());
        args.results = Some(dir.clone());
        args.plan = m.plan.clone();
        args.context = m.context.clone();
        args.names = m.names.clone();
        args.filter = m.filters.clone();
        args.exclude = m.excludes.clone();
        args.provisioners = m.provisioners.clone();
        args.remotes = m.remotes;
        args.platform = m.platform.clone();
        args.reruns = m.reruns;
        args.env = m.env.clone();
        args.contain_daemons = m.contain_daemons;
        args.skip_unsupported_steps = m.skip_unsupported_steps;
        args.library_paths = m.library_paths.clone();
        args.beakerlib_from = m.beakerlib_from.clone();
        args.results_opts.compress = m.compress;
        args.results_opts.compress_files = m.compress_files;
        args.results_opts.old_results = m.old_results.clone();
        return Ok(Plan::Resume(Box::new(m)));
    }
    if let Some(from) = &args.results_opts.rerun_failed_from {
        let loc = locate(from).map_err(ResumeError::Results)?;
        let mut report = Report::new();
        let options = ReadOptions {
            torn_tail: TornTail::Drop,
        };
        report
            .add_results(&loc, &options)
            .map_err(ResumeError::Results)?;
        let failed = report
            .tests()
            .iter()
            .filter(|t| !t.verdict().passed())
            .map(|t| t.name.clone())
            .collect();
        return Ok(Plan::RerunFailed(failed));
    }
    Ok(Plan::Fresh)
}

/// Opens the journal for appending and locks it (`flock`, exclusive) for the rest of the
/// run; the lock goes with the process, also when it is killed.
fn lock_journal(path: &Path) -> Result<Flock<File>, ResumeError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ResumeError::Write(path.to_path_buf(), e))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            ResumeError::Busy(path.to_path_buf())
        } else {
            ResumeError::Write(path.to_path_buf(), std::io::Error::from(errno))
        }
    })
}

fn read_manifest(dir: &Path) -> Result<Manifest, ResumeError> {
    let path = dir.join(MANIFEST);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ResumeError::NoManifest(dir.to_path_buf()));
        }
        Err(e) => return Err(ResumeError::Read(path, e)),
    };
    let m: Manifest =
        serde_json::from_slice(&text).map_err(|e| ResumeError::BadManifest(path.clone(), e))?;
    if m.format != FORMAT {
        return Err(ResumeError::Format(path, m.format));
    }
    if let Some(run_file) = &m.run_file {
        return Err(ResumeError::SeveralPlatforms(path, run_file.clone()));
    }
    Ok(m)
}

/// The (platform, test) pairs of the journal; a torn last line is dropped with a warning.
fn read_journal(path: &Path) -> Result<HashSet<(String, String)>, ResumeError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(ResumeError::Read(path.to_path_buf(), e)),
    };
    let mut done = HashSet::new();
    for (idx, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|e| ResumeError::Read(path.to_path_buf(), e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<(String, String)>(&line) {
            Ok(pair) => {
                done.insert(pair);
            }
            Err(e) if e.is_eof() => {
                tracing::warn!(path = %path.display(), line = idx + 1, "dropping the torn last line of the journal");
            }
            Err(e) => return Err(ResumeError::BadJournal(path.to_path_buf(), idx + 1, e)),
        }
    }
    Ok(done)
}

/// Keeps the tests that this run is to run; returns the run's whole test list (for the
/// manifest). Refuses an empty selection.
pub(super) fn select(
    plan: &Plan,
    args: &RunArgs,
    tests: &mut DiscoveredTests,
) -> Result<Vec<String>, ResumeError> {
    match plan {
        Plan::Fresh => Ok(tests.tests.iter().map(|t| t.name.clone()).collect()),
        Plan::RerunFailed(failed) => {
            tests.tests.retain(|t| failed.contains(&t.name));
            let found: HashSet<&str> = tests.tests.iter().map(|t| t.name.as_str()).collect();
            for name in failed {
                if !found.contains(name.as_str()) {
                    tracing::warn!(test = %name, "a test that did not pass earlier is not discovered now; not run");
                }
            }
            if tests.tests.is_empty() {
                return Err(ResumeError::Usage(
                    "--rerun-failed-from: no test to rerun (every discovered test passed there)"
                        .into(),
                ));
            }
            Ok(tests.tests.iter().map(|t| t.name.clone()).collect())
        }
        Plan::Resume(m) => {
            let done = finished_tests(args)?;
            let discovered: HashSet<&str> = tests.tests.iter().map(|t| t.name.as_str()).collect();
            for name in &m.tests {
                if !discovered.contains(name.as_str()) {
                    return Err(ResumeError::TestGone(name.clone(), m.tree.clone()));
                }
            }
            let todo: HashSet<&str> = m
                .tests
                .iter()
                .filter(|t| !done.contains(&(m.platform.clone(), (*t).clone())))
                .map(String::as_str)
                .collect();
            tests.tests.retain(|t| todo.contains(t.name.as_str()));
            if tests.tests.is_empty() {
                return Err(ResumeError::Usage(format!(
                    "--resume: nothing to run: all {} tests of the run have a final result",
                    m.tests.len()
                )));
            }
            tracing::info!(
                finished = m.tests.len() - todo.len(),
                to_run = todo.len(),
                "resuming"
            );
            Ok(m.tests.clone())
        }
    }
}

/// The tests that finished: journaled, and with rows in the results file. (Every executor
/// result has at least one row; a journaled test without any lost them in a crash — a
/// power loss can keep the journal and lose the results' last writes — and runs again.)
fn finished_tests(args: &RunArgs) -> Result<HashSet<(String, String)>, ResumeError> {
    let dir = args.results_dir();
    let journaled = read_journal(&dir.join(JOURNAL))?;
    let file = dir.join(args.results_opts.results_file());
    let with_rows: HashSet<(String, String)> = if file.exists() {
        atex::results::read_good_lines(&file)
            .map_err(ResumeError::Results)?
            .lines
            .into_iter()
            .map(|(_, row)| (row.platform, row.test))
            .collect()
    } else {
        HashSet::new()
    };
    for pair in journaled.difference(&with_rows) {
        tracing::warn!(platform = %pair.0, test = %pair.1, "journaled as finished but without rows in the results file (lost in a crash?); running it again");
    }
    Ok(journaled.intersection(&with_rows).cloned().collect())
}

/// Creates (or, resuming, reopens) the results, the journal and the old results; a new run
/// writes its manifest first.
pub(super) fn open(
    plan: &Plan,
    args: &RunArgs,
    tests: &DiscoveredTests,
    all_tests: Vec<String>,
) -> Result<Outputs, ResumeError> {
    let dir = args.results_dir().to_path_buf();
    let opts = &args.results_opts;
    let file = dir.join(opts.results_file());
    let files = dir.join(atex::artifacts::FILES_DIR);
    let journal_path = dir.join(JOURNAL);
    let resuming = matches!(plan, Plan::Resume(_));
    let mut journal = None;
    let main = if resuming {
        // Locked first: a run that is still writing here must not be resumed under it.
        journal = Some(lock_journal(&journal_path)?);
        let done = read_journal(&journal_path)?;
        let agg = if file.exists() {
            let (agg, kept) =
                JsonlAggregator::reopen(&file, &files, opts.jsonl_options(false), &|row| {
                    done.contains(&(row.platform.clone(), row.test.clone()))
                })?;
            tracing::info!(rows = kept.len(), file = %file.display(), "results kept");
            agg
        } else {
            if files.exists() {
                atex::fs_tree::remove_any(&files)
                    .map_err(|e| ResumeError::CreateDir(files.clone(), e))?;
            }
            JsonlAggregator::create(&file, &files, opts.jsonl_options(false))?
        };
        for t in &tests.tests {
            match agg.remove_files_of(&args.platform, &t.name) {
                Ok(true) => {
                    tracing::warn!(test = %t.name, "removed the uploaded files of an interrupted attempt")
                }
                Ok(false) => {}
                Err(e) => return Err(ResumeError::CreateDir(files.clone(), e)),
            }
        }
        agg
    } else {
        fs::create_dir_all(&dir).map_err(|e| ResumeError::CreateDir(dir.clone(), e))?;
        let found: Vec<&str> = atex::results::RESULTS_FILE_NAMES
            .iter()
            .copied()
            .chain([MANIFEST, JOURNAL])
            .filter(|n| dir.join(n).exists())
            .collect();
        if !found.is_empty() {
            return Err(ResumeError::NotEmpty(dir.clone(), found.join(", ")));
        }
        let manifest = Manifest {
            format: FORMAT,
            tree: absolute(args.tree()),
            plan: args.plan.clone(),
            context: args.context.clone(),
            names: args.names.clone(),
            filters: args.filter.clone(),
            excludes: args.exclude.clone(),
            // A hosts file is named relative to where the run started; a resume may start
            // elsewhere.
            provisioners: args
                .provisioners
                .iter()
                .map(|p| match p.strip_prefix("ssh:") {
                    Some(file) if !file.is_empty() => {
                        format!("ssh:{}", absolute(Path::new(file)).display())
                    }
                    _ => p.clone(),
                })
                .collect(),
            remotes: args.remotes,
            platform: args.platform.clone(),
            reruns: args.reruns,
            order: order_name(args.order),
            env: args.env.clone(),
            contain_daemons: args.contain_daemons,
            skip_unsupported_steps: args.skip_unsupported_steps,
            library_paths: args.library_paths.iter().map(|p| absolute(p)).collect(),
            beakerlib_from: args.beakerlib_from.as_deref().map(absolute),
            compress: opts.compress,
            compress_files: opts.compress_files,
            old_results: opts.old_results.as_deref().map(absolute),
            results_file: opts.results_file(),
            run_file: args.run_file.as_deref().map(absolute),
            tests: all_tests,
        };
        let agg = JsonlAggregator::create(&file, &files, opts.jsonl_options(false))?;
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ResumeError::Write(dir.join(MANIFEST), std::io::Error::other(e)))?;
        atex::aggregator::write_atomic(&dir.join(MANIFEST), &text)
            .map_err(|e| ResumeError::Write(dir.join(MANIFEST), e))?;
        agg
    };
    let journal = match journal {
        Some(j) => j,
        None => lock_journal(&journal_path)?,
    };
    let old = match &opts.old_results {
        None => None,
        Some(old_dir) => Some((open_old(old_dir, opts, resuming)?, old_dir.clone())),
    };
    Ok(Outputs {
        main: Journaled {
            inner: main,
            journal: Arc::new(Mutex::new(journal)),
            path: journal_path,
        },
        old,
        file,
    })
}

/// The old-results aggregator: created, or reopened (all rows kept) when resuming.
fn open_old(
    dir: &Path,
    opts: &ResultsArgs,
    resuming: bool,
) -> Result<JsonlAggregator, ResumeError> {
    let file = dir.join(opts.results_file());
    let files = dir.join(atex::artifacts::FILES_DIR);
    fs::create_dir_all(dir).map_err(|e| ResumeError::CreateDir(dir.to_path_buf(), e))?;
    if resuming && file.exists() {
        let (agg, _) = JsonlAggregator::reopen(&file, &files, opts.jsonl_options(true), &|_| true)?;
        return Ok(agg);
    }
    if resuming && files.exists() {
        atex::fs_tree::remove_any(&files).map_err(|e| ResumeError::CreateDir(files.clone(), e))?;
    }
    Ok(JsonlAggregator::create(
        &file,
        &files,
        opts.jsonl_options(true),
    )?)
}

/// The orchestrator's old-results aggregator: the reports' superseded side and/or the
/// old-results directory.
pub(super) fn old_aggregator(
    reports: Option<Arc<dyn Aggregator>>,
    outputs: &Outputs,
) -> Result<Option<Arc<dyn Aggregator>>, AggregatorError> {
    let old = outputs
        .old
        .as_ref()
        .map(|(a, _)| Arc::new(a.clone()) as Arc<dyn Aggregator>);
    Ok(match (reports, old) {
        (Some(r), Some(o)) => Some(Arc::new(MultiAggregator::named(vec![
            ("reports".to_string(), r),
            ("old results".to_string(), o),
        ])?)),
        (r, o) => r.or(o),
    })
}

/// Resuming: whether a test of the whole results file (earlier sessions too) did not pass
/// (its worst status; a test without any status counts as `error`, as in reports).
pub(super) fn earlier_failed(plan: &Plan, rows: &[atex::results::ResultRow]) -> bool {
    if !matches!(plan, Plan::Resume(_)) {
        return false;
    }
    let mut worst: std::collections::HashMap<(&str, &str), Option<Verdict>> =
        std::collections::HashMap::new();
    for row in rows {
        let v = row.status.as_deref().map(Verdict::from_reported);
        let slot = worst.entry((&row.platform, &row.test)).or_insert(None);
        *slot = (*slot).max(v);
    }
    worst.values().any(|v| !v.is_some_and(Verdict::passed))
}

/// Finishes the old results and removes their directory when it stayed empty (no row, no
/// uploaded file, nothing else in it).
pub(super) async fn finish_old(outputs: &Outputs) -> Result<(), AggregatorError> {
    let Some((agg, dir)) = &outputs.old else {
        return Ok(());
    };
    agg.finish().await?;
    let rows = atex::results::read_rows(agg.target(), &ReadOptions::default())
        .map(|r| r.len())
        .unwrap_or(1);
    let no_files = atex::fs_tree::is_empty_dir(agg.files_dir()).unwrap_or(false);
    if rows == 0 && no_files {
        let removed = fs::remove_file(agg.target())
            .and_then(|()| fs::remove_dir(agg.files_dir()))
            .and_then(|()| fs::remove_dir(dir));
        if let Err(e) = removed {
            tracing::warn!(dir = %dir.display(), error = %atex::error::chain(&e), "could not remove the empty old-results directory");
        }
    }
    Ok(())
}

/// The results aggregator, recording in the journal each test whose result it took whole.
#[derive(Debug, Clone)]
pub(super) struct Journaled {
    inner: JsonlAggregator,
    journal: Arc<Mutex<Flock<File>>>,
    path: PathBuf,
}

#[async_trait]
impl Aggregator for Journaled {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), AggregatorError> {
        self.inner.ingest(platform, test, artifacts).await?;
        let mut line = serde_json::to_vec(&(platform, test)).unwrap_or_default();
        line.push(b'\n');
        let written = self
            .journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(&line);
        if let Err(e) = written {
            // The result is recorded; only a resume would not know it and run the test again.
            tracing::error!(path = %self.path.display(), test, error = %atex::error::chain(&e),
                "cannot write the run journal; a resume would run this test again");
        }
        Ok(())
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        self.inner.finish().await
    }
}
