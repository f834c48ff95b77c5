//! In-memory test doubles: a provisioner and an executor that start no process.
//!
//! They make orchestrators testable and measurable without machines: the scheduling
//! benchmark uses them, and so can your own tests.
//!
//! * [`MemoryProvisioner`] hands out [`MemoryRemote`]s, at most `capacity` alive at once
//!   (released remotes free their place, [`MemoryProvisioner::add_capacity`] lets new remotes
//!   "join" later), and counts requests, clears, releases and remotes marked destroyed in
//!   [`MemoryStats`];
//! * [`MemoryExecutor`] "runs" tests by looking up a scripted behaviour in a shared
//!   [`MemoryPlan`]: exit codes per attempt, a duration, a lost connection, a hang until
//!   cancelled, failing setups. It writes a one-line `results` file unless told not to, and
//!   records what ran where.
//!
//! [`workload`] generates the synthetic test lists of the scheduling benchmarks.
//!
//! With the `conformance` feature, `conformance` is the suite of contract checks that every
//! connection, provisioner, remote, executor and aggregator runs, yours included.
//!
//! ```
//! use std::sync::Arc;
//! use atex::provisioner::{Count, Provisioner, Remote};
//! use atex::executor::Executor;
//! use atex::scope::Scope;
//! use atex::testing::{MemoryPlan, MemoryProvisioner};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scope = Scope::root("doc");
//! let prov = MemoryProvisioner::new(1);
//! prov.start(&scope).await?;
//! prov.provision(Count::N(2))?;
//! let remote = prov.get_remote().await?;
//! assert!(prov.try_get_remote()?.is_none()); // capacity 1
//! let plan = MemoryPlan::new().exit_codes("/flaky", [1, 0]);
//! let mut exec = plan.executor(remote.clone());
//! exec.start(&scope).await?;
//! let dir = tempfile::tempdir()?;
//! assert_eq!(exec.run_test("/flaky", dir.path(), &scope).await?.exit_code, 1);
//! remote.release().await?;
//! assert!(prov.try_get_remote()?.is_some()); // the place was freed
//! prov.stop().await?;
//! # Ok(()) }
//! ```

#[cfg(feature = "conformance")]
pub mod conformance;
mod executor;
mod provisioner;
pub mod workload;

pub use executor::{MemoryExecutor, MemoryPlan, MemoryRun};
pub use provisioner::{MemoryConnection, MemoryProvisioner, MemoryRemote, MemoryStats};
