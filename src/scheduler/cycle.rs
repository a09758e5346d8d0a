//! Pure: one cycle of the schedule (its order, stalest first, and the spacing of its starts),
//! which profiles are overdue, and why, as the overrun WARN says it. Every time is an input:
//! nothing here reads the clock, logs or touches the state.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::Settings;
use crate::limits::later;
use crate::model::ResourceKey;

/// How many lanes the overrun WARN names at most.
const OVERRUN_LANES: usize = 3;

/// One pass over every profile.
#[derive(Debug)]
pub(super) struct Cycle {
    started: Instant,
    interval: Duration,
    /// Profiles still to start in this cycle, stalest first.
    queue: VecDeque<ResourceKey>,
    next_at: Instant,
    spacing: Duration,
}

impl Cycle {
    /// A cycle with nothing to start, from `now`.
    pub(super) fn empty(now: Instant, interval: Duration) -> Self {
        Self {
            started: now,
            interval,
            queue: VecDeque::new(),
            next_at: now,
            spacing: Duration::ZERO,
        }
    }

    /// A cycle from `now` over `profiles`, each with the start of its last describe (`None`
    /// before the first): stalest first (never described, then by that start, then by key),
    /// started `interval / n` apart. One still in flight from the last cycle was started late
    /// in it, so it comes late in this one.
    pub(super) fn start<'a>(
        now: Instant,
        interval: Duration,
        profiles: impl IntoIterator<Item = (&'a ResourceKey, Option<Instant>)>,
    ) -> Self {
        let mut order: Vec<(&ResourceKey, Option<Instant>)> = profiles.into_iter().collect();
        order.sort_by_key(|(key, last_start)| (*last_start, *key));
        let n = u32::try_from(order.len().max(1)).unwrap_or(u32::MAX);
        Self {
            started: now,
            interval,
            queue: order.into_iter().map(|(key, _)| key.clone()).collect(),
            next_at: now,
            spacing: interval / n,
        }
    }

    /// When the cycle ends: one interval after it started.
    pub(super) fn end(&self) -> Instant {
        later(self.started, self.interval)
    }

    /// When something is due next: the next start, or the end of the cycle.
    pub(super) fn wake(&self) -> Instant {
        match self.queue.front() {
            Some(_) => self.next_at.min(self.end()),
            None => self.end(),
        }
    }

    /// The next profile to start if it is due by `now`; the one after it is due one spacing
    /// later.
    pub(super) fn next_due(&mut self, now: Instant) -> Option<ResourceKey> {
        if self.next_at > now {
            return None;
        }
        let key = self.queue.pop_front()?;
        self.next_at = later(self.next_at, self.spacing);
        Some(key)
    }

    /// How many profiles were never started in this cycle, among those still `known`.
    pub(super) fn queued(&self, known: impl Fn(&ResourceKey) -> bool) -> usize {
        self.queue.iter().filter(|key| known(key)).count()
    }
}

/// The profiles overdue at `now`, in key order, from when each last answered (or was
/// discovered, before its first answer): no answer for more than two intervals, one past when
/// it was due.
pub(super) fn overdue<'a>(
    now: Instant,
    interval: Duration,
    answered: impl IntoIterator<Item = (&'a ResourceKey, Instant)>,
) -> Vec<ResourceKey> {
    let limit = interval.saturating_mul(2);
    let mut overdue: Vec<ResourceKey> = answered
        .into_iter()
        .filter(|(_, at)| now.saturating_duration_since(*at) > limit)
        .map(|(key, _)| key.clone())
        .collect();
    overdue.sort();
    overdue
}

/// What a lane's rate limiter does now.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lane {
    /// Requests per second in force; 0 for no limit.
    pub rate: f64,
    /// Whether its last calls were throttled.
    pub throttled: bool,
}

/// Why the `overdue` profiles (among `profiles`) are overdue, per account and region: the
/// lanes with the most overdue first, at most [`OVERRUN_LANES`] of them and a count of the
/// rest. `lane` tells what a lane's limiter does; it is asked only for lanes with profiles
/// overdue.
pub(super) fn why_overdue<'a>(
    profiles: impl IntoIterator<Item = &'a ResourceKey>,
    overdue: &[ResourceKey],
    settings: &Settings,
    lane: impl Fn(&str, &str) -> Lane,
) -> String {
    let mut lanes: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    for key in profiles {
        lanes.entry((&key.account_id, &key.region)).or_default().0 += 1;
    }
    for key in overdue {
        lanes.entry((&key.account_id, &key.region)).or_default().1 += 1;
    }
    let mut reasons: Vec<(usize, String)> = lanes
        .into_iter()
        .filter(|(_, (_, overdue))| *overdue > 0)
        .map(|((account, region), (profiles, overdue))| {
            let Lane { rate, throttled } = lane(account, region);
            let why = lane_reason(rate, throttled, profiles, settings);
            (overdue, format!("{account}/{region}: {overdue} {why}"))
        })
        .collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
    let lanes = reasons.len();
    let mut why: Vec<String> = reasons
        .into_iter()
        .take(OVERRUN_LANES)
        .map(|(_, r)| r)
        .collect();
    if lanes > OVERRUN_LANES {
        why.push(format!(
            "and {} more accounts and regions",
            lanes - OVERRUN_LANES
        ));
    }
    why.join("; ")
}

/// Why a lane's profiles are overdue: throttled, its rate too low for its profiles, or else
/// slow or failing calls or too few calls in flight.
pub(super) fn lane_reason(
    rate: f64,
    throttled: bool,
    profiles: usize,
    settings: &Settings,
) -> String {
    let per_interval = rate * settings.interval.as_secs_f64();
    let interval = humantime::format_duration(settings.interval);
    let rate = rounded(rate);
    if throttled {
        format!("throttled by AWS, backing off at {rate} requests/s")
    } else if rate_limited(profiles, per_interval) {
        format!(
            "held back by the rate: {profiles} resources but {rate} requests/s x {interval} allows {}; raise max_requests_per_second or interval, or split the targets",
            rounded(per_interval)
        )
    } else {
        format!(
            "calls are slow or failing, or concurrency {} is too low",
            settings.concurrency
        )
    }
}

/// Whether a lane with this rate (0 for none) cannot describe its profiles every interval.
fn rate_limited(profiles: usize, per_interval: f64) -> bool {
    per_interval > 0.0 && profiles as f64 > per_interval
}

/// A rate for people: two significant digits, and no finer than 0.1 from 0.1 up; "no limit"
/// for 0.
pub(super) fn rounded(value: f64) -> String {
    if value.is_nan() || value <= 0.0 {
        return "no limit".to_owned();
    }
    if value >= 10.0 {
        let step = 10f64.powi(value.log10().floor() as i32 - 1);
        return format!("{:.0}", (value / step).round() * step);
    }
    if value >= 0.1 {
        return format!("{value:.1}");
    }
    let decimals = (1 - value.log10().floor() as i32).clamp(1, 9) as usize;
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::limits::RetryPolicy;
    use crate::model::Shard;

    const SECOND: Duration = Duration::from_secs(1);

    fn key(account: &str, name: &str) -> ResourceKey {
        ResourceKey::fargate_profile(account, "us-east-1", "prod", name)
    }

    fn settings(interval: u64, concurrency: usize) -> Settings {
        Settings {
            interval: Duration::from_secs(interval),
            discovery_interval: Duration::from_secs(600),
            concurrency,
            max_requests_per_second: 10.0,
            policy: RetryPolicy::DAEMON,
            shard: Shard::ALL,
        }
    }

    #[test]
    fn a_cycle_starts_the_stalest_first_spaced_evenly_over_the_interval() {
        let t0 = Instant::now();
        let (a, b, c, d) = (key("1", "a"), key("1", "b"), key("1", "c"), key("1", "d"));
        let profiles = [
            (&a, Some(t0 + 3 * SECOND)),
            (&b, None),
            (&c, Some(t0 + SECOND)),
            (&d, None),
        ];
        let mut cycle = Cycle::start(t0, 8 * SECOND, profiles);
        assert_eq!(cycle.end(), t0 + 8 * SECOND);
        assert_eq!(cycle.wake(), t0);
        assert_eq!(cycle.next_due(t0), Some(b));
        assert_eq!(
            cycle.next_due(t0),
            None,
            "the next is due one spacing later"
        );
        assert_eq!(cycle.wake(), t0 + 2 * SECOND);
        assert_eq!(cycle.queued(|_| true), 3);
        assert_eq!(
            cycle.queued(|k| *k != a),
            2,
            "only profiles still known count"
        );
        assert_eq!(cycle.next_due(t0 + 5 * SECOND), Some(d));
        assert_eq!(cycle.next_due(t0 + 5 * SECOND), Some(c));
        assert_eq!(cycle.next_due(t0 + 5 * SECOND), None);
        assert_eq!(cycle.next_due(t0 + 6 * SECOND), Some(a));
        assert_eq!(cycle.next_due(t0 + 7 * SECOND), None);
        assert_eq!(cycle.wake(), t0 + 8 * SECOND, "nothing left: the end");
    }

    #[test]
    fn an_empty_cycle_wakes_at_its_end() {
        let t0 = Instant::now();
        let mut cycle = Cycle::empty(t0, 10 * SECOND);
        assert_eq!(cycle.wake(), t0 + 10 * SECOND);
        assert_eq!(cycle.next_due(t0 + 20 * SECOND), None);
        let cycle = Cycle::start(t0, 10 * SECOND, []);
        assert_eq!(
            (cycle.wake(), cycle.queued(|_| true)),
            (t0 + 10 * SECOND, 0)
        );
    }

    #[test]
    fn a_profile_is_overdue_after_two_intervals_without_an_answer() {
        let t0 = Instant::now();
        let (a, b, c) = (key("1", "a"), key("1", "b"), key("1", "c"));
        let now = t0 + 30 * SECOND;
        let answered = [(&c, t0), (&b, t0 + 10 * SECOND), (&a, t0 + 9 * SECOND)];
        assert_eq!(overdue(now, 10 * SECOND, answered), [a.clone(), c.clone()]);
        assert_eq!(overdue(t0, 10 * SECOND, answered), []);
    }

    #[test]
    fn the_overrun_report_names_the_lanes_with_the_most_overdue_first() {
        let settings = settings(10, 4);
        let mut profiles = Vec::new();
        let mut overdue = Vec::new();
        // Account n has 10 profiles, n of them overdue; account 9 has none overdue.
        for account in 1..=9 {
            for i in 0..10 {
                let key = key(&account.to_string(), &format!("p{i}"));
                if account < 9 && i < account {
                    overdue.push(key.clone());
                }
                profiles.push(key);
            }
        }
        let asked = RefCell::new(Vec::new());
        let lane = |account: &str, _: &str| {
            asked.borrow_mut().push(account.to_owned());
            Lane {
                rate: if account == "8" { 0.5 } else { 10.0 },
                throttled: account == "7",
            }
        };
        let why = why_overdue(&profiles, &overdue, &settings, lane);
        assert_eq!(
            why,
            "8/us-east-1: 8 held back by the rate: 10 resources but 0.5 requests/s x 10s allows 5.0; raise max_requests_per_second or interval, or split the targets; \
             7/us-east-1: 7 throttled by AWS, backing off at 10 requests/s; \
             6/us-east-1: 6 calls are slow or failing, or concurrency 4 is too low; \
             and 5 more accounts and regions"
        );
        assert!(!asked.borrow().contains(&"9".to_owned()), "{asked:?}");

        let one = why_overdue(&profiles, &overdue[..1], &settings, lane);
        assert_eq!(
            one,
            "1/us-east-1: 1 calls are slow or failing, or concurrency 4 is too low"
        );
    }
}
