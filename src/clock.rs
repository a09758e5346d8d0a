//! The one source of wall-clock time: a [`Clock`] is handed to whatever needs "now", so tests
//! can pin or pause it and nothing else calls `SystemTime::now()` for the domain's times.
//!
//! `model` and `diff` never hold a clock (their inputs carry their time).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use crate::model::Timestamp;

/// Where "now" comes from. Cheap to clone.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    pub fn wall() -> Self {
        Self(Arc::new(|| Timestamp::from_system_time(SystemTime::now())))
    }

    /// A clock that follows tokio's (pausable) time from the wall time at its creation: for tests
    /// on the paused clock.
    pub fn tokio() -> Self {
        let start = Instant::now();
        let wall = Timestamp::from_system_time(SystemTime::now());
        Self(Arc::new(move || {
            let elapsed = i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
            Timestamp::clamped(wall.as_millis().saturating_add(elapsed))
        }))
    }

    /// A clock that always says `at`.
    pub fn fixed(at: Timestamp) -> Self {
        Self(Arc::new(move || at))
    }

    /// A clock that asks `now` each time.
    pub fn from_fn(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The time now.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }

    /// The time now, as a [`SystemTime`] (for HTTP dates and signatures).
    pub fn system_time(&self) -> SystemTime {
        self.now().to_system_time()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::wall()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_says_its_time_and_the_wall_clock_moves_on() {
        let at = Timestamp::from_secs(1_795_428_240);
        assert_eq!(Clock::fixed(at).now(), at);
        assert_eq!(Clock::fixed(at).system_time(), at.to_system_time());
        let wall = Clock::wall();
        assert!(wall.now() > at);
    }

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let clock = Clock::tokio();
        let before = clock.now();
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(
            clock.now().since(before),
            std::time::Duration::from_secs(90)
        );
    }
}
