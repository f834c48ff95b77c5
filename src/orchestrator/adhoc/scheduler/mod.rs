//! The scheduler: one task that owns all scheduling state and reacts to messages.
//!
//! Workers (remote acquisition, setups, tests, ingests, releases) run as tracked tasks and
//! report back over one unbounded channel; the scheduler never sleeps and never polls. A
//! message costs a few hash-map operations and, for a finished test, one `O(log n)` queue
//! pick; everything slow happens in the workers.
//!
//! * `run.rs` — [`run`]: starts the provisioners, builds the state, runs the event loop,
//!   cleans up;
//! * `config.rs` — [`Config`], everything fixed for one run;
//! * `state.rs` — the state, the event loop, settling after each batch of messages,
//!   requesting capacity, cancellation, the summary;
//! * `remotes.rs` — a remote's life: requested, arrived, set up, released;
//! * `attempts.rs` — a test attempt's life: assigned, run, finished (reruns, retired
//!   remotes), ingested.

mod attempts;
mod config;
mod remotes;
mod run;
mod state;

pub(crate) use config::Config;
pub(crate) use run::run;
