//! A one-item mailbox: how the scheduler hands a remote's test task its next attempt.
//!
//! A remote runs one test at a time, so its task never has more than one job waiting. A
//! channel (a linked list of blocks, a semaphore, per-message slot bookkeeping) cost several
//! times more per message than this: a lock-free waker and an uncontended lock around one
//! `Option`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use futures::task::AtomicWaker;

struct Inner<T> {
    item: Mutex<Option<T>>,
    /// The sender is gone: nothing more will come.
    closed: AtomicBool,
    /// The receiver is gone: nothing sent would be read.
    abandoned: AtomicBool,
    waker: AtomicWaker,
}

impl<T> Inner<T> {
    fn take(&self) -> Option<T> {
        self.item
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// A new mailbox: its sending and receiving sides.
pub(crate) fn mailbox<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        item: Mutex::new(None),
        closed: AtomicBool::new(false),
        abandoned: AtomicBool::new(false),
        waker: AtomicWaker::new(),
    });
    (
        Sender {
            inner: inner.clone(),
        },
        Receiver { inner },
    )
}

/// The sending side; dropping it ends the receiver's [`recv`](Receiver::recv) once the
/// item in the mailbox (if any) has been read.
pub(crate) struct Sender<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Sender<T> {
    /// Puts `item` into the mailbox and wakes the receiver; gives it back when the receiver
    /// is gone or the mailbox still holds an item nobody read.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        if self.inner.abandoned.load(Ordering::Acquire) {
            return Err(item);
        }
        {
            let mut slot = self
                .inner
                .item
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if slot.is_some() {
                return Err(item);
            }
            *slot = Some(item);
        }
        self.inner.waker.wake();
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.waker.wake();
    }
}

/// The receiving side.
pub(crate) struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Receiver<T> {
    /// The next item; `None` once the sender is gone and the mailbox is empty.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| {
            if let Some(item) = self.inner.take() {
                return Poll::Ready(Some(item));
            }
            self.inner.waker.register(cx.waker());
            // Checked again after registering: a send or close in between woke nobody.
            if let Some(item) = self.inner.take() {
                return Poll::Ready(Some(item));
            }
            if self.inner.closed.load(Ordering::Acquire) {
                // An item sent right before the close is still delivered.
                return Poll::Ready(self.inner.take());
            }
            Poll::Pending
        })
        .await
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.inner.abandoned.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_every_item_then_ends_when_the_sender_is_gone() {
        let (tx, mut rx) = mailbox();
        tx.send(1).expect("empty mailbox");
        assert_eq!(tx.send(2), Err(2), "one item at a time");
        assert_eq!(rx.recv().await, Some(1));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        tx.send(3).expect("read");
        // Sent and closed without waiting: the item is still delivered before the end.
        drop(tx);
        assert_eq!(reader.await.expect("reader"), vec![3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_a_waiting_receiver_from_another_thread() {
        let (tx, mut rx) = mailbox::<u32>();
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut sum = 0u64;
            while let Some(v) = rx.recv().await {
                sum += u64::from(v);
                let _ = ack_tx.send(());
            }
            sum
        });
        for i in 0..1000u32 {
            tx.send(i).expect("the previous item was read");
            ack_rx.recv().await.expect("ack");
        }
        drop(tx);
        assert_eq!(reader.await.expect("reader"), 999 * 1000 / 2);
    }

    #[test]
    fn refuses_items_once_the_receiver_is_gone() {
        let (tx, rx) = mailbox();
        drop(rx);
        assert_eq!(tx.send("x"), Err("x"));
    }
}
