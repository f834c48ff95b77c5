//! How a test is started: through the remote wrapper (`wrapper.sh`), or directly on a
//! connection that supervises process groups itself (the local one), which saves the
//! wrapper's shell.

use super::options::FmfOptions;
use super::test::FmfTest;
use crate::connection::Connection;

/// How a test is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Launch {
    /// `bash W/test/wrapper.sh W/test/test.sh CWD [flags]`: the wrapper moves the control
    /// channel to a high descriptor, runs the test as a job in a process group of its own,
    /// kills what the test left in that group and reports `exitcode RC`.
    Wrapper,
    /// `/bin/bash W/test/test.sh` in CWD: `test.sh` moves the control channel itself
    /// ([`CONTROL_PROLOGUE`]), the connection kills what is left of the test's process group
    /// before its exit is seen, and the executor takes `exitcode` from the exit status
    /// (128 + signal for a signal, as the wrapper reports it).
    Direct,
}

impl Launch {
    /// The launch for `test`: direct where the connection supervises process groups
    /// ([`Connection::supervises_process_groups`]) and no wrapper mode is asked for
    /// (`tty: true`, [`FmfOptions::contain_daemons`], [`FmfOptions::no_bg_kill`],
    /// [`FmfOptions::always_wrap`]).
    pub(super) fn choose(conn: &dyn Connection, options: &FmfOptions, test: &FmfTest) -> Self {
        let wrapper_mode = test.tty || options.contain_daemons || options.no_bg_kill;
        if conn.supervises_process_groups() && !wrapper_mode && !options.always_wrap {
            Self::Direct
        } else {
            Self::Wrapper
        }
    }
}

/// The first line of a directly started `test.sh` after its `#!`, doing what the wrapper
/// does before it starts the test: the original stdout (the control channel) goes to a
/// new high descriptor exported as `ATEX_TEST_CONTROL`, and stdout joins stderr (the test
/// output). Bash builtins only.
pub(super) const CONTROL_PROLOGUE: &str =
    "exec {ATEX_TEST_CONTROL}>&1 1>&2; export ATEX_TEST_CONTROL\n";
