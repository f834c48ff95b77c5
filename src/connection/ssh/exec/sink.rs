//! Where one output stream of a remote command goes: a pipe the caller reads, a file, or
//! nowhere.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use crate::connection::BoxReader;

/// A reader over chunks pushed by a draining task. The queue is unbounded on purpose: the
/// draining task must never wait for a slow reader, or every channel of the connection
/// would stall behind it. A reader that falls behind costs memory, not progress.
struct ChunkReader {
    rx: mpsc::UnboundedReceiver<Bytes>,
    current: Bytes,
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.current.is_empty() {
                let n = self.current.len().min(buf.remaining());
                let chunk = self.current.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => self.current = chunk,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Where one stream of a command goes.
pub(super) enum Sink {
    Discard,
    Pipe(mpsc::UnboundedSender<Bytes>),
    /// A pipe whose reader was dropped: the rest is discarded.
    Abandoned,
    File(tokio::fs::File),
}

/// Resolves once nobody reads `sink` any more (the reader of its pipe was dropped).
pub(super) async fn abandoned(sink: &Sink) {
    match sink {
        Sink::Pipe(tx) => tx.closed().await,
        Sink::Abandoned => {}
        Sink::Discard | Sink::File(_) => std::future::pending().await,
    }
}

impl Sink {
    /// Passes `data` on (`what` names the stream in warnings).
    pub(super) async fn put(&mut self, data: Bytes, what: &str) {
        match self {
            Sink::Discard | Sink::Abandoned => {}
            Sink::Pipe(tx) => {
                // A dropped reader means nobody wants the rest: keep draining, discard.
                if tx.send(data).is_err() {
                    *self = Sink::Abandoned;
                }
            }
            Sink::File(f) => {
                if let Err(e) = f.write_all(&data).await {
                    tracing::warn!(error = %crate::error::chain(&e), stream = what, "writing command output to a file failed; discarding the rest");
                    *self = Sink::Discard;
                }
            }
        }
    }

    /// Flushes a file and stops taking data.
    pub(super) async fn finish(&mut self) {
        if let Sink::File(f) = self {
            let _ = f.flush().await;
        }
        *self = Sink::Discard;
    }
}

/// A sink of `kind` and, for a pipe, the reader the caller gets.
pub(super) fn sink_pair(kind: SinkKind) -> (Sink, Option<BoxReader>) {
    match kind {
        SinkKind::Discard => (Sink::Discard, None),
        SinkKind::Pipe => {
            let (tx, rx) = mpsc::unbounded_channel();
            (
                Sink::Pipe(tx),
                Some(Box::pin(ChunkReader {
                    rx,
                    current: Bytes::new(),
                }) as BoxReader),
            )
        }
        SinkKind::File(f) => (Sink::File(tokio::fs::File::from_std(f)), None),
    }
}

/// What a stream is asked to be.
pub(super) enum SinkKind {
    Discard,
    Pipe,
    File(std::fs::File),
}
