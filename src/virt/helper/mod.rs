//! The shared VM host's helper (`atex virt-helper`, protocol "atex-virt-helper v1") and
//! its client.
//!
//! The helper runs on the VM host, started by the client through any
//! [`Connection`](crate::connection::Connection) (SSH in practice). They speak JSON lines:
//! one request object per line on the helper's stdin, one reply per line on its stdout;
//! its stderr carries virt-install's console output. A reply has `success`, `cmd`, a copy
//! of each valid argument, command-specific keys and `reply` (the error or output text).
//!
//! | `cmd` | arguments | result |
//! | --- | --- | --- |
//! | `ping` | | `reply`: `atex-virt-helper v1 pong` |
//! | `setname` | `name` | names the helper process (15 bytes), shown by `reservations` |
//! | `virsh` | `args` (list) | `virsh -q [-c URI] ARGS`; `reply`: combined output |
//! | `reserve` | `filter` (regex, full match, optional) | `domain`: a persistent domain nobody holds, now held by this session |
//! | `release` | `domain` | drops this session's hold |
//! | `evict` | `domain` | (atex's addition) ends another session's hold by terminating its helper (SIGTERM, then SIGKILL), which frees all that session's domains; `pid`: the helper ended |
//! | `reservations` | | `domains`: name → `(free)`, `(reserved for us)`, holder's name, `(empty name)`, `(pid N disappeared)` |
//! | `upload` | `name`, `length` | the `length` raw bytes after the line go to a file of the session's temporary directory; `path` |
//! | `create-volume` | `pool`, `name`, `size`, `format` (`raw`/`qcow2`), `remove_existing` | a new volume in a `dir` pool; `path` |
//! | `copy-volume` | `pool`, `from`, `to` or `to_domain`, `move` | copies (or moves) a volume onto another or onto a domain's volume disk (its NVRAM file is deleted); `path` |
//! | `virt-install` | `args`, `destroy_on_error` | runs virt-install under a pty, output relayed to stderr |
//!
//! Reservations are POSIX record locks on files of the helper's state directory
//! ([`locks`]): they die with the helper process, and the helper exits when its stdin ends,
//! so a client that crashes or loses its connection frees its domains.

pub mod client;
pub mod locks;
mod pty;
pub mod server;

pub use client::{HelperClient, HelperError};
pub use server::{ServeError, ServerOptions, serve, serve_stdio};

/// The reply to `ping`.
pub const PONG: &str = "atex-virt-helper v1 pong";
/// Longest request line accepted, in bytes.
pub const MAX_LINE: usize = 1 << 20;
