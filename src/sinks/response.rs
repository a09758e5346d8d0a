//! What the sinks take from a receiver's answer, treated as hostile input: the body is read
//! up to [`BODY_CAP`] bytes and for at most [`BODY_TIME`], then dropped (an endless or
//! trickling body costs neither memory nor the worker's time); `Retry-After` is parsed in
//! seconds or as an HTTP-date with saturating arithmetic, garbage ignored. Every sink client
//! reads its answers through here.

use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use hyper::body::Body;

/// The most bytes of a response body a sink reads; the rest is discarded unread (the
/// connection is then closed rather than reused).
pub const BODY_CAP: usize = 64 * 1024;

/// The longest a sink waits for a response body once the status and headers arrived.
pub const BODY_TIME: Duration = Duration::from_secs(1);

/// How much of a body was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Bytes read, at most [`BODY_CAP`] plus the last frame's.
    pub bytes: usize,
    /// The body ended within the cap and the time.
    pub complete: bool,
}

/// Reads and discards `body`: up to [`BODY_CAP`] bytes within [`BODY_TIME`], whichever
/// comes first. A complete small body leaves the connection reusable.
pub async fn drain<B>(body: B) -> Drained
where
    B: Body + Unpin,
{
    drain_within(body, BODY_CAP, BODY_TIME).await
}

async fn drain_within<B>(mut body: B, cap: usize, time: Duration) -> Drained
where
    B: Body + Unpin,
{
    let mut bytes = 0usize;
    let read = async {
        loop {
            match body.frame().await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        bytes = bytes.saturating_add(hyper::body::Buf::remaining(data));
                    }
                    if bytes > cap {
                        return false;
                    }
                }
            }
        }
    };
    let complete = tokio::time::timeout(time, read).await.unwrap_or(false);
    Drained { bytes, complete }
}

/// The delay a `Retry-After` value asks for, as of `now`: whole seconds (saturating, so
/// `18446744073709551615` is simply very long) or an IMF-fixdate HTTP-date (zero when in the
/// past). Anything else is `None`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: too many for u64 still means "a long time".
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = http_date(value)?;
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let secs = at.saturating_sub(now).max(0);
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// Seconds since the Unix epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the
/// form HTTP senders must use; the obsolete forms are not accepted.
fn http_date(value: &str) -> Option<i64> {
    let parts: Vec<&str> = value.split(' ').collect();
    let [weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const WEEKDAYS: [&str; 7] = ["Mon,", "Tue,", "Wed,", "Thu,", "Fri,", "Sat,", "Sun,"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if !WEEKDAYS.contains(weekday) {
        return None;
    }
    let number = |text: &str, len: usize| -> Option<i64> {
        (text.len() == len && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    let day = number(day, 2)?;
    let month = i64::try_from(MONTHS.iter().position(|m| m == month)? + 1).ok()?;
    let year = number(year, 4)?;
    let clock: Vec<&str> = time.split(':').collect();
    let [hour, minute, second] = clock.as_slice() else {
        return None;
    };
    let (hour, minute, second) = (number(hour, 2)?, number(minute, 2)?, number(second, 2)?);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm); the year is
/// at most four digits, so nothing overflows.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Frame;

    use super::*;

    /// A body that sends 8 KiB frames forever, or nothing ever.
    struct Endless {
        frames: bool,
        sent: usize,
    }

    impl Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if !self.frames {
                return Poll::Pending;
            }
            self.sent += 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 8192])))))
        }
    }

    #[tokio::test]
    async fn a_small_body_is_read_to_its_end() {
        let drained = drain(Full::new(Bytes::from_static(b"{\"ok\":true}"))).await;
        assert_eq!(
            drained,
            Drained {
                bytes: 11,
                complete: true
            }
        );
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_cap() {
        let mut body = Endless {
            frames: true,
            sent: 0,
        };
        let drained = drain_within(&mut body, BODY_CAP, BODY_TIME).await;
        assert!(!drained.complete);
        assert!(drained.bytes > BODY_CAP && drained.bytes <= BODY_CAP + 8192);
        assert_eq!(body.sent, BODY_CAP / 8192 + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_comes_is_given_up_after_the_time() {
        let started = tokio::time::Instant::now();
        let drained = drain(Endless {
            frames: false,
            sent: 0,
        })
        .await;
        assert_eq!(
            drained,
            Drained {
                bytes: 0,
                complete: false
            }
        );
        assert_eq!(started.elapsed(), BODY_TIME);
    }

    #[test]
    fn retry_after_saturates_and_ignores_garbage() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            retry_after("99999999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for garbage in [
            "",
            "-1",
            "1.5",
            "soon",
            "+3",
            "Fri, 31 Dec 9999 23:59:59 UTC",
        ] {
            assert_eq!(retry_after(garbage, now), None, "{garbage:?}");
        }
        // 2023-11-14T22:13:20Z is 1,700,000,000.
        assert_eq!(
            retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        let far = retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert_eq!(far.as_secs(), 253_402_300_799 - 1_700_000_000);
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    }
}
