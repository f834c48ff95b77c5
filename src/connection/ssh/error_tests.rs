//! The private errors of SSH commands and transfers.

use std::sync::Arc;

use super::error::SessionEnd;
use super::exec::ChannelError;
use super::transfer_error::TransferError;
use crate::connection::ConnectionError;
use crate::connection::tar::TarError;
use crate::error::assert_chain;

/// The private errors of SSH commands and transfers keep their causes and never repeat
/// them; wrapped in a `ConnectionError`, the chain goes down to the OS error.
#[test]
fn ssh_internal_errors_keep_their_causes() {
    let io = || std::io::Error::other("broken pipe");
    let transfer = |e: TransferError| ConnectionError::Transfer {
        from: "a".into(),
        to: "h:b".into(),
        source: Box::new(e),
    };
    assert_chain(
        &transfer(TransferError::local("creating", "x".as_ref(), io())),
        3,
    );
    assert_chain(
        &transfer(TransferError::Tar(TarError::local(
            "writing",
            "x".as_ref(),
            io(),
        ))),
        3,
    );
    assert_chain(&transfer(TransferError::Tar(TarError::Stream(io()))), 3);
    assert_chain(
        &transfer(TransferError::Channel(ChannelError::Open(
            russh::Error::Disconnect,
        ))),
        3,
    );
    assert_chain(
        &transfer(TransferError::SessionEnded(Arc::new(SessionEnd::Protocol(
            russh::Error::IO(io()),
        )))),
        3,
    );
    let spawn = ConnectionError::Spawn {
        command: "x".into(),
        target: "ssh h".into(),
        source: Box::new(ChannelError::Exec(russh::Error::Disconnect)),
    };
    assert_chain(&spawn, 3);
    let lost = ConnectionError::disconnected(
        "ssh h",
        Some("running `x`".into()),
        Arc::new(SessionEnd::KeepaliveTimeout),
    );
    assert_chain(&lost, 2);
    assert_eq!(
        crate::error::chain(&lost).to_string(),
        "ssh h: connection lost while running `x`: no answer to keepalives (dead peer or cut network)"
    );
}
