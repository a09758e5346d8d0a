//! Pacing of AWS calls: a rate limiter per (account, region) that spaces requests evenly and
//! backs the whole lane off when it is throttled, an optional bound on the calls in flight
//! across all lanes, and retries of throttled calls. Every HTTP attempt, retries and list pages
//! included, passes a limiter.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::eks::CallError;
use crate::model::ErrorKind;

/// Spaces requests `1 / rate` apart, so any one-second window holds at most `rate + 1` of
/// them; waiters are served in the order they asked. When the lane is throttled, no request
/// starts until the backoff has passed, for every caller of the lane.
#[derive(Debug)]
pub struct RateLimiter {
    /// `account/region`, for log lines.
    name: String,
    spacing: Duration,
    lane: Mutex<Lane>,
    in_flight: Option<Arc<Semaphore>>,
}

#[derive(Debug, Default)]
struct Lane {
    /// The earliest time of the next slot.
    next: Option<Instant>,
    /// No slot before this time: the lane is backing off.
    paused_until: Option<Instant>,
    /// Throttled answers since the last answer that was not throttled.
    throttled_streak: u32,
}

/// Permission to send one request; it holds a place among the calls in flight until dropped.
#[derive(Debug)]
pub struct Pass {
    _permit: Option<OwnedSemaphorePermit>,
}

impl RateLimiter {
    /// A limiter for `per_second` requests per second (more than zero).
    pub fn new(per_second: f64) -> Self {
        let spacing = if per_second.is_finite() && per_second > 0.0 {
            Duration::from_secs_f64(1.0 / per_second)
        } else {
            Duration::ZERO
        };
        Self {
            name: String::new(),
            spacing,
            lane: Mutex::new(Lane::default()),
            in_flight: None,
        }
    }

    /// The same limiter, named for log lines.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same limiter, also bounded by `in_flight`, a semaphore shared with other lanes.
    pub fn with_in_flight(mut self, in_flight: Arc<Semaphore>) -> Self {
        self.in_flight = Some(in_flight);
        self
    }

    /// Waits until this request may be sent. Every request is sent at a slot of its own, so
    /// the spacing holds whatever the waits; a backing-off lane is waited out, and a slot
    /// waited for, before a place among the calls in flight is taken, so neither holds up
    /// other lanes.
    pub async fn acquire(&self) -> Pass {
        loop {
            while let Some(until) = self.paused_until()
                && until > Instant::now()
            {
                tokio::time::sleep_until(until).await;
            }
            if !self.wait_for_slot().await {
                continue;
            }
            let Some(semaphore) = &self.in_flight else {
                return Pass { _permit: None };
            };
            let permit = match semaphore.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    // Late after waiting for a place: the slot has passed, so take a new one.
                    let Ok(permit) = semaphore.clone().acquire_owned().await else {
                        return Pass { _permit: None };
                    };
                    if !self.wait_for_slot().await {
                        continue;
                    }
                    permit
                }
            };
            return Pass {
                _permit: Some(permit),
            };
        }
    }

    /// Takes the next slot and sleeps until it; `false` when the lane was throttled meanwhile
    /// (the slot is not used).
    async fn wait_for_slot(&self) -> bool {
        let slot = {
            let mut lane = self.lock();
            let now = Instant::now();
            let slot = [lane.next, lane.paused_until]
                .into_iter()
                .flatten()
                .fold(now, Instant::max);
            lane.next = Some(slot + self.spacing);
            slot
        };
        tokio::time::sleep_until(slot).await;
        self.paused_until()
            .is_none_or(|until| until <= Instant::now())
    }

    /// Records a throttled answer: the lane pauses for the next backoff delay, which grows
    /// with each throttled answer in a row. Returns the delay.
    pub fn throttled(&self, backoff: &Backoff) -> Duration {
        let mut lane = self.lock();
        let delay = backoff.delay(lane.throttled_streak);
        if lane.throttled_streak == 0 {
            tracing::warn!(
                lane = %self.name,
                delay_ms = delay.as_millis() as u64,
                "AWS throttles this account and region; backing off"
            );
        }
        lane.throttled_streak = lane.throttled_streak.saturating_add(1);
        let until = Instant::now() + delay;
        lane.paused_until = Some(lane.paused_until.map_or(until, |t| t.max(until)));
        delay
    }

    /// Records an answer that was not throttled: the lane is back to its normal pace.
    pub fn answered(&self) {
        let mut lane = self.lock();
        if lane.throttled_streak > 0 {
            tracing::info!(lane = %self.name, "no longer throttled; back to the configured rate");
            lane.throttled_streak = 0;
        }
    }

    /// Throttled answers in a row; 0 when the lane runs at its normal pace.
    pub fn throttled_streak(&self) -> u32 {
        self.lock().throttled_streak
    }

    fn paused_until(&self) -> Option<Instant> {
        self.lock().paused_until
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lane> {
        self.lane.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One limiter per (account, region), created on first use, all sharing one bound on the
/// calls in flight when one is set.
#[derive(Debug)]
pub struct Limiters {
    per_second: f64,
    in_flight: Option<Arc<Semaphore>>,
    limiters: Mutex<HashMap<(String, String), Arc<RateLimiter>>>,
}

impl Limiters {
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            in_flight: None,
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// The same limiters, with at most `max` calls in flight over all of them.
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.in_flight = Some(Arc::new(Semaphore::new(max.max(1))));
        self
    }

    /// The limiter of an account and region.
    pub fn get(&self, account_id: &str, region: &str) -> Arc<RateLimiter> {
        let mut limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        limiters
            .entry((account_id.to_owned(), region.to_owned()))
            .or_insert_with(|| {
                let limiter =
                    RateLimiter::new(self.per_second).named(format!("{account_id}/{region}"));
                Arc::new(match &self.in_flight {
                    Some(in_flight) => limiter.with_in_flight(in_flight.clone()),
                    None => limiter,
                })
            })
            .clone()
    }

    /// A limiter of its own for calls outside any (account, region) lane, such as STS before
    /// the account is known, sharing the bound on calls in flight.
    pub fn standalone(&self) -> RateLimiter {
        let limiter = RateLimiter::new(self.per_second).named("sts");
        match &self.in_flight {
            Some(in_flight) => limiter.with_in_flight(in_flight.clone()),
            None => limiter,
        }
    }
}

/// Exponential backoff with "equal jitter": attempt `n` waits between half and all of
/// `min(max, base × 2ⁿ)`, so clients that were throttled together spread out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max);
        full / 2 + full.mul_f64(random_fraction() / 2.0)
    }
}

/// How throttled calls are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first throttled attempt; the call fails as throttled after these.
    pub throttled_retries: u32,
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// A few retries within about two seconds: for `once`, which answers in one pass.
    pub const ONCE: RetryPolicy = RetryPolicy {
        throttled_retries: 3,
        backoff: Backoff {
            base: Duration::from_millis(250),
            max: Duration::from_secs(2),
        },
    };

    /// For the daemon, which polls again next cycle: two retries, and a lane that keeps being
    /// throttled backs off for up to 30 s between attempts.
    pub const DAEMON: RetryPolicy = RetryPolicy {
        throttled_retries: 2,
        backoff: Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        },
    };
}

/// Runs `call` when `limiter` allows it. A throttled answer pauses the limiter's lane (so every
/// caller of the lane backs off) and the call is retried as `policy` says; any other answer
/// puts the lane back to its normal pace.
pub async fn paced<T, F, Fut>(
    limiter: &RateLimiter,
    policy: &RetryPolicy,
    mut call: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut attempt = 0;
    loop {
        let pass = limiter.acquire().await;
        let result = call().await;
        drop(pass);
        match result {
            Err(error) if error.kind == ErrorKind::Throttled => {
                let delay = limiter.throttled(&policy.backoff);
                if attempt >= policy.throttled_retries {
                    return Err(error);
                }
                tracing::debug!(
                    operation = %error.operation,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "throttled; retrying"
                );
                attempt += 1;
            }
            result => {
                limiter.answered();
                return result;
            }
        }
    }
}

/// A number in `[0, 1)` that differs between calls and processes; enough for jitter.
fn random_fraction() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let bits = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Operation;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_evenly_with_no_burst() {
        let limiter = Arc::new(RateLimiter::new(4.0));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..9 {
            let limiter = limiter.clone();
            tasks.spawn(async move {
                limiter.acquire().await;
                Instant::now() - start
            });
        }
        let mut times: Vec<Duration> = tasks.join_all().await;
        times.sort();
        let expected: Vec<Duration> = (0..9).map(|i| Duration::from_millis(250 * i)).collect();
        assert_eq!(times, expected);
        // Any one-second window holds at most rate + 1 requests.
        for first in &times {
            let in_window = times
                .iter()
                .filter(|t| **t >= *first && **t - *first < Duration::from_secs(1));
            assert!(in_window.count() <= 5);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limiter_does_not_bank_requests() {
        let limiter = RateLimiter::new(2.0);
        limiter.acquire().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(500));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            for (attempt, full) in [
                (0, 100),
                (1, 200),
                (2, 400),
                (3, 800),
                (4, 1000),
                (40, 1000),
            ] {
                let delay = backoff.delay(attempt);
                let full = Duration::from_millis(full);
                assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_calls_are_retried_then_fail_and_other_errors_are_not() {
        let limiter = RateLimiter::new(1000.0);
        let throttled =
            || CallError::new(Operation::ListClusters, ErrorKind::Throttled, "slow down");
        let mut calls = 0;
        let result: Result<(), _> = paced(&limiter, &RetryPolicy::ONCE, || {
            calls += 1;
            async { Err(throttled()) }
        })
        .await;
        assert_eq!(result.unwrap_err().kind, ErrorKind::Throttled);
        assert_eq!(calls, 4);

        let mut calls = 0;
        let result = paced(&limiter, &RetryPolicy::ONCE, || {
            calls += 1;
            let answer = if calls < 3 {
                Err(throttled())
            } else {
                Ok(calls)
            };
            async move { answer }
        })
        .await;
        assert_eq!(result.unwrap(), 3);

        let mut calls = 0;
        let result: Result<(), _> = paced(&limiter, &RetryPolicy::ONCE, || {
            calls += 1;
            async {
                Err(CallError::new(
                    Operation::ListClusters,
                    ErrorKind::Server,
                    "oops",
                ))
            }
        })
        .await;
        assert_eq!(result.unwrap_err().kind, ErrorKind::Server);
        assert_eq!(calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_lane_pauses_every_caller_then_recovers() {
        let limiter = RateLimiter::new(10.0);
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
        };
        let first = limiter.throttled(&backoff);
        let second = limiter.throttled(&backoff);
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
        assert!(second >= Duration::from_secs(1) && second <= Duration::from_secs(2));
        assert_eq!(limiter.throttled_streak(), 2);
        let start = Instant::now();
        limiter.acquire().await;
        assert!(Instant::now() - start >= first.max(second));
        limiter.answered();
        assert_eq!(limiter.throttled_streak(), 0);
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn lanes_share_the_bound_on_calls_in_flight() {
        let limiters = Arc::new(Limiters::new(1000.0).with_max_in_flight(3));
        let in_flight = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..12 {
            let (limiters, in_flight, most) = (limiters.clone(), in_flight.clone(), most.clone());
            tasks.spawn(async move {
                let limiter = limiters.get(&format!("account-{}", i % 4), "us-east-1");
                let _pass = limiter.acquire().await;
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        }
        tasks.join_all().await;
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }
}
