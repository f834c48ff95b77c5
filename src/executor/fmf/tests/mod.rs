//! Tests of the test-control parser and the reporter together: the byte-exact examples of
//! test-control.md §9, the acceptance list items that need no remote, framing and control
//! words, hostile names, and a property test.

mod acceptance;
mod examples;
mod framing;
mod hostile;
mod property;
mod support;
