//! The in-process transport: the worker side of [`InProcessHub`] (embedded mode and tests).
//!
//! A task is taken from the hub only when the worker has a free slot, so tasks the worker has
//! not started stay in the hub; a task handed back is pushed onto its queue again. There is no
//! connection to lose and nothing to dead-letter.

use super::{
    CancelSource, Delivery, Payload, ReplySink, Settle, Started, Subscription, TaskSource,
};
use crate::hub::InProcessHub;
use crate::protocol::{CancelMessage, TaskMessage};
use crate::topology::task_queue;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub(crate) fn start(hub: InProcessHub, subscription: Subscription<'_>) -> Started {
    let queues = subscription
        .activities
        .iter()
        .map(|arn| task_queue(arn))
        .collect();
    Started {
        cancels: CancelSource::InProcess(Cancels {
            rx: hub.cancellations(),
        }),
        replies: ReplySink::InProcess(hub.clone()),
        tasks: TaskSource::InProcess(Tasks { hub, queues }),
    }
}

pub(crate) struct Tasks {
    hub: InProcessHub,
    queues: Vec<String>,
}

impl Tasks {
    pub(crate) async fn next(&mut self) -> Delivery {
        let task = self.hub.take_task(&self.queues).await;
        Delivery {
            payload: Payload::Task(Box::new(task)),
            activity: None,
            settle: Settle::InProcess(self.hub.clone()),
            lost: CancellationToken::new(),
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
