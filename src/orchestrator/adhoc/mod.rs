//! [`AdHocOrchestrator`]: run tests on a pool of remotes as they become available.
//!
//! Remotes come from one or many provisioners, each is set up (executor
//! [`start`](crate::executor::Executor::start)) and then runs one test after another: a
//! remote that finishes a test immediately gets the next one. Failed tests can be rerun,
//! destructive tests throw their remote away (a replacement is requested when work is left),
//! a remote lost mid-test is replaced and its test requeued or failed by policy, and remotes
//! that join while tests run get work at once. When the queue is empty the provisioners are
//! [`clear`](crate::provisioner::Provisioner::clear)ed and spare remotes are released (their
//! executors stopped first, so plan `finish` steps run).
//!
//! The scheduler is one task owning all the state; the work (setups, tests, ingests,
//! releases, waiting for remotes) runs in tracked tasks that report over a channel. Nothing
//! polls: a test costs microseconds of scheduling.
//!
//! What runs next, what is destructive and what is rerun are decided by [`Policy`] values;
//! see [`policy`] for how they combine. Policies see each test's full metadata
//! ([`TestInfo::data`]) and may keep state ([`PolicyHooks`]); [`NightlyPolicy`] combines
//! them into upstream's nightly rules. The run publishes typed
//! [events](crate::orchestrator::events) for progress displays.
//!
//! # Cancellation
//!
//! Cancelling the scope given to [`AdHocOrchestrator::run`] stops scheduling, cancels the
//! running tests (their executors write an error result, which is still ingested), stops the
//! executors, releases every remote and stops the provisioners. `run` returns only when
//! nothing it started is left running, with [`RunSummary::cancelled`](crate::orchestrator::RunSummary::cancelled) set.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use atex::aggregator::{JsonlAggregator, JsonlOptions};
//! use atex::orchestrator::AdHocOrchestrator;
//! use atex::orchestrator::adhoc::{Policy, TestInfo};
//! use atex::orchestrator::events::EventKind;
//! use atex::scope::Scope;
//! use atex::testing::{MemoryPlan, MemoryProvisioner};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let out = tempfile::tempdir()?;
//! let aggregator = Arc::new(JsonlAggregator::create(
//!     out.path().join("results.jsonl"), out.path().join("files"), JsonlOptions::default())?);
//! let plan = MemoryPlan::new().exit_codes("/flaky", [1, 0]);
//! let mut orch = AdHocOrchestrator::builder("9.6@x86_64")
//!     .tests(["/a", "/b", "/flaky"])
//!     .test(TestInfo::new("/urgent").with_priority(10))
//!     .provisioner(Arc::new(MemoryProvisioner::new(2)))
//!     .executor(plan.factory())
//!     .aggregator(aggregator.clone())
//!     .policy(Policy::limited_reruns(1))
//!     .policy(Policy::priority())
//!     .build()?;
//! let mut events = orch.subscribe(1024);
//! let scope = Scope::root("doc");
//! let summary = orch.run(&scope).await?;
//! assert_eq!(summary.passed(), 4);
//! assert_eq!(summary.reruns.len(), 1);
//! let mut started = Vec::new();
//! while let Some(ev) = events.recv().await {
//!     if let EventKind::TestStarted { test, .. } = ev.kind {
//!         started.push(test);
//!     }
//! }
//! assert_eq!(started[0], "/urgent");
//! # Ok(()) }
//! ```

mod hooks;
mod mailbox;
mod nightly;
mod orchestrator;
pub mod policy;
mod queue;
mod scheduler;
pub mod setup_hook;
mod test_info;
mod workdir;
mod worker;

pub use hooks::{Decided, Pick, PolicyHooks, RemoteId};
pub use nightly::{GuestTagError, NightlyPolicy};
pub use orchestrator::{AdHocBuilder, AdHocOrchestrator};
pub use policy::{Finished, PickContext, Policy};
pub use queue::{Candidate, QueueView, TestHandle};
pub use setup_hook::{ScriptHook, SetupHook};
pub use test_info::TestInfo;
