//! The arguments of `atex run` (its results options included), apart from the code that
//! runs it, so that `run_cmd` and its `resume` module both use them without importing each
//! other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use atex::aggregator::{Compression, JsonlOptions};
use serde::{Deserialize, Serialize};

/// Test order.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Order {
    /// As discovered.
    Given,
    /// Longest `duration` first (better makespan on a pool).
    LongestFirst,
    /// Highest `extra-priority` first.
    Priority,
}

/// Arguments of `atex run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// FMF tree (any directory inside it).
    #[arg(required_unless_present = "resume")]
    pub(crate) tree: Option<PathBuf>,
    /// tmt plan to run (default: every test of the tree).
    #[arg(long)]
    pub(crate) plan: Option<String>,
    /// Context dimension `KEY=VALUE` for adjust (repeatable).
    #[arg(long = "context", short = 'c', value_name = "K=V")]
    pub(crate) context: Vec<String>,
    /// Test name regex (repeatable; any may match).
    #[arg(long = "names", value_name = "RE")]
    pub(crate) names: Vec<String>,
    /// Filter expression (repeatable).
    #[arg(long = "filter", value_name = "EXPR")]
    pub(crate) filter: Vec<String>,
    /// Exclude test names matching this regex (repeatable).
    #[arg(long = "exclude", value_name = "RE")]
    pub(crate) exclude: Vec<String>,
    /// Where systems come from: `local`, `ssh:HOSTS_FILE`, `podman:IMAGE`,
    /// `testingfarm:COMPOSE[@ARCH]`, `virt:ORIGIN` or `shvirt:HOST_SPEC:IMAGE` (repeatable;
    /// all feed one pool).
    #[arg(long = "provisioner", value_name = "SPEC", default_value = "local")]
    pub(crate) provisioners: Vec<String>,
    /// Number of remotes at once (for the `local`, `podman:`, `testingfarm:`, `virt:` and
    /// `shvirt:` provisioners).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) remotes: u32,
    /// Platform name recorded with the results.
    #[arg(long, default_value = "local")]
    pub(crate) platform: String,
    /// Directory for `results.jsonl` and `files/` (created; must not hold results yet).
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    pub(crate) results: Option<PathBuf>,
    /// Rerun a test that did not pass (verdict warn, fail, error or infra) up to N times.
    #[arg(long, default_value_t = 0)]
    pub(crate) reruns: u32,
    /// Test order.
    #[arg(long, value_enum, default_value_t = Order::Given)]
    pub(crate) order: Order,
    /// SSH host-key policy for `ssh:` provisioners: strict, accept-new or insecure.
    #[cfg(feature = "ssh")]
    #[arg(long, default_value = "strict", value_name = "POLICY")]
    pub(crate) ssh_host_key_policy: atex::connection::ssh::HostKeyPolicy,
    /// known_hosts file for `ssh:` provisioners (default `~/.ssh/known_hosts`).
    #[cfg(feature = "ssh")]
    #[arg(long, value_name = "FILE")]
    pub(crate) ssh_known_hosts: Option<PathBuf>,
    /// Run each test in a PID namespace of its own where possible (root), so that daemons
    /// it started with `setsid` die with it (also `ATEX_CONTAIN_DAEMONS=1`).
    #[arg(long)]
    pub(crate) contain_daemons: bool,
    /// Skip plan steps atex cannot run (prepare other than install/shell, finish other than
    /// shell, discover other than fmf, execute other than tmt), with one warning each,
    /// instead of refusing the plan.
    #[arg(long)]
    pub(crate) skip_unsupported_steps: bool,
    /// Allow library requirements whose `path` is in DIR although it is outside the test
    /// tree (repeatable; otherwise such a library is refused).
    #[arg(long = "library-path", value_name = "DIR")]
    pub(crate) library_paths: Vec<PathBuf>,
    /// Where BeakerLib is missing on a system, install it from this BeakerLib source tree
    /// (a directory or tarball; its top-level `make install` is run) before trying the
    /// package manager. Tests with `framework: beakerlib` need it.
    #[arg(long, value_name = "PATH")]
    pub(crate) beakerlib_from: Option<PathBuf>,
    /// Environment variable `KEY=VALUE` for every test (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub(crate) env: Vec<String>,
    /// Also write JUnit XML here, kept up to date during the run.
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
    /// Also write a self-contained HTML report here, rewritten (atomically) as results
    /// arrive; the page reloads itself until the run ends.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
    /// Run several platforms at once, as listed in this YAML file (each with its name,
    /// context, provisioners, pool size, reruns and environment; see
    /// examples/run-file.yaml), into one results directory.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["platform", "provisioners", "context", "remotes"])]
    pub(crate) run_file: Option<PathBuf>,
    /// Mirror the local DIR to REMOTE_DIR (absolute) on each remote after its setup: files
    /// deleted locally are deleted there too (repeatable; runs before --setup-script).
    #[arg(long = "sync", value_name = "DIR:REMOTE_DIR")]
    pub(crate) sync: Vec<String>,
    /// Leave entries matching PATTERN (rsync style: `.git/`, `*.pyc`, `/build`) out of every
    /// --sync: neither copied nor deleted (repeatable).
    #[arg(long = "sync-exclude", value_name = "PATTERN")]
    pub(crate) sync_exclude: Vec<String>,
    /// Run this script (it needs a #! line) on each remote after its setup and the syncs;
    /// an exit code other than 0 fails the remote's setup.
    #[arg(long, value_name = "FILE")]
    pub(crate) setup_script: Option<PathBuf>,
    /// Also write the full debug-level log to FILE (xz or gzip compressed when its name
    /// ends in `.xz` or `.gz`); the console keeps its level.
    #[arg(long, value_name = "FILE")]
    pub(crate) debug_log: Option<PathBuf>,
    /// When stderr is not a terminal (and without --quiet), print a statistics line every
    /// PERIOD (`60s`, `5m`, `1h 30m`).
    #[arg(long, value_name = "PERIOD", value_parser = parse_period)]
    pub(crate) stats_every: Option<Duration>,
    #[command(flatten)]
    pub(crate) results_opts: ResultsArgs,
    #[cfg(feature = "libvirt")]
    #[command(flatten)]
    pub(crate) virt: Box<crate::virt_run::VirtRunArgs>,
    #[cfg(all(feature = "testingfarm", feature = "ssh"))]
    #[command(flatten)]
    pub(crate) tf: crate::tf_provisioner::TfRunArgs,
    #[cfg(feature = "podman")]
    #[command(flatten)]
    pub(crate) podman: crate::podman_cmd::PodmanRunArgs,
}

/// `--stats-every`: a tmt duration, not zero.
fn parse_period(spec: &str) -> Result<Duration, String> {
    match atex::duration::parse_duration(spec) {
        Ok(d) if d.is_zero() => Err("the period must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl RunArgs {
    /// The tree (given, or from `--resume`'s manifest).
    pub(crate) fn tree(&self) -> &Path {
        self.tree.as_deref().unwrap_or(Path::new("."))
    }

    /// The results directory (given, or `--resume`'s).
    pub(crate) fn results_dir(&self) -> &Path {
        self.results.as_deref().unwrap_or(Path::new("."))
    }
}

/// Compression of `--compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressKind {
    /// gzip (level 9).
    Gz,
    /// xz (preset 6: preset 9 needs ~670 MiB per encoder).
    Xz,
}

impl CompressKind {
    fn compression(self) -> Compression {
        match self {
            CompressKind::Gz => Compression::Gzip(9),
            CompressKind::Xz => Compression::Xz(6),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            CompressKind::Gz => ".gz",
            CompressKind::Xz => ".xz",
        }
    }
}

/// Results options of `atex run`.
#[derive(clap::Args, Debug)]
pub struct ResultsArgs {
    /// Compress the results file (`results.jsonl.gz` / `results.jsonl.xz`).
    #[arg(long, value_enum, value_name = "gz|xz")]
    pub(crate) compress: Option<CompressKind>,
    /// With --compress: also compress every uploaded file (`NAME.gz` / `NAME.xz`).
    #[arg(long, requires = "compress")]
    pub(crate) compress_files: bool,
    /// Record the attempts that a rerun superseded in this results directory
    /// (`results.jsonl[.gz|.xz]` and `files/`; duplicates allowed); removed at the end when
    /// it stays empty.
    #[arg(long, value_name = "DIR")]
    pub(crate) old_results: Option<PathBuf>,
    /// Continue the killed run whose results directory is DIR: run only the tests without a
    /// final result, appending to the same results. Its options come from DIR/run.json
    /// (provisioner-specific options such as --ssh-known-hosts may be given again).
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "tree", "results", "plan", "context", "names", "filter", "exclude", "provisioners",
        "remotes", "platform", "reruns", "order", "env", "junit", "html", "compress",
        "compress_files", "old_results", "rerun_failed_from", "contain_daemons",
        "skip_unsupported_steps", "library_paths", "beakerlib_from", "run_file",
    ])]
    pub(crate) resume: Option<PathBuf>,
    /// Start a new run with only the tests whose verdict in RESULTS (a results directory or
    /// file of an earlier run) was not a pass.
    #[arg(long, value_name = "RESULTS", conflicts_with = "run_file")]
    pub(crate) rerun_failed_from: Option<PathBuf>,
}

impl ResultsArgs {
    pub(crate) fn jsonl_options(&self, allow_duplicate: bool) -> JsonlOptions {
        JsonlOptions {
            allow_duplicate,
            compression: self
                .compress
                .map_or(Compression::None, CompressKind::compression),
            compress_files: self.compress_files,
            ..JsonlOptions::default()
        }
    }

    pub(crate) fn results_file(&self) -> String {
        format!(
            "results.jsonl{}",
            self.compress.map_or("", CompressKind::suffix)
        )
    }
}
