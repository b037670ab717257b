//! Waiting for a shared [`CancellationToken`] without taking its locks on every poll.
//!
//! `token.cancelled()` checks the token under its mutex and re-polls a `Notify` waiter, which
//! takes the `Notify`'s mutex, every time it is polled. In a `select!` beside a busy relay that
//! is every wake-up of the connection's task, and the server's shutdown token is shared by
//! every connection on every worker thread, so those two locks bounce between the cores at
//! the message rate. [`cancelled`] polls the token's future once to register, with a waker of
//! its own; later polls only look at a flag that waker sets. The token's locks are touched
//! again only after the token actually woke it.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use tokio_util::sync::CancellationToken;

/// Set by the token's wake-up; wakes the task that waits.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Completes when `token` is cancelled, like `token.cancelled()`, but cheap to poll while it
/// is not (see the module docs).
pub async fn cancelled(token: &CancellationToken) {
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let wait = token.cancelled();
    tokio::pin!(wait);
    let mut registered = false;
    poll_fn(|cx| {
        // The task's waker first, so a wake-up between the flag check and parking is kept.
        flag.task.register(cx.waker());
        if !registered || flag.woken.swap(false, Ordering::AcqRel) {
            registered = true;
            if wait
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn completes_at_once_for_a_cancelled_token() {
        let token = CancellationToken::new();
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), cancelled(&token))
            .await
            .expect("an already cancelled token completes the wait");
    }

    #[tokio::test]
    async fn waits_until_cancel_and_then_completes() {
        let token = CancellationToken::new();
        let child = token.child_token();
        let wait = cancelled(&child);
        tokio::pin!(wait);
        let early = tokio::time::timeout(Duration::from_millis(30), &mut wait).await;
        assert!(
            early.is_err(),
            "not cancelled yet: the wait must stay pending"
        );
        let canceller = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            canceller.cancel();
        });
        tokio::time::timeout(Duration::from_secs(5), &mut wait)
            .await
            .expect("cancelling the parent completes the child's wait");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waiters_on_other_threads_all_complete() {
        let token = CancellationToken::new();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let token = token.clone();
                tokio::spawn(async move { cancelled(&token).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        token.cancel();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("every waiter completes after cancel")
                .expect("no waiter panics");
        }
    }
}
