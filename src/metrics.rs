//! Every Prometheus series in one place (DESIGN.md "Metrics").
//!
//! The domain series (`eks_fargate_profile_*`) and the series that count what the state knows
//! (`profiles`, `events_total`, `poll_cycle_overruns_total`, `oldest_observation_age_seconds`)
//! are encoded at scrape time straight from a [`Snapshot`]: a deleted profile's series are
//! gone with it, and nothing is held twice. The `prometheus` crate's registry holds the rest:
//! the AWS calls, `build_info` and `process_*`.
//!
//! The text goes out in chunks of [`CHUNK`] bytes as it is encoded ([`Metrics::render_to`]), so
//! a scrape of 10,000 profiles (23 MB of text) never holds the whole page in memory.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{Encoder as _, Registry, TextEncoder};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

use crate::eks::CallObserver;
use crate::model::{ErrorKind, EventKind, IssueCode, Operation, Status, Timestamp};
use crate::state::{Entry, Outcome, Snapshot, State};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const PREFIX: &str = "fargate_health_monitor_";

/// Upper bounds of the request duration histogram, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The registry of self series and the state the rest is encoded from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    api: Arc<ApiMetrics>,
    state: Arc<State>,
    reload_successful: prometheus::IntGauge,
    reload_success_time: prometheus::Gauge,
    state_write_errors: prometheus::IntCounter,
}

/// Counts and times every AWS call; the [`CallObserver`] of the SDK clients.
#[derive(Debug)]
pub struct ApiMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl CallObserver for ApiMetrics {
    fn observe(
        &self,
        region: &str,
        operation: Operation,
        outcome: Result<(), ErrorKind>,
        elapsed: Duration,
    ) {
        let outcome = match outcome {
            Ok(()) => "success",
            Err(kind) => kind.as_str(),
        };
        self.requests
            .with_label_values(&[region, operation.as_str(), outcome])
            .inc();
        self.duration
            .with_label_values(&[region, operation.as_str()])
            .observe(elapsed.as_secs_f64());
    }
}

impl Metrics {
    pub fn new(state: Arc<State>) -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                format!("{PREFIX}api_requests_total"),
                "AWS API requests (HTTP attempts) by operation and outcome: success or an error kind.",
            ),
            &["aws_region", "operation", "outcome"],
        )
        .expect("a valid counter");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                format!("{PREFIX}api_request_duration_seconds"),
                "Duration of AWS API requests (HTTP attempts), in seconds.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["aws_region", "operation"],
        )
        .expect("a valid histogram");
        let build_info = IntGaugeVec::new(
            Opts::new(
                format!("{PREFIX}build_info"),
                "Always 1; the version of the running fargate-health-monitor.",
            ),
            &["version"],
        )
        .expect("a valid gauge");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let reload_successful = prometheus::IntGauge::new(
            format!("{PREFIX}config_last_reload_successful"),
            "1 when the last config load (at start or on SIGHUP) succeeded, 0 when it failed.",
        )
        .expect("a valid gauge");
        let reload_success_time = prometheus::Gauge::new(
            format!("{PREFIX}config_last_reload_success_timestamp_seconds"),
            "Unix time of the last successful config load.",
        )
        .expect("a valid gauge");
        let state_write_errors = prometheus::IntCounter::new(
            format!("{PREFIX}state_write_errors_total"),
            "Failed writes of the state file; while they fail, alerts are delivered from memory.",
        )
        .expect("a valid counter");
        for collector in [
            Box::new(reload_successful.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(state_write_errors.clone()),
            Box::new(reload_success_time.clone()),
            Box::new(requests.clone()),
            Box::new(duration.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(collector).expect("distinct series");
        }
        Self {
            registry,
            api: Arc::new(ApiMetrics { requests, duration }),
            state,
            reload_successful,
            reload_success_time,
            state_write_errors,
        }
    }

    /// The counter of failed state file writes, for the writer.
    pub fn state_write_errors(&self) -> prometheus::IntCounter {
        self.state_write_errors.clone()
    }

    /// Records a config load: at start, or a reload that succeeded or failed.
    pub fn reloaded(&self, successful: bool) {
        self.reload_successful.set(i64::from(successful));
        if successful {
            let now = Timestamp::from_system_time(SystemTime::now());
            self.reload_success_time.set(now.as_secs_f64());
        }
    }

    /// The observer to hand to the AWS clients.
    pub fn api(&self) -> Arc<ApiMetrics> {
        self.api.clone()
    }

    /// Every series in the text exposition format, as of now.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        let _ = self.render_to(&mut text);
        String::from_utf8(text).unwrap_or_default()
    }

    /// Writes every series in the text exposition format to `sink` as it encodes them, a
    /// chunk at a time; stops at the first error of `sink` (the scraper went away).
    pub fn render_to<W: Write>(&self, sink: &mut W) -> io::Result<()> {
        let now = Timestamp::from_system_time(SystemTime::now());
        let snapshot = self.state.snapshot();
        let mut out = Out::new(sink);
        encode_domain(&mut out, &snapshot);
        encode_state(&mut out, &snapshot, now);
        out.finish()?;
        TextEncoder::new()
            .encode(&self.registry.gather(), sink)
            .map_err(io::Error::other)
    }

    /// [`Metrics::render_to`] through gzip into `sink`; returns `sink`.
    pub fn render_gzip_to<W: Write>(&self, sink: W) -> io::Result<W> {
        let mut encoder = flate2::write::GzEncoder::new(sink, flate2::Compression::fast());
        self.render_to(&mut encoder)?;
        encoder.finish()
    }
}

/// How much encoded text [`Out`] holds before it hands it on.
pub const CHUNK: usize = 64 * 1024;

/// A text buffer that hands what it holds to a writer once it reaches [`CHUNK`]; it reads as
/// the `String` it wraps. After the writer fails, text is dropped and the error kept.
struct Out<'a> {
    text: String,
    sink: &'a mut dyn Write,
    failed: Option<io::Error>,
}

impl<'a> Out<'a> {
    fn new(sink: &'a mut dyn Write) -> Self {
        Self {
            text: String::with_capacity(CHUNK + 4096),
            sink,
            failed: None,
        }
    }

    /// Hands the text on if it fills a chunk.
    fn spill(&mut self) {
        if self.text.len() >= CHUNK {
            self.hand_on();
        }
    }

    fn hand_on(&mut self) {
        if self.failed.is_none()
            && let Err(error) = self.sink.write_all(self.text.as_bytes())
        {
            self.failed = Some(error);
        }
        self.text.clear();
    }

    fn finish(mut self) -> io::Result<()> {
        self.hand_on();
        self.failed.map_or(Ok(()), Err)
    }
}

impl Deref for Out<'_> {
    type Target = String;

    fn deref(&self) -> &String {
        &self.text
    }
}

impl DerefMut for Out<'_> {
    fn deref_mut(&mut self) -> &mut String {
        &mut self.text
    }
}

/// Writes one family's `HELP` and `TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends a label value, escaped as the text format wants.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The labels every series of a profile carries, without braces:
/// `aws_account_id="…",aws_region="…",eks_cluster="…",fargate_profile="…"` and the target's.
fn profile_labels(entry: &Entry) -> String {
    let key = &entry.state.key;
    let mut out = String::with_capacity(160);
    let ours = [
        ("aws_account_id", key.account_id.as_str()),
        ("aws_region", key.region.as_str()),
        ("eks_cluster", key.cluster.as_str()),
        ("fargate_profile", key.profile.as_str()),
    ];
    let theirs = entry.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    for (i, (name, value)) in ours.into_iter().chain(theirs).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_into(&mut out, value);
        out.push('"');
    }
    out
}

/// One sample: `name{labels,extra="value"} value`.
fn sample(out: &mut Out, name: &str, labels: &str, extra: &[(&str, &str)], value: f64) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels);
    for (label, label_value) in extra {
        out.push(',');
        out.push_str(label);
        out.push_str("=\"");
        escape_into(out, label_value);
        out.push('"');
    }
    let _ = writeln!(out, "}} {value}");
    out.spill();
}

/// The `eks_fargate_profile_*` families, each with every profile's samples.
fn encode_domain(out: &mut Out, snapshot: &Snapshot) {
    let profiles: Vec<(&Entry, String)> = snapshot
        .profiles
        .iter()
        .map(|entry| (entry.as_ref(), profile_labels(entry)))
        .collect();

    let name = "eks_fargate_profile_info";
    header(
        out,
        name,
        "gauge",
        "Always 1 for a profile described at least once; labels arn and pod_execution_role_arn.",
    );
    for (entry, labels) in &profiles {
        if let Some(known) = &entry.state.known {
            let mut extra = vec![("arn", known.incarnation.arn.as_str())];
            extra.extend(known.info.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            sample(out, name, labels, &extra, 1.0);
        }
    }

    let name = "eks_fargate_profile_status";
    header(
        out,
        name,
        "gauge",
        "1 for the profile's current status, 0 for the other known statuses.",
    );
    for (entry, labels) in &profiles {
        if let Some(known) = &entry.state.known {
            for status in Status::KNOWN {
                let value = f64::from(u8::from(*status == known.status));
                sample(out, name, labels, &[("status", status.as_str())], value);
            }
            if !known.status.is_known() {
                sample(out, name, labels, &[("status", known.status.as_str())], 1.0);
            }
        }
    }

    let name = "eks_fargate_profile_health_issues";
    header(
        out,
        name,
        "gauge",
        "1 while an episode of the issue code is open, 0 for the other known codes.",
    );
    for (entry, labels) in &profiles {
        if let Some(known) = &entry.state.known {
            for code in IssueCode::KNOWN {
                let value = f64::from(u8::from(known.episodes.contains_key(code)));
                sample(out, name, labels, &[("code", code.as_str())], value);
            }
            for code in known.episodes.keys().filter(|code| !code.is_known()) {
                sample(out, name, labels, &[("code", code.as_str())], 1.0);
            }
        }
    }

    let name = "eks_fargate_profile_health_issue_resources";
    header(
        out,
        name,
        "gauge",
        "Distinct resource ids of an open issue episode.",
    );
    for (entry, labels) in &profiles {
        for episode in entry.state.known.iter().flat_map(|k| k.episodes.values()) {
            let count = episode.issue.resource_ids.len() as f64;
            let code = episode.issue.code.as_str();
            sample(out, name, labels, &[("code", code)], count);
        }
    }

    let name = "eks_fargate_profile_health_issue_start_timestamp_seconds";
    header(
        out,
        name,
        "gauge",
        "Unix time the open episode of the issue code began.",
    );
    for (entry, labels) in &profiles {
        for episode in entry.state.known.iter().flat_map(|k| k.episodes.values()) {
            let code = episode.issue.code.as_str();
            sample(
                out,
                name,
                labels,
                &[("code", code)],
                episode.since.as_secs_f64(),
            );
        }
    }

    let name = "eks_fargate_profile_created_timestamp_seconds";
    header(out, name, "gauge", "Unix time the profile was created.");
    for (entry, labels) in &profiles {
        if let Some(known) = &entry.state.known {
            let created = known.incarnation.created_at.as_secs_f64();
            sample(out, name, labels, &[], created);
        }
    }

    let name = "eks_fargate_profile_up";
    header(
        out,
        name,
        "gauge",
        "1 when the last describe of the profile succeeded, 0 otherwise.",
    );
    for (entry, labels) in &profiles {
        sample(out, name, labels, &[], f64::from(u8::from(entry.state.up)));
    }

    let name = "eks_fargate_profile_last_success_timestamp_seconds";
    header(
        out,
        name,
        "gauge",
        "Unix time of the last successful describe of the profile.",
    );
    for (entry, labels) in &profiles {
        if let Some(at) = entry.state.last_success {
            sample(out, name, labels, &[], at.as_secs_f64());
        }
    }
}

/// The self series that count what the state knows.
fn encode_state(out: &mut Out, snapshot: &Snapshot, now: Timestamp) {
    let name = format!("{PREFIX}profiles");
    header(out, &name, "gauge", "Profiles monitored now.");
    let _ = writeln!(out, "{name} {}", snapshot.profiles.len());

    let name = format!("{PREFIX}oldest_observation_age_seconds");
    header(
        out,
        &name,
        "gauge",
        "Seconds since the last attempt to describe the stalest profile (or since it was discovered).",
    );
    let oldest = snapshot
        .profiles
        .iter()
        .map(|entry| entry.freshness())
        .min();
    let age = oldest.map_or(0.0, |at| now.since(at).as_secs_f64());
    let _ = writeln!(out, "{name} {age}");

    let name = format!("{PREFIX}poll_cycle_overruns_total");
    header(
        out,
        &name,
        "counter",
        "Poll cycles that could not describe every profile within the interval.",
    );
    let _ = writeln!(out, "{name} {}", snapshot.overruns);

    let name = format!("{PREFIX}notifications_total");
    header(
        out,
        &name,
        "counter",
        "Delivery attempts and drops by sink and outcome: success, retry, rejected, dropped.",
    );
    for (sink, stats) in &snapshot.sinks {
        for outcome in Outcome::ALL {
            let count = stats.outcomes.get(&outcome).copied().unwrap_or_default();
            out.push_str(&name);
            out.push_str("{sink=\"");
            escape_into(out, sink);
            let _ = writeln!(out, "\",outcome=\"{}\"}} {count}", outcome.as_str());
        }
    }

    let name = format!("{PREFIX}notification_queue_depth");
    header(out, &name, "gauge", "Events waiting for delivery, by sink.");
    for (sink, stats) in &snapshot.sinks {
        out.push_str(&name);
        out.push_str("{sink=\"");
        escape_into(out, sink);
        let _ = writeln!(out, "\"}} {}", stats.queued);
    }

    let name = format!("{PREFIX}events_total");
    header(out, &name, "counter", "Events by kind.");
    for (kind, count) in EventKind::ALL.iter().zip(snapshot.events_total) {
        let _ = writeln!(out, "{name}{{kind=\"{}\"}} {count}", kind.as_str());
    }
}

/// The series encoded from a snapshot (all but the registry's), in the text format.
pub fn render_snapshot(snapshot: &Snapshot, now: Timestamp) -> String {
    let mut text = Vec::new();
    let mut out = Out::new(&mut text);
    encode_domain(&mut out, snapshot);
    encode_state(&mut out, snapshot, now);
    let _ = out.finish();
    String::from_utf8(text).unwrap_or_default()
}

#[cfg(test)]
mod tests;
