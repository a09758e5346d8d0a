//! Pacing of AWS calls: a rate limiter per (account, region) that spaces requests evenly and
//! backs the whole lane off when it is throttled, an optional bound on the calls in flight
//! across all lanes, and retries of throttled calls. Every HTTP attempt, retries and list pages
//! included, passes a limiter.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::eks::CallError;
use crate::logging::Repeats;
use crate::model::ErrorKind;

/// Spaces requests `1 / rate` apart, so any one-second window holds at most `rate + 1` of
/// them (`rate + 2` above 500 per second: see [`Lane::tolerance`]); waiters queue and are served in the order they asked. The rate adapts (AIMD): a
/// throttled answer cuts it by 30% (at most once a second) and pauses the lane for a backoff that
/// grows with throttled answers in a row; answers that are not throttled raise it again by a
/// sixtieth of the configured rate per second, up to that rate. So a throttled lane settles
/// just under what AWS accepts instead of retrying into a wall. Only the head of the queue
/// waits on the clock, so a rate change applies to the very next request.
#[derive(Debug)]
pub struct RateLimiter {
    /// `account/region`, for log lines.
    name: String,
    /// The configured rate, requests per second; 0 for no limit.
    max_rate: f64,
    lane: Mutex<Lane>,
    in_flight: Option<Arc<Semaphore>>,
}

/// What a throttled answer multiplies a lane's rate by.
const DECREASE: f64 = 0.7;
/// The lowest rate a lane drops to, as a share of the configured one.
const MIN_RATE_SHARE: f64 = 0.02;
/// How fast a lane's rate climbs back: this share of the configured rate per second.
const RAISE_SHARE_PER_SECOND: f64 = 1.0 / 60.0;
/// The range a configured rate is clamped to: whatever reaches the limiter (`check` bounds
/// the config), its arithmetic stays within what `Duration` and `Instant` hold.
pub const MIN_RATE: f64 = 0.001;
pub const MAX_RATE: f64 = 1_000_000.0;
/// The least time between two WARN lines about a lane being throttled.
const THROTTLED_LOG_EVERY: Duration = Duration::from_secs(60);

/// `at + by`, or a time so far ahead that it never comes (about 30 years) when that overflows.
pub fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).unwrap_or_else(far_future)
}

/// About 30 years from now, as tokio's own far future: a deadline that never comes.
pub fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(86_400 * 365 * 30))
        .unwrap_or(now)
}

#[derive(Debug, Default)]
struct Lane {
    /// The rate now, requests per second.
    rate: f64,
    /// When the rate was last raised or lowered.
    adjusted_at: Option<Instant>,
    /// When the rate was last lowered.
    lowered_at: Option<Instant>,
    /// The slot of the last request let through: when it was due, or when it went if it went
    /// later than [`Lane::tolerance`] after that.
    last_slot: Option<Instant>,
    /// No request before this time: the lane is backing off.
    paused_until: Option<Instant>,
    /// Throttled answers since the last answer that was not throttled.
    throttled_streak: u32,
    /// Answers of the last minute or two, for the throttled share.
    answers: Answers,
    /// When the last throttled answer came.
    last_throttled: Option<Instant>,
    /// The WARN about throttled answers, once a minute at most.
    throttled_log: Repeats,
    /// The waiters in order; the head is the next to go.
    queue: VecDeque<(u64, Arc<Notify>)>,
    next_id: u64,
}

impl Lane {
    fn spacing(&self) -> Duration {
        if self.rate > 0.0 {
            // The rate is clamped, so this holds; saturate all the same.
            Duration::try_from_secs_f64(1.0 / self.rate).unwrap_or(Duration::MAX)
        } else {
            Duration::ZERO
        }
    }

    /// How late a request may go and still keep its slot, so that the next is not pushed back
    /// by the timer's lateness: half a spacing, which keeps any one-second window at `rate + 1`,
    /// but at least the timer's resolution of 1 ms (so above 500 requests per second a window
    /// may hold `rate + 2`). Without it a lane would lose up to a millisecond per request.
    fn tolerance(&self) -> Duration {
        (self.spacing() / 2).max(Duration::from_millis(1))
    }

    /// Records a request let through now.
    fn sent(&mut self, now: Instant) {
        let slot = self.last_slot.map(|at| later(at, self.spacing()));
        self.last_slot = match slot {
            Some(slot) if slot <= now && now - slot <= self.tolerance() => Some(slot),
            _ => Some(now),
        };
    }
}

/// How long a bucket of [`Answers`] counts.
const ANSWERS_WINDOW: Duration = Duration::from_secs(60);

/// A lane's answers in two buckets of [`ANSWERS_WINDOW`]: the current one and the one before,
/// so the share covers the last one to two minutes and forgets what is older.
#[derive(Clone, Copy, Debug, Default)]
struct Answers {
    /// When the current bucket began.
    began: Option<Instant>,
    /// Throttled and all answers of the current bucket, then of the one before.
    current: (u64, u64),
    previous: (u64, u64),
}

impl Answers {
    fn roll(&mut self, now: Instant) {
        let Some(began) = self.began else {
            self.began = Some(now);
            return;
        };
        let age = now.saturating_duration_since(began);
        if age >= ANSWERS_WINDOW * 2 {
            *self = Self {
                began: Some(now),
                ..Self::default()
            };
        } else if age >= ANSWERS_WINDOW {
            self.previous = std::mem::take(&mut self.current);
            self.began = Some(later(began, ANSWERS_WINDOW));
        }
    }

    fn record(&mut self, now: Instant, throttled: bool) {
        self.roll(now);
        self.current.0 = self.current.0.saturating_add(u64::from(throttled));
        self.current.1 = self.current.1.saturating_add(1);
    }

    /// Throttled and all answers of the last one to two minutes.
    fn counts(mut self, now: Instant) -> (u64, u64) {
        self.roll(now);
        (
            self.current.0.saturating_add(self.previous.0),
            self.current.1.saturating_add(self.previous.1),
        )
    }
}

/// How long a throttled answer counts as recent for a lane's status.
pub const RECENTLY: Duration = Duration::from_secs(5);

/// What a lane is doing now, for the status page (through the state's snapshot).
#[derive(Clone, Debug, PartialEq)]
pub struct LaneStatus {
    pub account_id: String,
    pub region: String,
    /// The rate in force and the configured one, requests per second (0: no limit).
    pub rate: f64,
    pub max_rate: f64,
    /// Paused after a throttled answer: no request before the pause ends.
    pub backing_off: bool,
    /// Throttled answers in a row.
    pub throttled_streak: u32,
    /// A throttled answer came within the last [`RECENTLY`].
    pub throttled_recently: bool,
    /// Throttled and all answers of the last one to two minutes.
    pub throttled: u64,
    pub answers: u64,
}

/// Permission to send one request; it holds a place among the calls in flight until dropped.
#[derive(Debug)]
pub struct Pass {
    _permit: Option<OwnedSemaphorePermit>,
}

/// A place in a lane's queue; leaving it (served or cancelled) wakes the next waiter.
struct Place<'a> {
    limiter: &'a RateLimiter,
    id: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut lane = self.limiter.lock();
        // Ids grow along the queue; the head leaves far more often than anyone else.
        let Ok(index) = lane.queue.binary_search_by_key(&self.id, |(id, _)| *id) else {
            return;
        };
        lane.queue.remove(index);
        if index == 0
            && let Some((_, next)) = lane.queue.front()
        {
            next.notify_one();
        }
    }
}

impl RateLimiter {
    /// A limiter for `per_second` requests per second, clamped to [`MIN_RATE`]..[`MAX_RATE`];
    /// zero, a negative number or NaN is no limit.
    pub fn new(per_second: f64) -> Self {
        let max_rate = if per_second > 0.0 {
            per_second.clamp(MIN_RATE, MAX_RATE)
        } else {
            0.0
        };
        Self {
            name: String::new(),
            max_rate,
            lane: Mutex::new(Lane {
                rate: max_rate,
                ..Lane::default()
            }),
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

    /// The rate the lane runs at now, requests per second (0 for no limit).
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// Waits until this request may be sent: its turn in the queue, its spacing after the
    /// previous request, the end of a backoff, then a place among the calls in flight. Only
    /// the head of a lane waits for a place in flight, so one lane does not hold up others.
    pub async fn acquire(&self) -> Pass {
        let notify = Arc::new(Notify::new());
        let place = {
            let mut lane = self.lock();
            let id = lane.next_id;
            lane.next_id += 1;
            let first = lane.queue.is_empty();
            lane.queue.push_back((id, notify.clone()));
            if first {
                notify.notify_one();
            }
            Place { limiter: self, id }
        };
        notify.notified().await;
        let mut permit = None;
        loop {
            let due = {
                let lane = self.lock();
                let now = Instant::now();
                [
                    lane.last_slot.map(|at| later(at, lane.spacing())),
                    lane.paused_until,
                ]
                .into_iter()
                .flatten()
                .fold(now, Instant::max)
            };
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
                continue;
            }
            if permit.is_none()
                && let Some(semaphore) = &self.in_flight
            {
                match semaphore.clone().try_acquire_owned() {
                    Ok(p) => permit = Some(p),
                    Err(_) => {
                        permit = semaphore.clone().acquire_owned().await.ok();
                        // Time passed: check the spacing and a pause again.
                        continue;
                    }
                }
            }
            self.lock().sent(Instant::now());
            drop(place);
            return Pass { _permit: permit };
        }
    }

    /// Records a throttled answer: the rate drops by 30% (once a second at most) and the lane pauses
    /// for the next backoff delay, which grows with each throttled answer in a row. Returns
    /// the delay.
    pub fn throttled(&self, backoff: &Backoff) -> Duration {
        let mut lane = self.lock();
        let delay = backoff.delay(lane.throttled_streak);
        let now = Instant::now();
        let lowered_lately = lane
            .lowered_at
            .is_some_and(|at| now - at < Duration::from_secs(1));
        if self.max_rate > 0.0 && !lowered_lately {
            lane.rate = (lane.rate * DECREASE).max(self.max_rate * MIN_RATE_SHARE);
            lane.adjusted_at = Some(now);
            lane.lowered_at = Some(now);
        }
        if let Some(suppressed) = lane.throttled_log.occurred(now, THROTTLED_LOG_EVERY) {
            tracing::warn!(
                lane = %self.name,
                delay_ms = delay.as_millis() as u64,
                rate = lane.rate,
                suppressed,
                "AWS throttles this account and region; backing off and lowering the rate"
            );
        }
        lane.throttled_streak = lane.throttled_streak.saturating_add(1);
        lane.answers.record(now, true);
        lane.last_throttled = Some(now);
        let until = later(now, delay);
        lane.paused_until = Some(lane.paused_until.map_or(until, |t| t.max(until)));
        delay
    }

    /// Records an answer that was not throttled: no more pauses, and the rate climbs back
    /// towards the configured one.
    pub fn answered(&self) {
        let mut lane = self.lock();
        lane.answers.record(Instant::now(), false);
        if lane.throttled_streak > 0 {
            lane.throttled_streak = 0;
            if let Some(suppressed) = lane.throttled_log.ended() {
                tracing::info!(lane = %self.name, rate = lane.rate, suppressed, "no longer throttled; the rate climbs back");
            }
        }
        if lane.rate < self.max_rate {
            let now = Instant::now();
            let elapsed = lane
                .adjusted_at
                .map_or(60.0, |at| (now - at).as_secs_f64().min(60.0));
            let raised = lane.rate + self.max_rate * RAISE_SHARE_PER_SECOND * elapsed;
            lane.rate = raised.min(self.max_rate);
            lane.adjusted_at = Some(now);
        }
    }

    /// The configured rate after clamping, requests per second (0 for no limit).
    pub fn max_rate(&self) -> f64 {
        self.max_rate
    }

    /// What the lane is doing now.
    fn status(&self, account_id: &str, region: &str) -> LaneStatus {
        let lane = self.lock();
        let now = Instant::now();
        let (throttled, answers) = lane.answers.counts(now);
        LaneStatus {
            account_id: account_id.to_owned(),
            region: region.to_owned(),
            rate: lane.rate,
            max_rate: self.max_rate,
            backing_off: lane.paused_until.is_some_and(|until| until > now),
            throttled_streak: lane.throttled_streak,
            throttled_recently: lane
                .last_throttled
                .is_some_and(|at| now.saturating_duration_since(at) < RECENTLY),
            throttled,
            answers,
        }
    }

    /// Throttled answers in a row; 0 when the lane runs at its normal pace.
    pub fn throttled_streak(&self) -> u32 {
        self.lock().throttled_streak
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

    /// Every lane's status, by account and region.
    pub fn statuses(&self) -> Vec<LaneStatus> {
        let limiters: Vec<_> = self
            .limiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(key, limiter)| (key.clone(), limiter.clone()))
            .collect();
        let mut statuses: Vec<LaneStatus> = limiters
            .iter()
            .map(|((account_id, region), limiter)| limiter.status(account_id, region))
            .collect();
        statuses.sort_by(|a, b| (&a.account_id, &a.region).cmp(&(&b.account_id, &b.region)));
        statuses
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
        let jitter = Duration::try_from_secs_f64(full.as_secs_f64() * random_fraction() / 2.0)
            .unwrap_or_default()
            .min(full / 2);
        (full / 2).saturating_add(jitter)
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

    #[test]
    fn the_throttled_share_covers_the_last_one_to_two_minutes() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut answers = Answers::default();
        for second in 0..30 {
            answers.record(at(second), second % 3 == 0);
        }
        assert_eq!(answers.counts(at(30)), (10, 30));
        // A minute on, the first bucket is the previous one: still counted.
        answers.record(at(70), false);
        assert_eq!(answers.counts(at(70)), (10, 31));
        // Two minutes after the first bucket began, it is forgotten.
        assert_eq!(answers.counts(at(125)), (0, 1));
        assert_eq!(answers.counts(at(300)), (0, 0));
        assert_eq!(Answers::default().counts(at(5)), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lane_reports_its_rate_backoff_and_throttled_share() {
        let limiters = Limiters::new(10.0);
        let lane = limiters.get("111122223333", "us-east-1");
        let _ = limiters.get("111122223333", "eu-west-1");
        lane.answered();
        let delay = lane.throttled(&Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
        });
        let statuses = limiters.statuses();
        assert_eq!(statuses.len(), 2);
        assert_eq!(statuses[0].region, "eu-west-1");
        let status = &statuses[1];
        assert_eq!((status.throttled, status.answers), (1, 2));
        assert!(status.backing_off);
        assert!(status.throttled_recently);
        assert_eq!(status.throttled_streak, 1);
        assert!(status.rate < status.max_rate);
        assert_eq!(status.max_rate, 10.0);
        tokio::time::advance(delay + Duration::from_millis(1)).await;
        assert!(!limiters.statuses()[1].backing_off);
        tokio::time::advance(RECENTLY).await;
        assert!(!limiters.statuses()[1].throttled_recently);
    }
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
    async fn a_lane_throttled_again_and_again_warns_once_a_minute_with_the_count() {
        let captured = crate::logging::Captured::start();
        let lane = Limiters::new(10.0).get("111122223333", "us-east-1");
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let secs = |n| tokio::time::sleep(Duration::from_secs(n));
        // Throttled for 5 s: one WARN, and one INFO when it ends.
        for _ in 0..5 {
            lane.throttled(&backoff);
            secs(1).await;
        }
        lane.answered();
        // Throttled on and off within the minute: nothing more.
        for _ in 0..5 {
            lane.throttled(&backoff);
            secs(5).await;
            lane.answered();
            secs(5).await;
        }
        let warns = captured.lines_with("AWS throttles this account and region");
        let infos = captured.lines_with("no longer throttled");
        assert_eq!(warns.len(), 1, "{warns:#?}");
        assert!(
            warns[0].contains(" lane=111122223333/us-east-1 "),
            "{}",
            warns[0]
        );
        assert!(warns[0].contains(" suppressed=0"), "{}", warns[0]);
        assert_eq!(infos.len(), 1, "{infos:#?}");
        assert!(infos[0].contains(" suppressed=4"), "{}", infos[0]);
        // A minute after the WARN, throttled again: the next WARN counts what was not said.
        secs(10).await;
        lane.throttled(&backoff);
        let warns = captured.lines_with("AWS throttles this account and region");
        assert_eq!(warns.len(), 2, "{warns:#?}");
        assert!(warns[1].contains(" suppressed=5"), "{}", warns[1]);
        // The rate is rounded for reading.
        let rate = warns[1].split(" rate=").nth(1).unwrap();
        let rate = rate.split(' ').next().unwrap();
        assert!(
            rate.split('.').nth(1).is_none_or(|d| d.len() <= 3),
            "{rate}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_sent_a_little_late_keeps_its_slot_for_the_next() {
        // 200/s: slots 5 ms apart, and a request up to 2.5 ms late keeps its slot. (The paused
        // clock, like the timer, moves in whole milliseconds.)
        let limiter = RateLimiter::new(200.0);
        let start = Instant::now();
        limiter.acquire().await;
        tokio::time::sleep(Duration::from_millis(7)).await;
        limiter.acquire().await;
        limiter.acquire().await;
        // The third is due 5 ms after the second's slot (5 ms), not after it went (7 ms).
        assert_eq!(Instant::now() - start, Duration::from_millis(10));
        // Later than that, a request's slot is when it went: 3 ms late here.
        tokio::time::sleep(Duration::from_millis(8)).await;
        let late = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(Instant::now() - late, Duration::from_millis(5));
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
        // Lowered once: two throttled answers within a second are one signal.
        assert!((limiter.rate() - 7.0).abs() < 1e-9, "{}", limiter.rate());
        let start = Instant::now();
        limiter.acquire().await;
        assert!(Instant::now() - start >= first.max(second));
        limiter.answered();
        assert_eq!(limiter.throttled_streak(), 0);
        let rate = limiter.rate();
        assert!(rate > 7.0 && rate < 10.0, "{rate}");
        let start = Instant::now();
        limiter.acquire().await;
        let waited = (Instant::now() - start).as_secs_f64();
        assert!(
            (waited - 1.0 / rate).abs() < 0.002,
            "{waited} for rate {rate}"
        );
        // The rate climbs back by a sixtieth of the maximum per second, up to the maximum.
        tokio::time::sleep(Duration::from_secs(40)).await;
        limiter.answered();
        assert_eq!(limiter.rate(), 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn extreme_rates_are_clamped_and_nothing_panics() {
        // 1e-30 per second is the least rate: one request per 1000 s.
        let limiter = RateLimiter::new(1e-30);
        assert_eq!(limiter.max_rate(), MIN_RATE);
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(1000));
        // Throttled to its floor, then backed off for as long as a Duration holds.
        let forever = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
        };
        for _ in 0..3 {
            assert!(limiter.throttled(&forever) >= Duration::MAX / 2);
        }
        assert!(limiter.rate() >= MIN_RATE * MIN_RATE_SHARE);
        let waiting = tokio::time::timeout(Duration::from_secs(86_400), limiter.acquire());
        assert!(waiting.await.is_err(), "the lane is paused far ahead");
        limiter.answered();

        // 1e30 per second is the most: a microsecond apart.
        let limiter = RateLimiter::new(1e30);
        assert_eq!(limiter.max_rate(), MAX_RATE);
        let start = Instant::now();
        for _ in 0..1000 {
            limiter.acquire().await;
        }
        assert!(Instant::now() - start <= Duration::from_millis(10));
        limiter.throttled(&RetryPolicy::DAEMON.backoff);
        limiter.answered();

        // Not reachable from a config, and no limit all the same.
        for rate in [f64::NAN, f64::NEG_INFINITY, -1.0, 0.0] {
            let limiter = RateLimiter::new(rate);
            assert_eq!(limiter.max_rate(), 0.0, "{rate}");
            let start = Instant::now();
            for _ in 0..10 {
                limiter.acquire().await;
            }
            assert_eq!(Instant::now(), start);
            limiter.throttled(&forever);
            limiter.answered();
        }
        assert_eq!(RateLimiter::new(f64::INFINITY).max_rate(), MAX_RATE);
        assert_eq!(later(Instant::now(), Duration::MAX), far_future());
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
