//! Running commands on exec channels.
//!
//! * `spawn.rs` — [`spawn`]: opens the channel, arms the guard that kills the remote
//!   process group, starts the draining task, hands back the [`Process`](crate::connection::Process);
//! * `line.rs` — the remote command line (environment, directory, redirections, the
//!   process-group header);
//! * `drain.rs` — the draining task: exec request, output, exit status, leaked
//!   processes, cancellation;
//! * `sink.rs` — where each output stream goes (pipe, file, nowhere);
//! * `control.rs` — the [`ProcessControl`](crate::connection::ProcessControl) of a remote
//!   command: wait, terminate;
//! * `channel.rs` — channel plumbing on the session: opening channels under a server's
//!   channel limit, one-shot commands, signalling the remote group.

mod channel;
mod control;
mod drain;
mod line;
mod sink;
mod spawn;

pub(super) use channel::{ChannelError, run_quiet};
pub(super) use spawn::spawn;
