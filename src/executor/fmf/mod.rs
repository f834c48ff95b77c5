//! The FMF executor: runs tmt-style tests through a remote wrapper that speaks the
//! test-control protocol.

pub mod control;
pub mod reporter;

#[cfg(test)]
mod tests;
