//! The `Clock` port: the runtime's only source of "now".
//!
//! [`SystemClock`] reads the wall clock. [`TokioClock`] follows tokio's clock from a fixed
//! epoch, so tests that pause tokio time (`tokio::time::pause`) see time move only when they
//! advance it — timers, heartbeats and timeouts then run without sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Epoch milliseconds derived from tokio's (pausable) clock.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch_ms: i64,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `epoch_ms` now and advances with tokio's time.
    pub fn starting_at(epoch_ms: i64) -> TokioClock {
        TokioClock {
            epoch_ms,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        self.epoch_ms + self.origin.elapsed().as_millis() as i64
    }
}
