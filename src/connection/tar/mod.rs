//! The tar format, for connections that copy trees through a remote `tar` over a command
//! channel (SSH without SFTP today; any exec-based connection can use it).
//!
//! * `header.rs` — header blocks (ustar with GNU long names), numbers, pax records;
//! * `write.rs` — [`write_archive`]: a local tree as a tar stream, contents streamed;
//! * `extract.rs` — [`Extractor`]: unpacks a tar stream as it arrives, never outside its
//!   root;
//! * `remote.rs` — the remote side's command lines;
//! * `error.rs` — [`TarError`], the source of the transfer errors.
//!
//! Both directions keep modes and symlinks, stream file contents (memory stays flat) and
//! need only a `tar` (GNU or busybox) on the remote system.

mod error;
mod extract;
mod header;
mod remote;
mod write;

pub(crate) use error::TarError;
pub(crate) use extract::Extractor;
pub(crate) use remote::{create_command, extract_command, is_dir_command};
pub(crate) use write::write_archive;
