//! The in-process transport: task queues, replies and cancellations as in-memory channels,
//! shared by the engine's memory broker and in-process workers (embedded mode and tests).
//!
//! Semantics mirror the AMQP transport: a task queue per resource, each task delivered to one
//! consumer; replies flow to a single sink the engine drains; cancellations are broadcast.

use crate::protocol::{CancelMessage, Reply, TaskMessage};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, Notify};

#[derive(Default)]
struct Queues {
    tasks: HashMap<String, VecDeque<TaskMessage>>,
}

struct Inner {
    queues: Mutex<Queues>,
    task_ready: Notify,
    replies_tx: mpsc::UnboundedSender<Reply>,
    replies_rx: Mutex<Option<mpsc::UnboundedReceiver<Reply>>>,
    callbacks_tx: mpsc::UnboundedSender<Reply>,
    callbacks_rx: Mutex<Option<mpsc::UnboundedReceiver<Reply>>>,
    cancels: broadcast::Sender<CancelMessage>,
}

/// A cloneable handle to one in-process hub.
#[derive(Clone)]
pub struct InProcessHub {
    inner: Arc<Inner>,
}

impl Default for InProcessHub {
    fn default() -> Self {
        InProcessHub::new()
    }
}

impl InProcessHub {
    pub fn new() -> InProcessHub {
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let (callbacks_tx, callbacks_rx) = mpsc::unbounded_channel();
        let (cancels, _) = broadcast::channel(1024);
        InProcessHub {
            inner: Arc::new(Inner {
                queues: Mutex::new(Queues::default()),
                task_ready: Notify::new(),
                replies_tx,
                replies_rx: Mutex::new(Some(replies_rx)),
                callbacks_tx,
                callbacks_rx: Mutex::new(Some(callbacks_rx)),
                cancels,
            }),
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        // A poisoned lock only means another thread panicked mid-push; the data is intact.
        self.inner.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Engine side: enqueue a task on `queue`.
    pub fn push_task(&self, queue: &str, task: TaskMessage) {
        self.queues()
            .tasks
            .entry(queue.to_string())
            .or_default()
            .push_back(task);
        self.inner.task_ready.notify_waiters();
    }

    /// Worker side: take the next task of any of `queues`, if one is waiting.
    pub fn try_take_task(&self, queues: &[String]) -> Option<TaskMessage> {
        self.try_take_where(queues, 0, |_| true).map(|(_, t)| t)
    }

    /// Worker side: wait for the next task of any of `queues`.
    pub async fn take_task(&self, queues: &[String]) -> TaskMessage {
        self.take_where(queues, 0, |_| true).await.1
    }

    /// The next task of the queues `open` admits, looked at from `queues[first]` on round the
    /// list, with the index of its queue.
    fn try_take_where(
        &self,
        queues: &[String],
        first: usize,
        open: impl Fn(usize) -> bool,
    ) -> Option<(usize, TaskMessage)> {
        let mut q = self.queues();
        let n = queues.len();
        (0..n)
            .map(|k| (first + k) % n)
            .filter(|&i| open(i))
            .find_map(|i| {
                q.tasks
                    .get_mut(&queues[i])
                    .and_then(VecDeque::pop_front)
                    .map(|t| (i, t))
            })
    }

    /// Waits for [`Self::try_take_where`] to find a task (`open` is asked again after every
    /// push). Cancel-safe: a task is taken only in the poll that returns it.
    pub(crate) async fn take_where(
        &self,
        queues: &[String],
        first: usize,
        open: impl Fn(usize) -> bool,
    ) -> (usize, TaskMessage) {
        loop {
            let notified = self.inner.task_ready.notified();
            if let Some(taken) = self.try_take_where(queues, first, &open) {
                return taken;
            }
            notified.await;
        }
    }

    /// Whether the task queue `queue` exists (it is created by its first task).
    pub fn has_queue(&self, queue: &str) -> bool {
        self.queues().tasks.contains_key(queue)
    }

    /// Removes the task queue `queue` unless tasks wait in it; `true` when it is gone.
    pub fn remove_queue_if_empty(&self, queue: &str) -> bool {
        let mut q = self.queues();
        if q.tasks.get(queue).is_some_and(|t| !t.is_empty()) {
            return false;
        }
        q.tasks.remove(queue);
        true
    }

    /// Number of tasks waiting on `queue`.
    pub fn queued(&self, queue: &str) -> usize {
        self.queues().tasks.get(queue).map_or(0, VecDeque::len)
    }

    /// Worker side: send a reply to the engine.
    pub fn reply(&self, reply: Reply) {
        // The receiver lives as long as the hub; a send can only fail after shutdown.
        let _ = self.inner.replies_tx.send(reply);
    }

    /// Engine side: the reply stream (can be taken once).
    pub fn take_replies(&self) -> Option<mpsc::UnboundedReceiver<Reply>> {
        self.inner
            .replies_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Anyone: complete (or heartbeat) a `.waitForTaskToken` task through its token — the
    /// in-process `SendTaskSuccess`. Kept apart from worker replies because a worker's success
    /// reply to a callback task's message does not complete the task.
    pub fn callback(&self, reply: Reply) {
        let _ = self.inner.callbacks_tx.send(reply);
    }

    /// Engine side: the callback stream (can be taken once).
    pub fn take_callbacks(&self) -> Option<mpsc::UnboundedReceiver<Reply>> {
        self.inner
            .callbacks_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Engine side: tell workers a task was given up.
    pub fn cancel(&self, msg: CancelMessage) {
        let _ = self.inner.cancels.send(msg);
    }

    /// Worker side: subscribe to cancellations.
    pub fn cancellations(&self) -> broadcast::Receiver<CancelMessage> {
        self.inner.cancels.subscribe()
    }
}
