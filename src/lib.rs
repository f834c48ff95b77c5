//! atex: provision machines, run FMF/tmt-style tests on them as an ad-hoc pool, and
//! collect the results.

pub mod artifacts;
pub mod jsonfmt;
pub mod duration;
pub mod executor;
