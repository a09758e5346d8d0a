//! The delivery worker: one per sink, it feeds the sink from the [outbox](super) at the
//! times of the clock: the next saved, due event of each resource, grouped when the sink
//! groups, under a timeout; a failure is retried with backoff (longer when the receiver says
//! `Retry-After`), a refusal dropped; repeated failures are logged once a minute.
//!
//! A [`Sink`] only knows its receiver's payload; the worker owns retries and timing, so one
//! slow or dead sink delays nothing but itself.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Attempt, Outbox, Pending};
use crate::clock::Clock;
use crate::limits::Backoff;
use crate::logging::Repeats;
use crate::model::Timestamp;

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

/// A `Retry-After` is honoured up to this, or up to the sink's `retry_max` when that is
/// longer; it never shortens the backoff, so `Retry-After: 0` or a date in the past cannot make
/// a busy loop.
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(3600);

/// The least time between two lines about one sink's failed or rejected deliveries: the
/// attempts in between are counted in the next line's `suppressed` (and in the metrics).
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// The farthest ahead any sink schedules anything (about 30 years): a longer duration is taken
/// as this, so no time computation can overflow.
pub const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// The wait before the next attempt: the backoff's `backoff`, or longer when the receiver
/// asked for it, the ask capped at the larger of `retry_max` and [`RETRY_AFTER_CEILING`].
pub fn retry_delay(
    backoff: Duration,
    retry_after: Option<Duration>,
    retry_max: Duration,
) -> Duration {
    let ceiling = retry_max.max(RETRY_AFTER_CEILING);
    let asked = retry_after.unwrap_or(Duration::ZERO).min(ceiling);
    backoff.max(asked).max(Duration::from_millis(1))
}

/// `at` plus `by`, saturating, and never more than [`FAR_FUTURE`] ahead.
pub fn later(at: Timestamp, by: Duration) -> Timestamp {
    let millis = i64::try_from(by.min(FAR_FUTURE).as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millis(at.as_millis().saturating_add(millis))
}

/// The monotonic instant `by` from now, never more than [`FAR_FUTURE`] ahead.
pub fn instant_in(by: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(by.min(FAR_FUTURE)).unwrap_or(now)
}

/// Feeds `sink` from the outbox until `shutdown`, at the times of `clock`; then keeps going
/// for up to `grace` while events are due, so a clean stop flushes what it can.
pub async fn run<S: Sink>(
    name: String,
    sink: S,
    pacing: Pacing,
    outbox: Arc<Outbox>,
    clock: Clock,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let now = || clock.now();
    let mut saved = outbox.watch_saved();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut retry_log = Repeats::default();
    let mut reject_log = Repeats::default();
    loop {
        if shutdown.is_cancelled() {
            let end = *deadline.get_or_insert_with(|| instant_in(grace));
            if tokio::time::Instant::now() >= end {
                return;
            }
        }
        saved.mark_unchanged();
        let next = outbox.next_for(&name, now(), pacing.max_age);
        let Some(pending) = next.pending else {
            if shutdown.is_cancelled() {
                return;
            }
            let sleep = next
                .wake
                .map_or(Duration::from_secs(60), |at| at.since(now()));
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = saved.changed() => {}
                () = tokio::time::sleep(sleep.min(Duration::from_secs(60))) => {}
            }
            continue;
        };
        let batch = match sink.group_key(&pending) {
            Some(group) if !pacing.group_wait.is_zero() => {
                let until = later(pending.enqueued_at, pacing.group_wait);
                let wait = until.since(now());
                if !wait.is_zero() && !shutdown.is_cancelled() {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
                    }
                    continue;
                }
                outbox.group_for(&name, &pending, until, now(), |p| {
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
                tracing::debug!(sink = %name, id = %first.id, events = batch.len(), attempts = first.attempts.saturating_add(1), "delivered");
                if let Some(suppressed) = retry_log.ended() {
                    tracing::info!(sink = %name, suppressed, "delivering again");
                }
                Attempt::Delivered
            }
            Err(Failure::Retry { reason, after }) => {
                let delay = retry_delay(
                    pacing.backoff.delay(first.attempts),
                    after,
                    pacing.backoff.max,
                );
                if let Some(suppressed) = retry_log.occurred(tokio::time::Instant::now(), LOG_EVERY)
                {
                    tracing::warn!(
                        sink = %name,
                        id = %first.id,
                        events = batch.len(),
                        attempt = first.attempts.saturating_add(1),
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        reason = %reason,
                        suppressed,
                        "delivery failed; will retry"
                    );
                }
                outbox.sink_failed(&name, now(), &reason);
                Attempt::Retry {
                    not_before: later(now(), delay),
                }
            }
            Err(Failure::Reject { reason }) => {
                if let Some(suppressed) =
                    reject_log.occurred(tokio::time::Instant::now(), LOG_EVERY)
                {
                    tracing::error!(sink = %name, id = %first.id, events = batch.len(), reason = %reason, suppressed, "delivery rejected; event dropped");
                }
                outbox.sink_failed(&name, now(), &format!("rejected: {reason}"));
                Attempt::Rejected
            }
        };
        for pending in &batch {
            outbox.attempted(&name, &pending.id, attempt);
        }
        if !pacing.min_interval.is_zero() && !shutdown.is_cancelled() {
            tokio::time::sleep(pacing.min_interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::outbox::tests::{event, subscription};

    /// Fails its first `failures` attempts, then delivers.
    struct Flaky {
        failures: AtomicU32,
    }

    impl Sink for Flaky {
        async fn deliver(&self, _: &[Pending]) -> Result<(), Failure> {
            match self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            {
                Ok(_) => Err(Failure::Retry {
                    reason: "HTTP 503".into(),
                    after: None,
                }),
                Err(_) => Ok(()),
            }
        }
    }

    #[tokio::test]
    async fn a_sink_failing_attempt_after_attempt_is_one_warn_and_its_recovery_one_info() {
        let captured = crate::logging::Captured::start();
        let outbox = Arc::new(Outbox::new(vec![subscription("hook", &["FAILED"], 100)]));
        let at = Clock::wall().now();
        outbox.record(true, &[event(0, 1, "FAILED", at)], &Default::default(), at);
        outbox.mark_saved(outbox.generation());
        let pacing = Pacing {
            timeout: Duration::from_secs(5),
            max_age: Duration::from_secs(3600),
            backoff: Backoff {
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            group_wait: Duration::ZERO,
            min_interval: Duration::ZERO,
        };
        let sink = Flaky {
            failures: AtomicU32::new(30),
        };
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(run(
            "hook".into(),
            sink,
            pacing,
            outbox.clone(),
            Clock::wall(),
            shutdown.clone(),
            Duration::ZERO,
        ));
        while outbox.stats()["hook"].queued > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        worker.await.unwrap();
        let warns = captured.lines_with("delivery failed; will retry");
        assert_eq!(warns.len(), 1, "{warns:#?}");
        assert!(
            warns[0].contains(" sink=hook ") && warns[0].contains(" reason=\"HTTP 503\" "),
            "{}",
            warns[0]
        );
        let infos = captured.lines_with("delivering again");
        assert_eq!(infos.len(), 1, "{infos:#?}");
        assert!(
            infos[0].ends_with(" sink=hook suppressed=29"),
            "{}",
            infos[0]
        );
    }

    #[test]
    fn retry_after_lengthens_the_backoff_up_to_the_ceiling_never_shortens_it() {
        let ms = Duration::from_millis;
        let max = ms(300);
        assert_eq!(retry_delay(ms(200), None, max), ms(200));
        assert_eq!(retry_delay(ms(200), Some(ms(2000)), max), ms(2000));
        assert_eq!(retry_delay(ms(200), Some(Duration::ZERO), max), ms(200));
        assert_eq!(retry_delay(Duration::ZERO, None, max), ms(1));
        let huge = Some(Duration::from_secs(u64::MAX));
        assert_eq!(retry_delay(ms(200), huge, max), RETRY_AFTER_CEILING);
        let day = Duration::from_secs(86_400);
        assert_eq!(retry_delay(ms(200), huge, day), day);
        assert_eq!(retry_delay(ms(200), Some(ms(5000)), day), ms(5000));
    }

    #[test]
    fn time_arithmetic_saturates() {
        let huge = Duration::from_secs(u64::MAX);
        let start = Timestamp::from_secs(1_700_000_000);
        assert_eq!(later(start, huge).since(start), FAR_FUTURE);
        assert_eq!(
            later(Timestamp::from_millis(i64::MAX - 5), huge),
            Timestamp::from_millis(i64::MAX)
        );
        assert_eq!(
            later(start, Duration::from_secs(2)),
            Timestamp::from_secs(1_700_000_002)
        );
        // Within the range every formatter handles.
        assert!(
            later(Clock::wall().now(), huge)
                .to_rfc3339()
                .starts_with("20")
        );
        assert!(instant_in(huge) > tokio::time::Instant::now());
        assert!(instant_in(Duration::MAX) > tokio::time::Instant::now());
    }
}
