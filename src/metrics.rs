//! Every Prometheus series in one place (DESIGN.md "Metrics").
//!
//! The domain series (`eks_fargate_profile_*`) and the series that count what the state knows
//! (`profiles`, `events_total`, `poll_cycle_overruns_total`, `oldest_observation_age_seconds`)
//! are encoded at scrape time straight from a [`Snapshot`]: a deleted profile's series are
//! gone with it, and nothing is held twice. The `prometheus` crate's registry holds the rest:
//! the AWS calls, `build_info` and `process_*`.
//!
//! The text is encoded on demand a chunk of about [`CHUNK`] bytes at a time ([`Page`]), so a
//! scrape of 10,000 profiles (23 MB of text) never holds the whole page in memory, and a
//! scraper that stops reading holds no thread: only its place in the snapshot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};
use prometheus::{Registry, TextEncoder};

use crate::clock::Clock;
use crate::eks::CallObserver;
use crate::model::{ErrorKind, EventKind, Kind, Operation, Timestamp};
use crate::outbox::Outcome;
use crate::state::{Entry, Snapshot, State};

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
    /// "Now" for the domain series (ages) and the reload time.
    clock: Clock,
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
    pub fn new(state: Arc<State>, clock: Clock) -> Self {
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
            clock,
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
            self.reload_success_time.set(self.clock.now().as_secs_f64());
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

    /// The page as of now, to be encoded a chunk at a time ([`Page::next_chunk`]).
    pub fn page(&self) -> Page {
        Page::new(
            self.state.snapshot(),
            self.clock.now(),
            Some(self.registry.clone()),
        )
    }

    /// Writes every series in the text exposition format to `sink` a chunk at a time; stops at
    /// the first error of `sink` (the scraper went away).
    pub fn render_to<W: Write>(&self, sink: &mut W) -> io::Result<()> {
        let mut page = self.page();
        while let Some(chunk) = page.next_chunk()? {
            sink.write_all(&chunk)?;
        }
        Ok(())
    }

    /// [`Metrics::render_to`] through gzip into `sink`; returns `sink`.
    pub fn render_gzip_to<W: Write>(&self, mut sink: W) -> io::Result<W> {
        let mut page = GzipPage::new(self.page());
        while let Some(chunk) = page.next_chunk()? {
            sink.write_all(&chunk)?;
        }
        Ok(sink)
    }
}

/// How much encoded text a chunk of a [`Page`] holds (a little more: a chunk ends after the
/// profile that fills it).
pub const CHUNK: usize = 32 * 1024;

/// The page of one scrape, encoded on demand a chunk at a time: it holds the snapshot (shared
/// pointers to the profiles) and where it stands, never more than one chunk of text, so a
/// scraper that stops reading costs no thread and a bounded amount of memory.
#[derive(Debug)]
pub struct Page {
    /// Boxed: a page lives in the server's response body, which stays small.
    snapshot: Box<Snapshot>,
    now: Timestamp,
    /// The self series of the registry, encoded last; none for [`render_snapshot`].
    registry: Option<Registry>,
    /// The kinds of the page in the snapshot's order, each with its run of resources (the
    /// snapshot is sorted by key, kind first, so a kind's resources are contiguous): every kind
    /// this build watches (so its families have their `HELP` even before discovery) and every
    /// other kind the snapshot holds.
    runs: Vec<(Kind, Range<usize>)>,
    stage: Stage,
}

/// Where a [`Page`] stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    /// Kind `run` of [`Page::runs`], its family `family` ([`FAMILIES`], then the kind's
    /// [`Extras::values`]), next at its resource `offset` (0: the family's header is due).
    Domain {
        run: usize,
        family: usize,
        offset: usize,
    },
    /// The series counting what the state knows.
    State,
    /// The registry's series.
    Registry,
    Done,
}

impl Page {
    fn new(snapshot: Snapshot, now: Timestamp, registry: Option<Registry>) -> Self {
        let resources = &snapshot.resources;
        let mut kinds: Vec<Kind> = Kind::ALL.to_vec();
        let mut at = 0;
        while let Some(entry) = resources.get(at) {
            let kind = entry.state.key.kind;
            kinds.push(kind);
            at = resources.partition_point(|e| e.state.key.kind <= kind);
        }
        kinds.sort();
        kinds.dedup();
        let runs = kinds
            .into_iter()
            .map(|kind| {
                let start = resources.partition_point(|e| e.state.key.kind < kind);
                let end = resources.partition_point(|e| e.state.key.kind <= kind);
                (kind, start..end)
            })
            .collect();
        Self {
            snapshot: Box::new(snapshot),
            now,
            registry,
            runs,
            stage: Stage::Domain {
                run: 0,
                family: 0,
                offset: 0,
            },
        }
    }

    /// The next chunk of text, about [`CHUNK`] bytes (the last ones shorter); `None` once the
    /// page is complete.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut text = String::with_capacity(CHUNK + 4096);
        while text.len() < CHUNK {
            match self.stage {
                Stage::Domain {
                    run,
                    family,
                    offset,
                } => {
                    let Some((kind, range)) = self.runs.get(run).cloned() else {
                        self.stage = Stage::State;
                        continue;
                    };
                    let extras = Extras::of(kind);
                    let encoder = match FAMILIES.get(family) {
                        Some(spec) => Encoder::Family(spec),
                        None => match extras.values.get(family - FAMILIES.len()) {
                            Some(value) => Encoder::Value(value),
                            None => {
                                self.stage = Stage::Domain {
                                    run: run + 1,
                                    family: 0,
                                    offset: 0,
                                };
                                continue;
                            }
                        },
                    };
                    let spec = kind.spec();
                    let name = format!("{}_{}", spec.metric_prefix, encoder.suffix());
                    if offset == 0 {
                        header(&mut text, &name, "gauge", &encoder.help(kind, &extras));
                    }
                    let entries = &self.snapshot.resources[range];
                    let mut next = offset;
                    while let Some(entry) = entries.get(next) {
                        let labels = resource_labels(entry);
                        match encoder {
                            Encoder::Family(spec) => {
                                (spec.encode)(&mut text, &name, entry, &labels)
                            }
                            Encoder::Value((key, _)) => {
                                let value =
                                    entry.state.known.as_ref().and_then(|k| k.values.get(*key));
                                if let Some(value) = value {
                                    sample(&mut text, &name, &labels, &[], *value as f64);
                                }
                            }
                        }
                        next += 1;
                        if text.len() >= CHUNK {
                            break;
                        }
                    }
                    self.stage = if next >= entries.len() {
                        Stage::Domain {
                            run,
                            family: family + 1,
                            offset: 0,
                        }
                    } else {
                        Stage::Domain {
                            run,
                            family,
                            offset: next,
                        }
                    };
                }
                Stage::State => {
                    encode_state(&mut text, &self.snapshot, self.now);
                    self.stage = Stage::Registry;
                }
                Stage::Registry => {
                    self.stage = Stage::Done;
                    if let Some(registry) = &self.registry {
                        TextEncoder::new()
                            .encode_utf8(&registry.gather(), &mut text)
                            .map_err(io::Error::other)?;
                    }
                }
                Stage::Done => break,
            }
        }
        Ok((!text.is_empty()).then(|| text.into_bytes()))
    }
}

/// A [`Page`] through gzip: each chunk is what the compressor gave out for the next chunks of
/// text; the compressor's state (about 300 KiB) lives as long as the page.
#[derive(Debug)]
pub struct GzipPage {
    page: Page,
    /// `None` once the gzip trailer went out.
    encoder: Option<flate2::write::GzEncoder<Vec<u8>>>,
}

impl GzipPage {
    pub fn new(page: Page) -> Self {
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        Self {
            page,
            encoder: Some(encoder),
        }
    }

    /// The next compressed chunk; `None` once the page and the gzip trailer went out.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(None);
        };
        loop {
            match self.page.next_chunk()? {
                Some(text) => {
                    encoder.write_all(&text)?;
                    if encoder.get_ref().len() >= CHUNK / 4 {
                        return Ok(Some(std::mem::take(encoder.get_mut())));
                    }
                }
                None => {
                    encoder.try_finish()?;
                    let rest = std::mem::take(encoder.get_mut());
                    self.encoder = None;
                    return Ok(Some(rest));
                }
            }
        }
    }
}

/// One family of the domain series of every kind: its name after the kind's prefix, its help
/// (with `{a}`, `{noun}` and `{info}` to fill in for the kind) and how it encodes one resource's
/// samples.
struct Family {
    suffix: &'static str,
    help: &'static str,
    encode: fn(&mut String, &str, &Entry, &str),
}

/// What a kind has beyond [`FAMILIES`]: the info labels its describe gives (for the help) and
/// a gauge per number of its [`crate::diff::Known::values`].
struct Extras {
    info: &'static [&'static str],
    /// Per gauge: the key in `values` (also the family's suffix) and the help.
    values: &'static [(&'static str, &'static str)],
}

impl Extras {
    fn of(kind: Kind) -> Self {
        let (info, values): (&[&str], &[(&str, &str)]) = match kind.name() {
            "fargate_profile" => (&["pod_execution_role_arn"], &[]),
            "nodegroup" => (
                &["node_role_arn", "capacity_type", "release_version"],
                &[
                    (
                        "desired_size",
                        "The node group's desired number of nodes (its scaling config).",
                    ),
                    (
                        "min_size",
                        "The node group's minimum number of nodes (its scaling config).",
                    ),
                    (
                        "max_size",
                        "The node group's maximum number of nodes (its scaling config).",
                    ),
                ],
            ),
            "addon" => (&["addon_version"], &[]),
            "cluster" => (&["version", "platform_version"], &[]),
            "capability" => (&["role_arn"], &[]),
            _ => (&[], &[]),
        };
        Self { info, values }
    }
}

/// A family of one kind's page: one of [`FAMILIES`], or a gauge of [`Extras::values`].
#[derive(Clone, Copy)]
enum Encoder {
    Family(&'static Family),
    Value(&'static (&'static str, &'static str)),
}

impl Encoder {
    fn suffix(self) -> &'static str {
        match self {
            Encoder::Family(family) => family.suffix,
            Encoder::Value((key, _)) => key,
        }
    }

    /// The family's help for `kind`: "Unix time the node group was created."
    fn help(self, kind: Kind, extras: &Extras) -> String {
        let template = match self {
            Encoder::Family(family) => family.help,
            Encoder::Value((_, help)) => help,
        };
        let noun = kind.spec().noun;
        let a = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        let info = match extras.info {
            [] => " and the describe's details".to_owned(),
            [only] => format!(" and {only}"),
            [first @ .., last] => format!(", {} and {last}", first.join(", ")),
        };
        template
            .replace("{a}", a)
            .replace("{noun}", noun)
            .replace("{info}", &info)
    }
}

/// The families every kind has (`eks_fargate_profile_info`, `eks_nodegroup_info`, …), in the
/// order of the page; each is a gauge.
const FAMILIES: &[Family] = &[
    Family {
        suffix: "info",
        help: "Always 1 for {a} {noun} described at least once; labels arn{info}.",
        encode: |out, name, entry, labels| {
            if let Some(known) = &entry.state.known {
                let mut extra = vec![("arn", known.incarnation.arn.as_str())];
                extra.extend(known.info.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                sample(out, name, labels, &extra, 1.0);
            }
        },
    },
    Family {
        suffix: "status",
        help: "1 for the {noun}'s current status, 0 for the other known statuses.",
        encode: |out, name, entry, labels| {
            if let Some(known) = &entry.state.known {
                let kind = entry.state.key.kind;
                for status in kind.spec().statuses {
                    let value = f64::from(u8::from(*status == known.status.as_str()));
                    sample(out, name, labels, &[("status", status)], value);
                }
                if !kind.knows_status(&known.status) {
                    sample(out, name, labels, &[("status", known.status.as_str())], 1.0);
                }
            }
        },
    },
    Family {
        suffix: "health_issues",
        help: "1 while an episode of the issue code is open, 0 for the other known codes.",
        encode: |out, name, entry, labels| {
            if let Some(known) = &entry.state.known {
                let kind = entry.state.key.kind;
                for code in kind.known_codes() {
                    let value = f64::from(u8::from(known.episodes.contains_key(&code)));
                    sample(out, name, labels, &[("code", code.as_str())], value);
                }
                for code in known.episodes.keys().filter(|code| !kind.knows_code(code)) {
                    sample(out, name, labels, &[("code", code.as_str())], 1.0);
                }
            }
        },
    },
    Family {
        suffix: "health_issue_resources",
        help: "Distinct resource ids of an open issue episode.",
        encode: |out, name, entry, labels| {
            for episode in entry.state.known.iter().flat_map(|k| k.episodes.values()) {
                let count = episode.issue.resource_ids.len() as f64;
                let code = episode.issue.code.as_str();
                sample(out, name, labels, &[("code", code)], count);
            }
        },
    },
    Family {
        suffix: "health_issue_start_timestamp_seconds",
        help: "Unix time the open episode of the issue code began.",
        encode: |out, name, entry, labels| {
            for episode in entry.state.known.iter().flat_map(|k| k.episodes.values()) {
                let code = episode.issue.code.as_str();
                let since = episode.since.as_secs_f64();
                sample(out, name, labels, &[("code", code)], since);
            }
        },
    },
    Family {
        suffix: "created_timestamp_seconds",
        help: "Unix time the {noun} was created.",
        encode: |out, name, entry, labels| {
            if let Some(known) = &entry.state.known {
                let created = known.incarnation.created_at.as_secs_f64();
                sample(out, name, labels, &[], created);
            }
        },
    },
    Family {
        suffix: "up",
        help: "1 when the last describe of the {noun} succeeded, 0 otherwise.",
        encode: |out, name, entry, labels| {
            sample(out, name, labels, &[], f64::from(u8::from(entry.state.up)));
        },
    },
    Family {
        suffix: "last_success_timestamp_seconds",
        help: "Unix time of the last successful describe of the {noun}.",
        encode: |out, name, entry, labels| {
            if let Some(at) = entry.state.last_success {
                sample(out, name, labels, &[], at.as_secs_f64());
            }
        },
    },
];

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

/// The labels every series of a resource carries, without braces:
/// `aws_account_id="…",aws_region="…",eks_cluster="…"`, the kind's name label
/// (`fargate_profile="…"`, `eks_nodegroup="…"`; none for a cluster) and the target's.
fn resource_labels(entry: &Entry) -> String {
    let key = &entry.state.key;
    let mut out = String::with_capacity(160);
    let name = key
        .kind
        .spec()
        .name_label
        .map(|label| (label, key.name.as_str()));
    let ours = [
        ("aws_account_id", key.account_id.as_str()),
        ("aws_region", key.region.as_str()),
        ("eks_cluster", key.cluster.as_str()),
    ]
    .into_iter()
    .chain(name);
    let theirs = entry.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    for (i, (name, value)) in ours.chain(theirs).enumerate() {
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
fn sample(out: &mut String, name: &str, labels: &str, extra: &[(&str, &str)], value: f64) {
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
}

/// The self series that count what the state knows.
fn encode_state(out: &mut String, snapshot: &Snapshot, now: Timestamp) {
    let name = format!("{PREFIX}resources");
    header(out, &name, "gauge", "Resources monitored now, by kind.");
    let mut by_kind: BTreeMap<&str, usize> =
        Kind::ALL.iter().map(|kind| (kind.name(), 0)).collect();
    for entry in &snapshot.resources {
        *by_kind.entry(entry.state.key.kind.name()).or_default() += 1;
    }
    for (kind, count) in by_kind {
        let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {count}");
    }

    let name = format!("{PREFIX}oldest_observation_age_seconds");
    header(
        out,
        &name,
        "gauge",
        "Seconds since the last attempt to describe the stalest resource (or since it was discovered).",
    );
    let oldest = snapshot
        .resources
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
        "Poll cycles that could not describe every resource within the interval.",
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
    let mut page = Page::new(snapshot.clone(), now, None);
    let mut text = Vec::new();
    while let Ok(Some(chunk)) = page.next_chunk() {
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text).unwrap_or_default()
}

#[cfg(test)]
mod tests;
