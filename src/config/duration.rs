//! Durations in the config (`"30s"`, `"5m"`, `"1h 30m"`, as `humantime` reads them), with
//! problems said in words and a valid value shown, instead of humantime's "expected number at
//! 0". A value that may hold a secret ([`is_safe_to_show`]) is not quoted, nor are parts of it.

use std::time::Duration;

use humantime::DurationError;

use super::reader::{is_safe_to_show, shown};

/// What a valid value looks like.
const EXAMPLES: &str = "write a number and a unit, such as \"30s\", \"5m\" or \"1h 30m\"";

/// The units people usually mean.
const UNITS: &str = "use ms, s, m, h or d (or sec, min, hours, days)";

/// Parses `text` (surrounding spaces ignored); the error is a sentence about the value, for
/// "`key`: {error}".
pub(super) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let error = match humantime::parse_duration(text) {
        Ok(duration) => return Ok(duration),
        Err(error) => error,
    };
    let safe = is_safe_to_show(text);
    let value = shown(text);
    Err(match error {
        DurationError::Empty => format!("the value is empty; {EXAMPLES}"),
        _ if text.starts_with('-') => {
            let positive = text.trim_start_matches('-').trim_start();
            match safe && humantime::parse_duration(positive).is_ok() {
                true => {
                    format!("{value} is negative; a duration is 0 or more, such as {positive:?}")
                }
                false => format!("{value} is negative; a duration is 0 or more: {EXAMPLES}"),
            }
        }
        DurationError::UnknownUnit { unit, value: n, .. } if unit.is_empty() => {
            match (safe, text.bytes().all(|b| b.is_ascii_digit())) {
                (true, true) => format!(
                    "{value} has no unit; write \"{n}s\" for seconds or \"{n}m\" for minutes"
                ),
                (true, false) => format!(
                    "{value}: {n} has no unit; write \"{n}s\" for seconds or \"{n}m\" for minutes"
                ),
                (false, _) => format!("{value} has a number without a unit; {EXAMPLES}"),
            }
        }
        DurationError::UnknownUnit { unit, .. } => {
            let fixed = text.to_lowercase();
            if !safe {
                format!("{value} has an unknown unit; {UNITS}")
            } else if humantime::parse_duration(&fixed).is_ok() {
                format!("{value} has the unit {unit:?}: units are lowercase, as in {fixed:?}")
            } else {
                format!("{value} has an unknown unit {unit:?}; {UNITS}")
            }
        }
        DurationError::NumberOverflow => {
            format!("{value} is out of range: too long, or finer than a nanosecond")
        }
        _ if text.contains(',') => format!(
            "{value} has a comma; separate parts with a space, as in \"1h 30m\", and write decimals with a point, as in \"1.5h\""
        ),
        _ => format!("{value} is not a duration; {EXAMPLES}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> String {
        parse(text).expect_err(text)
    }

    #[test]
    fn valid_durations_parse() {
        assert_eq!(parse(" 30s "), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("5 minutes"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn each_mistake_is_said_in_words_with_a_valid_example() {
        let cases = [
            (
                "",
                "the value is empty; write a number and a unit, such as \"30s\", \"5m\" or \"1h 30m\"",
            ),
            ("   ", "the value is empty; write a number and a unit"),
            (
                "60",
                "\"60\" has no unit; write \"60s\" for seconds or \"60m\" for minutes",
            ),
            (
                "1h 30",
                "\"1h 30\": 30 has no unit; write \"30s\" for seconds or \"30m\" for minutes",
            ),
            (
                "-5s",
                "\"-5s\" is negative; a duration is 0 or more, such as \"5s\"",
            ),
            (
                "- 1h",
                "\"- 1h\" is negative; a duration is 0 or more, such as \"1h\"",
            ),
            (
                "-x",
                "\"-x\" is negative; a duration is 0 or more: write a number and a unit",
            ),
            (
                "5S",
                "\"5S\" has the unit \"S\": units are lowercase, as in \"5s\"",
            ),
            (
                "1H 30Min",
                "\"1H 30Min\" has the unit \"H\": units are lowercase, as in \"1h 30min\"",
            ),
            (
                "5 sekunden",
                "\"5 sekunden\" has an unknown unit \"sekunden\"; use ms, s, m, h or d (or sec, min, hours, days)",
            ),
            (
                "5 Sekunden",
                "has an unknown unit \"Sekunden\"; use ms, s, m, h or d",
            ),
            (
                "1h, 30m",
                "\"1h, 30m\" has a comma; separate parts with a space, as in \"1h 30m\"",
            ),
            ("1,5h", "write decimals with a point, as in \"1.5h\""),
            (
                "999999999999y",
                "\"999999999999y\" is out of range: too long, or finer than a nanosecond",
            ),
            (
                "sixty",
                "\"sixty\" is not a duration; write a number and a unit, such as \"30s\", \"5m\" or \"1h 30m\"",
            ),
            (
                "PT5M",
                "\"PT5M\" is not a duration; write a number and a unit",
            ),
            (
                "5m!",
                "\"5m!\" is not a duration; write a number and a unit",
            ),
        ];
        for (text, expected) in cases {
            let said = problem(text);
            assert!(said.contains(expected), "{text:?}: {said}");
            assert!(!said.contains(" at "), "no byte offsets: {said}");
        }
    }

    #[test]
    fn a_value_that_may_be_a_secret_is_not_quoted_nor_any_part_of_it() {
        let secret = "5Xq7ZpL2mN8vR4tY6wK3hJ9";
        for text in [
            secret.to_owned(),
            format!("-{secret}"),
            format!("{secret}0"),
        ] {
            let said = problem(&text);
            assert!(!said.contains("Xq7Z") && !said.contains("J9"), "{said}");
            assert!(said.contains("not shown"), "{said}");
        }
    }
}
