//! Quickstart (placeholder until the foundation lands).
fn main() {}
