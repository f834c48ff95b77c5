//! [`FmfOptions`]: the settings of an [`FmfExecutor`](super::FmfExecutor).

use std::time::Duration;

/// The default test duration (tmt's 5 minutes).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(300);

/// Default of [`FmfOptions::exit_drain`]: how long the control channel is still read after
/// the wrapper reported `exitcode`.
pub const EXIT_DRAIN: Duration = Duration::from_secs(2);

/// Settings of an [`FmfExecutor`](super::FmfExecutor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FmfOptions {
    /// Directory on the system to create the work directory in; `None` tries `/var/tmp`,
    /// then `$HOME`, then `/tmp`.
    pub work_base: Option<String>,
    /// Duration of tests that do not set one.
    pub default_duration: Duration,
    /// Debug: tell the wrapper not to send `exitcode` (controller variable
    /// `ATEX_DEBUG_NO_EXITCODE=1`).
    pub no_exitcode: bool,
    /// Debug: tell the wrapper not to kill leftover processes of the test (controller
    /// variable `ATEX_DEBUG_NO_BG_KILL=1`).
    pub no_bg_kill: bool,
    /// Pause between failed reconnect attempts after a reboot.
    pub reconnect_delay: Duration,
    /// How long the control channel is still read after the wrapper reported `exitcode`
    /// (its last message): normally the channel ends at once, but a process the test left
    /// behind (a daemon that called `setsid`) may hold it open. The channel is then closed
    /// (further writes to it fail with EPIPE) and the test is finished. Default
    /// [`EXIT_DRAIN`].
    pub exit_drain: Duration,
    /// Contain daemons: run each test as PID 1 of a PID namespace of its own, so that
    /// processes which left the test's process group with `setsid` die with the test.
    /// Takes effect where the system allows it (root and a working util-linux `unshare`;
    /// not with `tty: true`); elsewhere only the process group is killed. Off by default
    /// because inside the namespace `$$` is 1, `$PPID` is 0 and `/proc` (hence `ps`,
    /// `pgrep`, `pkill`) still shows the host's process ids. Controller variable
    /// `ATEX_CONTAIN_DAEMONS=1`.
    pub contain_daemons: bool,
    /// Start every test through the remote wrapper, also on connections that supervise
    /// process groups themselves
    /// ([`Connection::supervises_process_groups`](crate::connection::Connection::supervises_process_groups),
    /// the local one). There a test is otherwise started directly, which saves a shell per
    /// test: `test.sh` moves the control channel to a high descriptor itself, the
    /// connection kills what the test left in its process group, and the exit code is
    /// taken from the test's exit status. Either way the test sees the same working
    /// directory, descriptors and environment, except the wrapper's own
    /// `ATEX_TEST_PGID_FILE` and `ATEX_WRAPPER_LOG`. Tests with `tty: true` and the
    /// `contain_daemons` and `no_bg_kill` modes always use the wrapper. What differs: the
    /// test's parent is the atex process (a test that kills `$PPID` kills atex), and a test
    /// stopped early (cancel, timeout) gets SIGTERM directly rather than the wrapper's
    /// SIGHUP. Controller variable `ATEX_FMF_ALWAYS_WRAP=1`.
    pub always_wrap: bool,
}

impl Default for FmfOptions {
    fn default() -> Self {
        Self {
            work_base: None,
            default_duration: DEFAULT_DURATION,
            no_exitcode: false,
            no_bg_kill: false,
            reconnect_delay: Duration::from_millis(500),
            exit_drain: EXIT_DRAIN,
            contain_daemons: false,
            always_wrap: false,
        }
    }
}

impl FmfOptions {
    /// The defaults, with the debug switches read from the controller's environment
    /// (`ATEX_DEBUG_NO_EXITCODE=1`, `ATEX_DEBUG_NO_BG_KILL=1`, `ATEX_CONTAIN_DAEMONS=1`,
    /// `ATEX_FMF_ALWAYS_WRAP=1`).
    pub fn from_env() -> Self {
        let on = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
        Self {
            no_exitcode: on("ATEX_DEBUG_NO_EXITCODE"),
            no_bg_kill: on("ATEX_DEBUG_NO_BG_KILL"),
            contain_daemons: on("ATEX_CONTAIN_DAEMONS"),
            always_wrap: on("ATEX_FMF_ALWAYS_WRAP"),
            ..Self::default()
        }
    }
}
