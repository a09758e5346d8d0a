//! The receivers of events, one file each behind one small trait, and the worker that feeds
//! each from the outbox: in order per profile, each event saved before its first attempt,
//! retried with backoff, bounded by `max_age` and `max_queue` (see [`crate::state`]).
//!
//! A sink only knows its receiver's payload; the worker owns retries and timing, so one slow or
//! dead sink delays nothing but itself.

pub mod alertmanager;
pub mod log;
pub mod slack;
pub mod webhook;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::limits::Backoff;
use crate::model::Timestamp;
use crate::state::{Attempt, Pending, State};

/// Why an attempt did not deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Worth another try (timeouts, connection errors, 408, 429, 5xx), not before `after`
    /// when the receiver said so (`Retry-After`).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Refused for good (any other 4xx, a redirect): dropped and counted.
    Reject { reason: String },
}

/// A receiver of events.
pub trait Sink: Send + Sync + 'static {
    /// Sends a batch: one event, or a group that becomes one message.
    fn deliver(&self, batch: &[Pending]) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Events with the same key, queued within the sink's `group_wait` of each other, travel
    /// together; `None` sends each on its own.
    fn group_key(&self, _pending: &Pending) -> Option<String> {
        None
    }
}

/// How the worker paces one sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    pub timeout: Duration,
    pub max_age: Duration,
    pub backoff: Backoff,
    /// How long the first event of a group waits for others; zero for no grouping.
    pub group_wait: Duration,
    /// The least time between two deliveries (Slack takes about one message per second).
    pub min_interval: Duration,
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Feeds `sink` from the outbox until `shutdown`; then keeps going for up to `grace` while
/// events are due, so a clean stop flushes what it can.
pub async fn run<S: Sink>(
    name: String,
    sink: S,
    pacing: Pacing,
    state: Arc<State>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut saved = state.watch_saved();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            let end = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + grace);
            if tokio::time::Instant::now() >= end {
                return;
            }
        }
        saved.mark_unchanged();
        let (next, wake) = state.next_for(&name, now(), pacing.max_age);
        let Some(pending) = next else {
            if shutdown.is_cancelled() {
                return;
            }
            let sleep =
                wake.map_or(Duration::from_secs(60), |at| {
                    Duration::from_millis(
                        at.as_millis().saturating_sub(now().as_millis()).max(0) as u64
                    )
                });
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = saved.changed() => {}
                () = tokio::time::sleep(sleep.min(Duration::from_secs(60))) => {}
            }
            continue;
        };
        let batch = match sink.group_key(&pending) {
            Some(group) if !pacing.group_wait.is_zero() => {
                let until = Timestamp::from_millis(
                    pending.enqueued_at.as_millis() + pacing.group_wait.as_millis() as i64,
                );
                let wait = until.as_millis() - now().as_millis();
                if wait > 0 && !shutdown.is_cancelled() {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    }
                    continue;
                }
                state.group_for(&name, &pending, until, |p| {
                    sink.group_key(p).as_deref() == Some(group.as_str())
                })
            }
            _ => vec![pending],
        };
        let Some(first) = batch.first() else {
            continue;
        };
        let result = match tokio::time::timeout(pacing.timeout, sink.deliver(&batch)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Retry {
                reason: format!(
                    "no answer within {}",
                    humantime::format_duration(pacing.timeout)
                ),
                after: None,
            }),
        };
        let attempt = match result {
            Ok(()) => {
                tracing::debug!(sink = %name, id = %first.id, events = batch.len(), attempts = first.attempts + 1, "delivered");
                Attempt::Delivered
            }
            Err(Failure::Retry { reason, after }) => {
                let delay = after
                    .unwrap_or_else(|| pacing.backoff.delay(first.attempts))
                    .max(Duration::from_millis(1));
                tracing::warn!(
                    sink = %name,
                    id = %first.id,
                    events = batch.len(),
                    attempt = first.attempts + 1,
                    retry_in_ms = delay.as_millis() as u64,
                    reason = %reason,
                    "delivery failed; will retry"
                );
                let not_before =
                    Timestamp::from_millis(now().as_millis() + delay.as_millis() as i64);
                Attempt::Retry { not_before }
            }
            Err(Failure::Reject { reason }) => {
                tracing::error!(sink = %name, id = %first.id, events = batch.len(), reason = %reason, "delivery rejected; event dropped");
                Attempt::Rejected
            }
        };
        for pending in &batch {
            state.attempted(&name, &pending.id, attempt);
        }
        if !pacing.min_interval.is_zero() && !shutdown.is_cancelled() {
            tokio::time::sleep(pacing.min_interval).await;
        }
    }
}
