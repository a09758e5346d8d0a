//! The text log format: one [logfmt](https://brandur.org/logfmt) line per event,
//! `ts=… level=… target=… msg="…" key=value …`, that people can read and any logfmt parser can
//! split. Values with spaces, `=`, quotes, backslashes or control characters are quoted and
//! escaped; floats are rounded for reading. The long tail of an event (the fields in
//! [`JSON_ONLY`]) stays out of text lines: JSON lines, the API and the sinks carry it. The line
//! shape is described in docs/logging.md.

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Fields that text lines leave out: ids, sequence numbers and free text that make a line long
/// and that a person reading the log does not need, and the event kind that the message of an
/// event line already says. `--log-format json` keeps them.
pub const JSON_ONLY: &[&str] = &[
    "event",
    "id",
    "sequence",
    "episode_id",
    "since",
    "labels",
    "arn",
    "issue_message",
    "resource_ids",
];

/// The five fields that name a resource (as the `log` sink gives them); a text line shows them
/// as one `profile=…` in the form of [`crate::model::ResourceKey`]'s `Display`, the form every
/// other line uses: `profile=account/region/cluster/name` for a Fargate profile,
/// `profile="kind account/region/cluster/name"` for another kind.
const RESOURCE_PARTS: [&str; 5] = ["kind", "account_id", "region", "cluster", "name"];

/// A resource's parts (in [`RESOURCE_PARTS`] order) as one value.
fn resource(parts: &[&str]) -> String {
    let [kind, account_id, region, cluster, name] = parts else {
        return parts.join("/");
    };
    match crate::model::Kind::from_name(kind) {
        Some(kind) => {
            crate::model::ResourceKey::new(kind, *account_id, *region, *cluster, *name).to_string()
        }
        None => format!("{kind} {account_id}/{region}/{cluster}/{name}"),
    }
}

/// Our own crate's prefix, left out of the `target` value.
const CRATE_PREFIX: &str = "fargate_health_monitor::";

/// The text format as a `tracing-subscriber` event formatter. Colours (of the level only) follow
/// the writer's ANSI setting.
#[derive(Clone, Copy, Debug, Default)]
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let target = fields.log_target.as_deref().unwrap_or(meta.target());
        let ansi = writer.has_ansi_escapes();
        writer.write_str(&line(
            SystemTime::now(),
            *meta.level(),
            target,
            &fields,
            ansi,
        ))
    }
}

/// An event's fields as text, in the order they were given.
#[derive(Debug, Default)]
pub struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
    /// The target of a `log` crate record (bridged by tracing-log), which beats `log`'s own.
    log_target: Option<String>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            "log.target" => self.log_target = Some(value),
            // The rest of the bridge's metadata: module path, file and line.
            name if name.starts_with("log.") => {}
            name => self.pairs.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, rounded(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // Bounded: a source that points back at itself must not hang the log line.
        let parts: Vec<String> = crate::model::error_chain(value)
            .map(ToString::to_string)
            .collect();
        self.push(field, parts.join(": "));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` arrives here too, as a Debug that prints the Display.
        self.push(field, format!("{value:?}"));
    }
}

/// One line, ending in a newline.
pub fn line(at: SystemTime, level: Level, target: &str, fields: &Fields, ansi: bool) -> String {
    let mut out = String::with_capacity(160);
    out.push_str("ts=");
    out.push_str(&humantime::format_rfc3339_millis(at).to_string());
    out.push_str(" level=");
    let name = level_name(level);
    match ansi {
        true => {
            let _ = write!(out, "\x1b[{}m{name}\x1b[0m", level_colour(level));
        }
        false => out.push_str(name),
    }
    push_pair(
        &mut out,
        "target",
        target.strip_prefix(CRATE_PREFIX).unwrap_or(target),
    );
    push_pair(&mut out, "msg", &fields.message);
    let value_of = |name: &str| {
        fields
            .pairs
            .iter()
            .find_map(|(key, value)| (*key == name).then_some(value.as_str()))
    };
    // Unless the event has a `profile` of its own: a key appears once per line.
    let profile = RESOURCE_PARTS
        .iter()
        .map(|name| value_of(name))
        .collect::<Option<Vec<&str>>>()
        .filter(|_| value_of("profile").is_none())
        .map(|parts| resource(&parts));
    let mut shown = false;
    for (key, value) in &fields.pairs {
        if JSON_ONLY.contains(key) {
            continue;
        }
        match &profile {
            Some(profile) if RESOURCE_PARTS.contains(key) => {
                if !shown {
                    push_pair(&mut out, "profile", profile);
                    shown = true;
                }
            }
            _ => push_pair(&mut out, key, value),
        }
    }
    out.push('\n');
    out
}

/// ` key=value`, the value quoted and escaped when it must be.
fn push_pair(out: &mut String, key: &str, value: &str) {
    out.push(' ');
    // Our keys are Rust identifiers; a dependency's could hold anything.
    out.extend(key.chars().map(|c| match c {
        c if c <= ' ' || c == '=' || c == '"' || c.is_control() => '_',
        c => c,
    }));
    out.push('=');
    push_value(out, value);
}

/// A logfmt value: bare when it can be, else in double quotes with `\"`, `\\`, `\n`, `\r`,
/// `\t` and `\uXXXX` for any other control character (and the Unicode line separators).
pub fn push_value(out: &mut String, value: &str) {
    let bare = !value.is_empty()
        && !value
            .chars()
            .any(|c| c == '=' || c == '"' || c == '\\' || c.is_whitespace() || c.is_control());
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float for reading: at most three decimals (`3.361`), three significant digits below 0.1
/// (`0.0123`), no trailing zeros (`14`).
pub fn rounded(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs();
    let decimals = match magnitude {
        0.0 => 0,
        m => (2 - m.log10().floor() as i32).clamp(3, 17) as usize,
    };
    let text = format!("{value:.decimals$}");
    let text = match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.'),
        false => &text,
    };
    match text {
        "-0" => "0".to_owned(),
        text => text.to_owned(),
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The SGR colour of a level: red, yellow, green, blue, purple.
fn level_colour(level: Level) -> u8 {
    match level {
        Level::ERROR => 31,
        Level::WARN => 33,
        Level::INFO => 32,
        Level::DEBUG => 34,
        Level::TRACE => 35,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn value(text: &str) -> String {
        let mut out = String::new();
        push_value(&mut out, text);
        out
    }

    #[test]
    fn values_are_bare_only_when_nothing_needs_quoting() {
        assert_eq!(value("us-east-1"), "us-east-1");
        assert_eq!(
            value("111122223333/us-east-1/prod/web"),
            "111122223333/us-east-1/prod/web"
        );
        assert_eq!(value("日本語"), "日本語");
        assert_eq!(value(""), "\"\"");
        assert_eq!(value("two words"), "\"two words\"");
        assert_eq!(value("env=prod"), "\"env=prod\"");
        assert_eq!(value("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(value("C:\\dir"), "\"C:\\\\dir\"");
        assert_eq!(value("a\nb\r\tc"), "\"a\\nb\\r\\tc\"");
        assert_eq!(value("\u{1b}[31mred"), "\"\\u001b[31mred\"");
        assert_eq!(value("bell\u{7}"), "\"bell\\u0007\"");
        assert_eq!(value("del\u{7f} c1\u{85}"), "\"del\\u007f c1\\u0085\"");
        assert_eq!(value("line\u{2028}sep"), "\"line\\u2028sep\"");
        assert_eq!(value("no\u{a0}break"), "\"no\u{a0}break\"");
    }

    #[test]
    fn floats_are_rounded_for_reading() {
        assert_eq!(rounded(3.361399999999999), "3.361");
        assert_eq!(rounded(4.495646230833332), "4.496");
        assert_eq!(rounded(0.7555832620161578), "0.756");
        assert_eq!(rounded(14.0), "14");
        assert_eq!(rounded(0.0), "0");
        assert_eq!(rounded(-0.0001), "-0.0001");
        assert_eq!(rounded(0.012345), "0.0123");
        assert_eq!(rounded(0.000123456), "0.000123");
        assert_eq!(rounded(1e-300), "0");
        assert_eq!(rounded(123456.7891), "123456.789");
        assert_eq!(rounded(2.5e20), "250000000000000000000");
        assert_eq!(rounded(-2.0004), "-2");
        assert_eq!(rounded(f64::NAN), "NaN");
        assert_eq!(rounded(f64::INFINITY), "inf");
    }

    fn fields_of(message: &str, pairs: &[(&'static str, &str)]) -> Fields {
        Fields {
            message: message.to_owned(),
            pairs: pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            log_target: None,
        }
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_186_290_123)
    }

    #[test]
    fn a_line_is_ts_level_target_msg_then_the_fields() {
        let fields = fields_of("issue opened", &[("sink", "log"), ("code", "AccessDenied")]);
        assert_eq!(
            line(
                at(),
                Level::INFO,
                "fargate_health_monitor::sinks::log",
                &fields,
                false
            ),
            "ts=2026-12-02T04:38:10.123Z level=info target=sinks::log msg=\"issue opened\" sink=log code=AccessDenied\n"
        );
        let empty = Fields::default();
        assert_eq!(
            line(at(), Level::WARN, "aws_config::sts", &empty, true),
            "ts=2026-12-02T04:38:10.123Z level=\x1b[33mwarn\x1b[0m target=aws_config::sts msg=\"\"\n"
        );
    }

    #[test]
    fn the_long_tail_is_left_out_and_a_resource_is_one_field() {
        let fields = fields_of(
            "issue opened",
            &[
                ("sink", "log"),
                ("id", "df6b093e20d9b3a1d3cb80e56fef9acb"),
                ("kind", "fargate_profile"),
                ("account_id", "111122223333"),
                ("region", "us-east-1"),
                ("cluster", "prod"),
                ("name", "web"),
                ("labels", "env=demo"),
                ("code", "AccessDenied"),
                ("issue_message", "The pod execution role cannot be assumed"),
            ],
        );
        let text = line(at(), Level::INFO, "x", &fields, false);
        assert!(
            text.ends_with(
                " msg=\"issue opened\" sink=log profile=111122223333/us-east-1/prod/web code=AccessDenied\n"
            ),
            "{text}"
        );
        // Another kind's resource is written as its key is everywhere: the kind first.
        let fields = fields_of(
            "issue opened",
            &[
                ("kind", "nodegroup"),
                ("account_id", "1"),
                ("region", "r"),
                ("cluster", "c"),
                ("name", "ng"),
                ("code", "X"),
            ],
        );
        let text = line(at(), Level::INFO, "x", &fields, false);
        assert!(
            text.ends_with(" msg=\"issue opened\" profile=\"nodegroup 1/r/c/ng\" code=X\n"),
            "{text}"
        );
        // Only all five parts make a resource.
        let fields = fields_of(
            "cluster is gone",
            &[
                ("account_id", "1"),
                ("region", "r"),
                ("cluster", "c"),
                ("name", "n"),
            ],
        );
        let text = line(at(), Level::INFO, "x", &fields, false);
        assert!(
            text.ends_with(" account_id=1 region=r cluster=c name=n\n"),
            "{text}"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot post")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn events_of_every_field_type_come_out_as_logfmt() {
        let captured = crate::logging::Captured::start();
        {
            let error = Outer(std::io::Error::other("connection refused"));
            tracing::warn!(
                rate = 3.361399999999999,
                count = 3u64,
                delta = -2i64,
                ok = true,
                name = "a \"b\" = c",
                shown = %"x y",
                debug = ?Some("v"),
                error = &error as &(dyn std::error::Error + 'static),
                "throttled: {} left",
                2
            );
        }
        let lines = captured.lines_with("throttled: 2 left");
        let (_, rest) = lines[0].split_once(" level=").unwrap();
        assert_eq!(
            format!("{rest}\n"),
            "warn target=logging::logfmt::tests msg=\"throttled: 2 left\" \
             rate=3.361 count=3 delta=-2 ok=true name=\"a \\\"b\\\" = c\" shown=\"x y\" \
             debug=\"Some(\\\"v\\\")\" error=\"cannot post: connection refused\"\n"
        );
    }

    /// An error that is its own source: the chain never ends on its own.
    #[derive(Debug)]
    struct Loop;

    impl fmt::Display for Loop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("again")
        }
    }

    impl std::error::Error for Loop {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self)
        }
    }

    #[test]
    fn an_error_whose_sources_never_end_is_logged_in_bounded_space() {
        let captured = crate::logging::Captured::start();
        tracing::warn!(
            error = &Loop as &(dyn std::error::Error + 'static),
            "looping error"
        );
        let lines = captured.lines_with("looping error");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].matches("again").count(), crate::model::MAX_CHAIN);
    }
}
