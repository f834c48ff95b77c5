//! BeakerLib tests (`framework: beakerlib`): the [`BeakerlibFramework`] hook of the FMF
//! executor (executors.md §6).
//!
//! BeakerLib tests are bash scripts that source `/usr/share/beakerlib/beakerlib.sh` and
//! report through phases (`rlPhaseStart…`/`rlPhaseEnd`); they exit 0 even when a phase
//! failed. Registered with
//! [`FmfExecutor::with_framework`](crate::executor::fmf::FmfExecutor::with_framework) (or
//! the factory's), the hook runs them in the same run and on the same system as plain
//! shell tests, chosen per test by its `framework` key:
//!
//! - before the first BeakerLib test on a system, BeakerLib is installed when
//!   `/usr/share/beakerlib/beakerlib.sh` is missing: from the directory or tarball of
//!   [`BeakerlibFramework::from_path`] (uploaded with the connection's own transfer and
//!   installed with its top-level `make install`, as the distribution package lays it
//!   out), else with the system's package manager (`beakerlib`; `beakerlib-redhat` is
//!   recommended on RPM systems). When that fails, every BeakerLib test on that system
//!   ends with one `infra` result naming what was tried; other tests run on. The helpers
//!   `atex-report-result` and `atex-file-submit` go to `W/bin`, next to tmt's helper
//!   commands (`tmt-reboot`, `rhts-reboot`, … see [`crate::executor::fmf::helpers`]);
//! - before each test, `W/beakerlib` is recreated (with `metadata.yaml`, a link to the
//!   test's metadata, for `rlImport --all`) and the test gets `BEAKERLIB_DIR`, a fresh
//!   `TESTID`, `BEAKERLIB_JOURNAL=0`, `BEAKERLIB_COMMAND_REPORT_RESULT` and
//!   `BEAKERLIB_COMMAND_SUBMIT_LOG` (overriding variables of the same names);
//! - every phase becomes one result named after it (`rlPhaseEnd` → `atex-report-result`),
//!   with its journal attached when it says more than BeakerLib's own `::` lines; files of
//!   `rlFileSubmit` go into the test's own result. Concurrent reports are serialised with
//!   a lock;
//! - the test's own (fallback) result is `fail` when a phase reported `fail`, `warn` or
//!   `error`, although the script exited 0 ([`eval_exit_code`]).
//!
//! Libraries (`rlImport`) are resolved at discovery into the tree's `libs/`, which is
//! uploaded with the tree: `rlImport` finds them by searching upwards from the test.

mod eval;
mod framework;
mod install;

pub use eval::eval_exit_code;
pub use framework::BeakerlibFramework;
pub use install::{BEAKERLIB_SH, NotInstalled};

/// The `framework` value of BeakerLib tests.
pub const FRAMEWORK: &str = "beakerlib";
