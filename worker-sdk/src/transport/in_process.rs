//! The in-process transport: the worker side of [`InProcessHub`] (embedded mode and tests).
//!
//! A task is taken from the hub only when the worker has a free slot, so tasks the worker has
//! not started stay in the hub; a task handed back is pushed onto its queue again. An activity
//! with a limit of its own is taken from only while fewer of its tasks than that are
//! unsettled (each delivery carries an [`ActivitySlot`]), and an activity with a rate limit
//! only when its turn has come ([`Pace`]); the others are taken meanwhile.
//! The queues are looked at in turn, starting after the one served last, so a busy activity
//! does not starve the others (as RabbitMQ serves a channel's consumers round-robin). There is
//! no connection to lose and nothing to dead-letter.

use super::{
    CancelSource, Delivery, Pace, Payload, ReplySink, Settle, Started, Subscription, TaskSource,
};
use crate::hub::InProcessHub;
use crate::protocol::{CancelMessage, TaskMessage};
use crate::topology::task_queue;
use std::sync::Arc;
use tokio::sync::{broadcast, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub(crate) fn start(hub: InProcessHub, subscription: Subscription<'_>) -> Started {
    let names = subscription
        .activities
        .iter()
        .map(|a| task_queue(a))
        .collect();
    let limits = subscription
        .activities
        .iter()
        .map(|arn| {
            subscription
                .limits
                .get(arn)
                .map(|n| Arc::new(Semaphore::new(usize::from(*n))))
        })
        .collect();
    let paces = subscription
        .activities
        .iter()
        .map(|arn| subscription.paces.get(arn).cloned())
        .collect();
    Started {
        cancels: CancelSource::InProcess(Cancels {
            rx: hub.cancellations(),
        }),
        replies: ReplySink::InProcess(hub.clone()),
        tasks: TaskSource::InProcess(Tasks {
            hub,
            names,
            limits,
            paces,
            freed: Arc::new(Notify::new()),
            next_first: 0,
        }),
    }
}

pub(crate) struct Tasks {
    hub: InProcessHub,
    /// The activities' queues…
    names: Vec<String>,
    /// …and each one's own limit, if it has one…
    limits: Vec<Option<Arc<Semaphore>>>,
    /// …and its rate limit, if it has one.
    paces: Vec<Option<Pace>>,
    /// Signalled when a limited queue opens again (an [`ActivitySlot`] freed its only slot).
    freed: Arc<Notify>,
    /// The queue looked at first next time: the one after the queue served last.
    next_first: usize,
}

/// One of a limited activity's slots, held by its delivery until it is settled.
pub(crate) struct ActivitySlot {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for ActivitySlot {
    fn drop(&mut self) {
        // Only a queue that was full opens again (checked before giving the slot back, so of
        // slots freed at once at least the first one wakes); `notify_one` keeps the wake-up for
        // a `next` that is not waiting yet.
        let Some(permit) = self.permit.take() else {
            return;
        };
        let was_full = permit.semaphore().available_permits() == 0;
        drop(permit);
        if was_full {
            self.freed.notify_one();
        }
    }
}

impl Tasks {
    pub(crate) async fn next(&mut self) -> Delivery {
        loop {
            // Slots are taken only here, so a queue open now is still open when its task
            // arrives; one that opens meanwhile is noticed through `freed`.
            // A queue whose turn comes later is looked at again then.
            let (limits, paces) = (&self.limits, &self.paces);
            let now = tokio::time::Instant::now();
            let open = |i: usize| {
                limits[i].as_ref().is_none_or(|l| l.available_permits() > 0)
                    && paces[i].as_ref().is_none_or(|p| p.ready(now))
            };
            let turn = paces
                .iter()
                .flatten()
                .filter_map(Pace::ready_at)
                .filter(|at| *at > now)
                .min();
            let next_turn = super::until(turn);
            let freed = self.freed.notified();
            let (index, task) = if !(0..limits.len()).any(open) {
                tokio::select! {
                    () = freed => continue,
                    () = next_turn => continue,
                }
            } else {
                tokio::select! {
                    taken = self.hub.take_where(&self.names, self.next_first, open) => taken,
                    () = freed => continue,
                    () = next_turn => continue,
                }
            };
            if let Some(pace) = &mut self.paces[index] {
                pace.take(tokio::time::Instant::now());
            }
            self.next_first = (index + 1) % self.names.len();
            let activity_slot = self.limits[index].clone().map(|limit| ActivitySlot {
                permit: Some(
                    limit
                        .try_acquire_owned()
                        .expect("a queue seen open keeps its free slot: only `next` takes them"),
                ),
                freed: self.freed.clone(),
            });
            return Delivery {
                payload: Payload::Task(Box::new(task)),
                activity: None,
                settle: Settle::InProcess(self.hub.clone(), activity_slot),
                lost: CancellationToken::new(),
            };
        }
    }
}

pub(crate) struct Cancels {
    rx: broadcast::Receiver<CancelMessage>,
}

impl Cancels {
    pub(crate) async fn next(&mut self) -> Option<String> {
        loop {
            match self.rx.recv().await {
                Ok(message) => return Some(message.task_token),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "missed cancellations: the worker fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

pub(crate) fn hand_back(hub: &InProcessHub, task: TaskMessage) {
    let queue = task_queue(&task.resource);
    hub.push_task(&queue, task);
}
