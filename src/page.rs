//! The status page at `/`: one server-rendered HTML page from a snapshot, no script, no
//! external asset, refreshing itself every [`REFRESH_SECONDS`]. Every value that came from AWS
//! or the config goes through [`escape`]. Pure: the time comes in as an argument.

use std::fmt::Write as _;

use crate::model::Timestamp;
use crate::outbox::Outcome;
use crate::state::{Entry, Snapshot};
use crate::status::{Health, Summary, short_duration};

/// How often the page reloads itself (a `<meta http-equiv="refresh">`, so it works with
/// JavaScript off).
pub const REFRESH_SECONDS: u32 = 10;

/// At most this many rows per table; the API has the rest.
pub const MAX_ROWS: usize = 100;

/// How many of the stalest profiles the page lists.
const STALEST: usize = 10;

/// At most this many characters of a name (account, region, cluster, profile, label, code).
const NAME_CHARS: usize = 128;

/// At most this many characters of an issue message.
const MESSAGE_CHARS: usize = 500;

/// At most this many issue codes in one cell of the profiles table.
const CODES_SHOWN: usize = 5;

/// Text safe inside an HTML element or a quoted attribute, whole.
pub fn escape(text: &str) -> String {
    shown(text, usize::MAX)
}

/// At most `max_chars` characters of `text` (a cut marked `…`), safe inside an HTML element or
/// a quoted attribute, and honest to the eye: control characters and the invisible ones that
/// reorder or hide text (bidirectional controls, zero-width characters, line separators) are
/// shown as `\u{…}` escapes.
pub fn shown(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    for (n, c) in text.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}' => out.extend(c.escape_unicode()),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// `/` as of `now`.
pub fn render(snapshot: &Snapshot, ready: bool, now: Timestamp) -> String {
    let rows: Vec<(&Entry, Health)> = snapshot
        .resources
        .iter()
        .map(|entry| (&**entry, Health::of(entry, now, snapshot.stale_after)))
        .collect();
    let mut summary = Summary::default();
    for (_, health) in &rows {
        summary.add(health);
    }
    let mut html = String::with_capacity(16 * 1024);
    head(&mut html, &summary);
    readiness(&mut html, ready, &summary, snapshot, now);
    counts(&mut html, &summary);
    unhealthy(&mut html, &rows, now);
    failed(&mut html, &rows);
    not_described(&mut html, &rows, now);
    stalest(&mut html, &rows, now);
    lanes(&mut html, snapshot);
    sinks(&mut html, snapshot, now);
    profiles(&mut html, &rows, now);
    html.push_str(
        "<footer><p><a href=\"metrics\">/metrics</a> · \
         <a href=\"api/v1/resources?pretty\">/api/v1/resources</a> · \
         <a href=\"api/v1/resources?unhealthy=true&amp;pretty\">unhealthy as JSON</a> · \
         <a href=\"readyz\">/readyz</a> · <a href=\"healthz\">/healthz</a></p></footer>\n\
         </body></html>\n",
    );
    html
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin:1.4em 0 .4em}\
table{border-collapse:collapse}th,td{text-align:left;padding:.2em .6em;border-bottom:1px solid #ddd;vertical-align:top;white-space:nowrap}\
th{background:#f4f4f4}.bad{color:#b00020;font-weight:600}.ok{color:#1b7f3b;font-weight:600}\
.warn{color:#a15c00}dl{display:flex;flex-wrap:wrap;gap:1.5em;margin:.5em 0}dt{color:#666}dd{margin:0;font-size:1.6em}\
code{font-size:.95em}td{max-width:20em;overflow:hidden;text-overflow:ellipsis}\
td.msg{max-width:40em;white-space:normal;overflow-wrap:anywhere}";

fn head(html: &mut String, summary: &Summary) {
    let _ = writeln!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>{} unhealthy · fargate-health-monitor</title><style>{STYLE}</style></head>\n\
         <body><header><h1>fargate-health-monitor <small>{}</small></h1></header>",
        summary.unhealthy,
        env!("CARGO_PKG_VERSION"),
    );
}

fn readiness(
    html: &mut String,
    ready: bool,
    summary: &Summary,
    snapshot: &Snapshot,
    now: Timestamp,
) {
    let described = summary.monitored - summary.not_described;
    let problems = snapshot.target_problems.len();
    if !ready {
        let _ = writeln!(
            html,
            "<p id=\"readiness\" class=\"bad\">Not ready: discovery or the first describe of every resource is not done ({described} of {} resources described so far).</p>",
            summary.monitored
        );
    } else if problems > 0 {
        let _ = writeln!(
            html,
            "<p id=\"readiness\" class=\"bad\">Ready, but discovery reports {problems} problem{}: what is listed below may not be everything you asked for (see Target problems).</p>",
            if problems == 1 { "" } else { "s" }
        );
    } else {
        let _ = writeln!(
            html,
            "<p id=\"readiness\" class=\"ok\">Ready: every target was discovered and every resource attempted.</p>"
        );
    }
    if problems > 0 {
        html.push_str("<section id=\"targets\"><h2>Target problems</h2><ul>");
        for problem in snapshot.target_problems.iter().take(MAX_ROWS) {
            let _ = write!(
                html,
                "<li class=\"bad\">{}</li>",
                shown(problem, MESSAGE_CHARS)
            );
        }
        if problems > MAX_ROWS {
            let _ = write!(
                html,
                "<li>and {} more: see the log</li>",
                problems - MAX_ROWS
            );
        }
        html.push_str("</ul></section>\n");
    }
    let _ = writeln!(
        html,
        "<p>As of {} (refreshes every {REFRESH_SECONDS} s). A resource is stale when it was not attempted for {}. {} poll cycles overran their interval.</p>",
        now.to_rfc3339(),
        short_duration(snapshot.stale_after),
        snapshot.overruns,
    );
}

fn counts(html: &mut String, summary: &Summary) {
    html.push_str("<section id=\"counts\"><dl>");
    for (name, id, value, bad) in [
        ("monitored", "monitored", summary.monitored, false),
        ("unhealthy", "unhealthy-count", summary.unhealthy, true),
        ("open issues", "open-issues", summary.open_issues, true),
        ("failed status", "failed-count", summary.failed, true),
        (
            "not described",
            "not-described-count",
            summary.not_described,
            true,
        ),
        ("stale", "stale-count", summary.stale, true),
    ] {
        let class = if bad && value > 0 {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = write!(
            html,
            "<div><dt>{name}</dt><dd id=\"{id}\"{class}>{value}</dd></div>"
        );
    }
    html.push_str("</dl></section>\n");
}

/// The resource's name cells: kind, account, region, cluster, name, labels.
fn name_cells(html: &mut String, entry: &Entry) {
    let key = &entry.state.key;
    let labels: Vec<String> = entry
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = write!(
        html,
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"name\">{}</td><td>{}</td>",
        key.kind.spec().noun,
        shown(&key.account_id, NAME_CHARS),
        shown(&key.region, NAME_CHARS),
        shown(&key.cluster, NAME_CHARS),
        shown(&key.name, NAME_CHARS),
        shown(&labels.join(", "), NAME_CHARS * 2),
    );
}

const NAME_HEADINGS: &str =
    "<th>kind</th><th>account</th><th>region</th><th>cluster</th><th>name</th><th>labels</th>";

fn table_start(html: &mut String, id: &str, title: &str, headings: &str) {
    let _ = writeln!(
        html,
        "<section id=\"{id}\"><h2>{title}</h2><table><thead><tr>{headings}</tr></thead><tbody>"
    );
}

fn table_end(html: &mut String, shown: usize, total: usize, more: &str) {
    html.push_str("</tbody></table>");
    if total > shown {
        let _ = write!(
            html,
            "<p>and {} more: <a href=\"{more}\">as JSON</a></p>",
            total - shown
        );
    }
    html.push_str("</section>\n");
}

fn none(html: &mut String, id: &str, title: &str, what: &str) {
    let _ = writeln!(
        html,
        "<section id=\"{id}\"><h2>{title}</h2><p>{what}</p></section>"
    );
}

fn unhealthy(html: &mut String, rows: &[(&Entry, Health)], now: Timestamp) {
    // One row per open issue, the longest open first.
    let mut issues: Vec<(&Entry, &crate::diff::Episode)> = rows
        .iter()
        .filter_map(|(entry, _)| entry.state.known.as_ref().map(|k| (*entry, k)))
        .flat_map(|(entry, known)| known.episodes.values().map(move |e| (entry, e)))
        .collect();
    if issues.is_empty() {
        return none(
            html,
            "unhealthy",
            "Open issues",
            "None: no resource has an open health issue.",
        );
    }
    issues.sort_by_key(|(entry, episode)| (episode.since, &entry.state.key));
    table_start(
        html,
        "unhealthy",
        "Open issues",
        &format!("{NAME_HEADINGS}<th>code</th><th>message</th><th>since</th><th>open for</th>"),
    );
    for (entry, episode) in issues.iter().take(MAX_ROWS) {
        html.push_str("<tr>");
        name_cells(html, entry);
        let _ = writeln!(
            html,
            "<td class=\"bad\"><code>{}</code></td><td class=\"msg\">{}</td><td>{}</td><td>{}</td></tr>",
            shown(episode.issue.code.as_str(), NAME_CHARS),
            shown(&episode.issue.message, MESSAGE_CHARS),
            episode.since.to_rfc3339(),
            short_duration(now.since(episode.since)),
        );
    }
    table_end(
        html,
        MAX_ROWS.min(issues.len()),
        issues.len(),
        "api/v1/resources?unhealthy=true&amp;pretty",
    );
}

fn failed(html: &mut String, rows: &[(&Entry, Health)]) {
    let failed: Vec<&Entry> = rows
        .iter()
        .filter(|(_, h)| h.failed)
        .map(|(e, _)| *e)
        .collect();
    if failed.is_empty() {
        return none(html, "failed", "Failed statuses", "None.");
    }
    table_start(
        html,
        "failed",
        "Failed statuses",
        &format!("{NAME_HEADINGS}<th>status</th>"),
    );
    for entry in failed.iter().take(MAX_ROWS) {
        html.push_str("<tr>");
        name_cells(html, entry);
        let status = entry.state.known.as_ref().map_or("", |k| k.status.as_str());
        let _ = writeln!(
            html,
            "<td class=\"bad\">{}</td></tr>",
            shown(status, NAME_CHARS)
        );
    }
    table_end(
        html,
        MAX_ROWS.min(failed.len()),
        failed.len(),
        "api/v1/resources?unhealthy=true&amp;pretty",
    );
}

fn not_described(html: &mut String, rows: &[(&Entry, Health)], now: Timestamp) {
    let down: Vec<&Entry> = rows
        .iter()
        .filter(|(_, h)| h.not_described)
        .map(|(e, _)| *e)
        .collect();
    if down.is_empty() {
        return none(
            html,
            "not-described",
            "Not described",
            "None: the last describe of every resource succeeded.",
        );
    }
    table_start(
        html,
        "not-described",
        "Not described (the last describe failed, or none ran yet)",
        &format!("{NAME_HEADINGS}<th>error</th><th>last success</th>"),
    );
    for entry in down.iter().take(MAX_ROWS) {
        html.push_str("<tr>");
        name_cells(html, entry);
        let error = entry
            .state
            .last_error
            .map_or("not attempted yet", |e| e.as_str());
        let last = entry.state.last_success.map_or_else(
            || "never".to_owned(),
            |t| format!("{} ago", short_duration(now.since(t))),
        );
        let _ = writeln!(
            html,
            "<td class=\"warn\">{}</td><td>{last}</td></tr>",
            escape(error)
        );
    }
    table_end(
        html,
        MAX_ROWS.min(down.len()),
        down.len(),
        "api/v1/resources?up=false&amp;pretty",
    );
}

fn stalest(html: &mut String, rows: &[(&Entry, Health)], now: Timestamp) {
    if rows.is_empty() {
        return none(html, "stalest", "Stalest", "No resource is monitored yet.");
    }
    let mut oldest: Vec<&(&Entry, Health)> = rows.iter().collect();
    oldest.sort_by_key(|(entry, _)| (entry.freshness(), &entry.state.key));
    table_start(
        html,
        "stalest",
        "Stalest (least recently attempted)",
        &format!("{NAME_HEADINGS}<th>last attempt</th><th>stale</th>"),
    );
    for (entry, health) in oldest.iter().take(STALEST) {
        html.push_str("<tr>");
        name_cells(html, entry);
        let attempt = entry.state.last_attempt.map_or_else(
            || "never".to_owned(),
            |t| format!("{} ago", short_duration(now.since(t))),
        );
        let stale = if health.stale {
            "<td class=\"bad\">stale</td>"
        } else {
            "<td>no</td>"
        };
        let _ = writeln!(html, "<td>{attempt}</td>{stale}</tr>");
    }
    table_end(
        html,
        STALEST.min(oldest.len()),
        STALEST.min(oldest.len()),
        "",
    );
}

fn lanes(html: &mut String, snapshot: &Snapshot) {
    if snapshot.lanes.is_empty() {
        return none(html, "lanes", "AWS lanes", "No call has gone out yet.");
    }
    table_start(
        html,
        "lanes",
        "AWS lanes (one rate limit per account and region)",
        "<th>account</th><th>region</th><th>rate now</th><th>configured</th><th>state</th><th>throttled (last 1–2 min)</th>",
    );
    for lane in snapshot.lanes.iter().take(MAX_ROWS) {
        let rate = |r: f64| {
            if r > 0.0 {
                format!("{r:.1}/s")
            } else {
                "no limit".to_owned()
            }
        };
        let state = if lane.backing_off {
            format!(
                "<td class=\"bad\">throttled by AWS: backing off ({} throttled in a row)</td>",
                lane.throttled_streak
            )
        } else if lane.throttled_recently {
            "<td class=\"bad\">throttled by AWS in the last 5 s</td>".to_owned()
        } else if lane.rate + 1e-9 < lane.max_rate {
            "<td class=\"warn\">climbing back after throttling</td>".to_owned()
        } else {
            "<td>normal</td>".to_owned()
        };
        let share = if lane.answers == 0 {
            "no answers".to_owned()
        } else {
            format!(
                "{:.0}% ({} of {})",
                lane.throttled as f64 * 100.0 / lane.answers as f64,
                lane.throttled,
                lane.answers
            )
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{state}<td>{share}</td></tr>",
            shown(&lane.account_id, NAME_CHARS),
            shown(&lane.region, NAME_CHARS),
            rate(lane.rate),
            rate(lane.max_rate),
        );
    }
    table_end(
        html,
        MAX_ROWS.min(snapshot.lanes.len()),
        snapshot.lanes.len(),
        "metrics",
    );
}

fn sinks(html: &mut String, snapshot: &Snapshot, now: Timestamp) {
    if snapshot.sinks.is_empty() {
        return none(
            html,
            "sinks",
            "Sinks",
            "No sink with a queue is configured.",
        );
    }
    let mut headings = String::from("<th>sink</th><th>queued</th>");
    for outcome in Outcome::ALL {
        let _ = write!(headings, "<th>{}</th>", outcome.as_str());
    }
    headings.push_str("<th>last error</th>");
    table_start(html, "sinks", "Sinks", &headings);
    for (name, stats) in &snapshot.sinks {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td>",
            shown(name, NAME_CHARS),
            stats.queued
        );
        for outcome in Outcome::ALL {
            let count = stats.outcomes.get(&outcome).copied().unwrap_or(0);
            let bad = count > 0 && matches!(outcome, Outcome::Rejected | Outcome::Dropped);
            let class = if bad { " class=\"bad\"" } else { "" };
            let _ = write!(html, "<td{class}>{count}</td>");
        }
        match &stats.last_error {
            Some(error) => {
                let _ = writeln!(
                    html,
                    "<td class=\"warn msg\">{} ago: {}</td></tr>",
                    short_duration(now.since(error.at)),
                    escape(&error.error)
                );
            }
            None => html.push_str("<td>none</td></tr>\n"),
        }
    }
    table_end(html, 0, 0, "");
}

fn profiles(html: &mut String, rows: &[(&Entry, Health)], now: Timestamp) {
    if rows.is_empty() {
        return;
    }
    // The unhealthy first, then those not described, then the rest, each by name.
    let mut ordered: Vec<&(&Entry, Health)> = rows.iter().collect();
    ordered.sort_by_key(|(entry, health)| {
        (
            !health.is_unhealthy(),
            !health.not_described,
            &entry.state.key,
        )
    });
    table_start(
        html,
        "profiles",
        "Resources (unhealthy first)",
        &format!("{NAME_HEADINGS}<th>status</th><th>issues</th><th>described</th>"),
    );
    for (entry, health) in ordered.iter().take(MAX_ROWS) {
        let class = if health.is_unhealthy() {
            " class=\"unhealthy\""
        } else {
            ""
        };
        let _ = write!(html, "<tr{class}>");
        name_cells(html, entry);
        let known = entry.state.known.as_ref();
        let status = known.map_or("", |k| k.status.as_str());
        let codes: Vec<String> = known
            .into_iter()
            .flat_map(|k| k.episodes.keys().map(|c| shown(c.as_str(), NAME_CHARS)))
            .collect();
        let mut codes_cell = codes[..codes.len().min(CODES_SHOWN)].join(", ");
        if codes.len() > CODES_SHOWN {
            let _ = write!(codes_cell, " and {} more", codes.len() - CODES_SHOWN);
        }
        let described = match entry.state.last_attempt {
            Some(at) if entry.state.up => format!("{} ago", short_duration(now.since(at))),
            Some(at) => format!("failed {} ago", short_duration(now.since(at))),
            None => "not yet".to_owned(),
        };
        let status_class = if health.failed { " class=\"bad\"" } else { "" };
        let issues_class = if health.issues > 0 {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = writeln!(
            html,
            "<td{status_class}>{}</td><td{issues_class}>{}</td><td>{described}</td></tr>",
            shown(status, NAME_CHARS),
            codes_cell,
        );
    }
    table_end(
        html,
        MAX_ROWS.min(ordered.len()),
        ordered.len(),
        "api/v1/resources?pretty",
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::diff::Rules;
    use crate::limits::LaneStatus;
    use crate::model::{Incarnation, Input, IssueCode, Observation, RawIssue, ResourceKey, Status};
    use crate::outbox::Subscription;
    use crate::state::{Labels, State};

    const HOSTILE: &str = "<script>alert(\"x\")</script>&'";

    fn observe(state: &State, key: &ResourceKey, status: &str, issues: Vec<RawIssue>, at: i64) {
        state.apply(&Input::Observed(Observation {
            key: key.clone(),
            incarnation: Incarnation {
                arn: format!("arn:aws:eks:us-east-1:1:fargateprofile/{}/1", key.name),
                created_at: Timestamp::from_secs(1),
            },
            status: Status::from_wire(status),
            info: BTreeMap::new(),
            values: Default::default(),
            issues,
            observed_at: Timestamp::from_secs(at),
        }));
    }

    #[test]
    fn every_value_from_aws_or_the_config_is_escaped() {
        let state = State::new(Rules::default(), Vec::new());
        let labels = Arc::new(Labels::from([("team".to_owned(), HOSTILE.to_owned())]));
        let key = ResourceKey::fargate_profile("111122223333", "us-east-1", HOSTILE, HOSTILE);
        state.discovered(&key, labels, Timestamp::from_secs(100));
        let issue = RawIssue {
            code: IssueCode::from_wire(HOSTILE),
            message: HOSTILE.into(),
            resource_ids: vec![HOSTILE.into()],
        };
        observe(&state, &key, HOSTILE, vec![issue], 200);
        state
            .outbox()
            .sink_failed(HOSTILE, Timestamp::from_secs(210), HOSTILE);
        state.set_target_problems(vec![HOSTILE.to_owned()]);
        let html = render(&state.snapshot(), false, Timestamp::from_secs(230));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert(\"x\")"), "{html}");
        let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;";
        // Cluster, profile, label, code, message, target problem: in the tables and elsewhere.
        assert!(html.matches(escaped).count() >= 6, "{html}");
        assert!(html.contains("Not ready"), "{html}");
    }

    #[test]
    fn the_page_lists_the_unhealthy_first_and_counts_what_it_shows() {
        let subscription = Subscription {
            sink: "hook".into(),
            events: crate::model::EventKind::ALL.into_iter().collect(),
            statuses: Default::default(),
            max_queue: 100,
        };
        let state = State::new(Rules::default(), vec![subscription]);
        state.set_stale_after(Duration::from_secs(60));
        let labels = Arc::new(Labels::new());
        let keys: Vec<ResourceKey> = ["a-healthy", "b-broken", "c-failed", "d-unseen"]
            .iter()
            .map(|name| ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", *name))
            .collect();
        for key in &keys {
            state.discovered(key, labels.clone(), Timestamp::from_secs(100));
        }
        observe(&state, &keys[0], "ACTIVE", Vec::new(), 200);
        let issue = RawIssue {
            code: IssueCode::from_wire("AccessDenied"),
            message: "The pod execution role cannot be assumed".into(),
            resource_ids: Vec::new(),
        };
        observe(&state, &keys[1], "ACTIVE", vec![issue], 200);
        observe(&state, &keys[2], "CREATE_FAILED", Vec::new(), 200);
        state.set_lanes(vec![LaneStatus {
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            rate: 3.5,
            max_rate: 10.0,
            backing_off: true,
            throttled_streak: 4,
            throttled_recently: true,
            throttled: 12,
            answers: 48,
        }]);
        state.outbox().sink_failed(
            "hook",
            Timestamp::from_secs(220),
            "HTTP 503 from https://hooks.example.com",
        );
        let html = render(&state.snapshot(), true, Timestamp::from_secs(230));

        assert!(html.contains("<dd id=\"monitored\">4</dd>"), "{html}");
        assert!(
            html.contains("<dd id=\"unhealthy-count\" class=\"bad\">2</dd>"),
            "{html}"
        );
        assert!(
            html.contains("<dd id=\"not-described-count\" class=\"bad\">1</dd>"),
            "{html}"
        );
        assert!(
            html.contains("<dd id=\"stale-count\" class=\"bad\">1</dd>"),
            "{html}"
        );
        assert!(
            html.contains("AccessDenied") && html.contains("30s"),
            "{html}"
        );
        assert!(
            html.contains("backing off (4 throttled in a row)") && html.contains("25% (12 of 48)")
        );
        assert!(
            html.contains("10s ago: HTTP 503 from https://hooks.example.com"),
            "{html}"
        );
        // The profiles table: the unhealthy by name, then the one not described, then the rest.
        let table = &html[html.find("id=\"profiles\"").unwrap()..];
        let order: Vec<usize> = ["b-broken", "c-failed", "d-unseen", "a-healthy"]
            .iter()
            .map(|name| table.find(&format!(">{name}<")).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        // The sections in the order people look for them.
        let sections: Vec<usize> = [
            "readiness",
            "counts",
            "unhealthy",
            "failed",
            "not-described",
            "stalest",
            "lanes",
            "sinks",
            "profiles",
        ]
        .iter()
        .map(|id| html.find(&format!("id=\"{id}\"")).unwrap())
        .collect();
        assert!(sections.windows(2).all(|w| w[0] < w[1]), "{sections:?}");
    }

    #[test]
    fn a_ready_daemon_whose_discovery_failed_says_so_first() {
        let state = State::new(Rules::default(), Vec::new());
        let problem = "target 0 (us-east-1, cluster *): ListClusters failed (access_denied)";
        state.set_target_problems(vec![problem.to_owned()]);
        let html = render(&state.snapshot(), true, Timestamp::from_secs(10));
        assert!(
            html.contains("class=\"bad\">Ready, but discovery reports 1 problem:"),
            "{html}"
        );
        assert!(!html.contains("every target was discovered"), "{html}");
        let targets = &html[html.find("id=\"targets\"").unwrap()..];
        assert!(
            targets.contains("ListClusters failed (access_denied)"),
            "{html}"
        );
        state.set_target_problems(Vec::new());
        let html = render(&state.snapshot(), true, Timestamp::from_secs(10));
        assert!(
            html.contains("class=\"ok\">Ready: every target was discovered"),
            "{html}"
        );
        assert!(!html.contains("id=\"targets\""), "{html}");
    }

    #[test]
    fn a_cell_is_bounded_however_many_codes_or_characters_a_profile_brings() {
        let state = State::new(Rules::default(), Vec::new());
        let key = ResourceKey::fargate_profile("1", "us-east-1", "c", "p".repeat(300));
        state.discovered(&key, Arc::new(Labels::new()), Timestamp::from_secs(1));
        let issues = (0..1000)
            .map(|i| RawIssue {
                code: IssueCode::from_wire(&format!("{i:04}{}", "'".repeat(252))),
                message: "'".repeat(3000),
                resource_ids: Vec::new(),
            })
            .collect();
        observe(&state, &key, "ACTIVE", issues, 2);
        let html = render(&state.snapshot(), true, Timestamp::from_secs(3));
        // 100 issue rows of at most 128 + 500 characters, 6 bytes each escaped, and the rest.
        assert!(html.len() < 600_000, "{} bytes", html.len());
        assert!(
            html.contains("and 995 more"),
            "five codes shown in the profiles table"
        );
        assert!(html.contains("and 900 more"), "100 of the 1,000 issue rows");
    }

    #[test]
    fn escaping_covers_markup_and_quotes_and_replaces_control_characters() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
        assert_eq!(escape("x\u{0}y\u{1b}z\n"), "x\\u{0}y\\u{1b}z\\n");
        // What reorders or hides text shows as what it is.
        assert_eq!(escape("abc\u{202e}gpj.exe"), "abc\\u{202e}gpj.exe");
        assert_eq!(
            escape("pro\u{200b}file\u{feff}"),
            "pro\\u{200b}file\\u{feff}"
        );
        assert_eq!(shown("abcdef", 3), "abc…");
        assert_eq!(shown("<<<<", 2), "&lt;&lt;…");
        assert_eq!(escape("plain text, ünïcode"), "plain text, ünïcode");
    }
}
