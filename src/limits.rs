//! Pacing of AWS calls: a rate limiter per (account, region) that spaces requests evenly, and
//! retries of throttled calls with exponential backoff and jitter. Every HTTP attempt, retries
//! and list pages included, passes the limiter.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::eks::CallError;
use crate::model::ErrorKind;

/// Spaces requests `1 / rate` apart, so any one-second window holds at most `rate + 1` of
/// them. Waiters are served in the order they asked.
#[derive(Debug)]
pub struct RateLimiter {
    spacing: Duration,
    next: Mutex<Option<Instant>>,
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
            spacing,
            next: Mutex::new(None),
        }
    }

    /// Waits until this request's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let slot = next.map_or(now, |next| next.max(now));
            *next = Some(slot + self.spacing);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// One limiter per (account, region), created on first use.
#[derive(Debug)]
pub struct Limiters {
    per_second: f64,
    limiters: Mutex<HashMap<(String, String), Arc<RateLimiter>>>,
}

impl Limiters {
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// The limiter of an account and region.
    pub fn get(&self, account_id: &str, region: &str) -> Arc<RateLimiter> {
        let mut limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        limiters
            .entry((account_id.to_owned(), region.to_owned()))
            .or_insert_with(|| Arc::new(RateLimiter::new(self.per_second)))
            .clone()
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
}

/// Runs `call` after `limiter` allows it, retrying throttled answers as `policy` says.
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
        limiter.acquire().await;
        match call().await {
            Err(error)
                if error.kind == ErrorKind::Throttled && attempt < policy.throttled_retries =>
            {
                let delay = policy.backoff.delay(attempt);
                tracing::debug!(
                    operation = %error.operation,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "throttled; retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            result => return result,
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
}
