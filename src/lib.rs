//! atex: provision machines, run FMF/tmt-style tests on them as an ad-hoc pool, and
//! collect the results.

pub mod aggregator;
pub mod artifacts;
pub mod connection;
pub mod executor;
pub mod fs_tree;
pub mod guard;
pub mod jsonfmt;
pub mod orchestrator;
pub mod process;
pub mod provisioner;
pub mod scope;
pub mod signal;
pub mod testing;
