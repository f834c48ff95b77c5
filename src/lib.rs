//! atex: provision machines, run FMF/tmt-style tests on them as an ad-hoc pool, and
//! collect the results.

pub mod artifacts;
// FMF metadata engine: trees, inheritance, adjust, filters, tmt plan discovery.
pub mod fmf;
pub mod jsonfmt;
