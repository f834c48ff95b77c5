//! Executors: run one test at a time on a connected system into an artifacts directory.

pub mod fmf;
