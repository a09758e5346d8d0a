//! The `alertmanager` sink: level-triggered, not fed by the outbox (DESIGN.md "Alertmanager
//! alerts"). From the snapshot it posts every open episode (`EKS<Kind>HealthIssue`,
//! `severity="warning"`) and every alert-worthy status (`EKS<Kind>Failed`, `severity="critical"`
//! for a *FAILED status, `"warning"` for DEGRADED), each linking its resource in the API, to
//! `{url}/api/v2/alerts` of every URL in its list: at once on start, on every change, and every
//! `resend_interval` (also while polls fail). `endsAt` is now + 4 ×
//! `resend_interval`, so Alertmanager resolves what a dead monitor stops sending; an alert that
//! closed is posted with its real `endsAt` for 15 minutes. No per-instance label, so two
//! replicas deduplicate. Posts go through [`super::http`] (headers, basic auth, bounded
//! answers); one that fails for any reason is counted as `retry`, since the next change or
//! resend posts everything again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::clock::Clock;
use crate::logging::Repeats;
use crate::model::{ResourceKey, Timestamp};
use crate::outbox::Outcome;
use crate::secret::{Secret, SecretUrl};
use crate::state::{Snapshot, State};

use super::Failure;
use super::http::HttpClient;
use crate::outbox::worker::{LOG_EVERY, instant_in, later};

/// Where Alertmanager's API takes alerts, below each configured URL.
pub const ALERTS_PATH: &str = "/api/v2/alerts";

/// How long a closed alert is still posted with its real `endsAt`.
pub const CLOSED_FOR: Duration = Duration::from_secs(15 * 60);

/// One alert as Alertmanager's API v2 takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    pub ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// The sink's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub name: String,
    pub urls: Vec<SecretUrl>,
    pub headers: Vec<(String, Secret)>,
    pub resend_interval: Duration,
    pub timeout: Duration,
    pub runbook_url: Option<Url>,
    pub external_url: Option<Url>,
}

/// The alerts that are firing now: one per open episode and one per failed status. Keys are
/// the alerts' label sets; `endsAt` is left for the caller.
pub fn firing(snapshot: &Snapshot, settings: &Settings) -> BTreeMap<Vec<(String, String)>, Alert> {
    let mut alerts = BTreeMap::new();
    for entry in &snapshot.resources {
        let Some(known) = &entry.state.known else {
            continue;
        };
        let key = &entry.state.key;
        let generator_url = settings
            .external_url
            .as_ref()
            .map(|url| generator_url(url, key));
        let mut base: BTreeMap<String, String> = entry
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        base.insert("aws_account_id".into(), key.account_id.clone());
        base.insert("aws_region".into(), key.region.clone());
        base.insert("eks_cluster".into(), key.cluster.clone());
        let kind = key.kind.spec();
        if let Some(name_label) = kind.name_label {
            base.insert(name_label.into(), key.name.clone());
        }
        let title = kind.title;
        let inline = in_sentence(title);
        // "prod/web" within its cluster; a cluster is named once, and is not "in cluster" itself.
        let (path, in_cluster) = if kind.name_label.is_some() {
            (
                format!("{}/{}", key.cluster, key.name),
                format!(", cluster {}", key.cluster),
            )
        } else {
            (key.cluster.clone(), String::new())
        };
        let mut annotations = BTreeMap::new();
        if let Some(runbook) = &settings.runbook_url {
            annotations.insert("runbook_url".to_owned(), runbook.to_string());
        }
        for episode in known.episodes.values() {
            let code = episode.issue.code.as_str();
            let mut labels = base.clone();
            labels.insert(
                "alertname".into(),
                format!("EKS{}HealthIssue", kind.alert_name),
            );
            labels.insert("code".into(), code.to_owned());
            labels.insert("severity".into(), "warning".into());
            let mut annotations = annotations.clone();
            annotations.insert("summary".into(), format!("{title} {path} has {code}"));
            let resources = episode.issue.resource_ids.len();
            annotations.insert(
                "description".into(),
                format!(
                    "{}{} on {inline} {} in account {}, region {}{in_cluster}",
                    episode.issue.message,
                    affected(resources),
                    key.name,
                    key.account_id,
                    key.region,
                ),
            );
            let alert = Alert {
                starts_at: Some(episode.since.to_rfc3339()),
                ends_at: String::new(),
                generator_url: generator_url.clone(),
                labels,
                annotations,
            };
            alerts.insert(label_key(&alert), alert);
        }
        if key.kind.is_alert_worthy(&known.status) {
            let status = known.status.as_str();
            let mut labels = base;
            labels.insert("alertname".into(), format!("EKS{}Failed", kind.alert_name));
            labels.insert("status".into(), status.to_owned());
            // FAILED needs a person now; DEGRADED (node groups, add-ons) works, impaired.
            let severity = if status.ends_with("FAILED") {
                "critical"
            } else {
                "warning"
            };
            labels.insert("severity".into(), severity.into());
            let mut annotations = annotations;
            annotations.insert("summary".into(), format!("{title} {path} is {status}"));
            annotations.insert(
                "description".into(),
                format!(
                    "{title} {} in account {}, region {}{in_cluster} is {status}",
                    key.name, key.account_id, key.region
                ),
            );
            let alert = Alert {
                starts_at: None,
                ends_at: String::new(),
                generator_url: generator_url.clone(),
                labels,
                annotations,
            };
            alerts.insert(label_key(&alert), alert);
        }
    }
    alerts
}

/// Where an alert comes from: the resource in this server's API below `external_url`,
/// `{external_url}/api/v1/resources?kind=…&account_id=…&region=…&cluster=…&name=…`, which
/// selects exactly that resource (docs/api.md). A path of `external_url` is kept, with or
/// without its trailing slash.
pub fn generator_url(external_url: &Url, key: &ResourceKey) -> String {
    let mut url = external_url.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    let Ok(mut url) = url.join("api/v1/resources") else {
        return external_url.to_string();
    };
    url.query_pairs_mut()
        .clear()
        .append_pair("kind", key.kind.name())
        .append_pair("account_id", &key.account_id)
        .append_pair("region", &key.region)
        .append_pair("cluster", &key.cluster)
        .append_pair("name", &key.name);
    url.set_fragment(None);
    url.to_string()
}

fn label_key(alert: &Alert) -> Vec<(String, String)> {
    alert.labels.clone().into_iter().collect()
}

/// The longest `resend_interval` the sink uses; a longer one is taken as this, so `endsAt`
/// (4 × the interval ahead) and the next resend always stay within reach of every clock and
/// formatter.
pub const RESEND_CEILING: Duration = Duration::from_secs(365 * 24 * 3600);

/// The interval between resends, within [`RESEND_CEILING`].
fn resend_interval(settings: &Settings) -> Duration {
    settings.resend_interval.min(RESEND_CEILING)
}

/// The `endsAt` of a firing alert posted at `now`: 4 × the resend interval later.
pub fn ends_at(now: Timestamp, settings: &Settings) -> Timestamp {
    later(now, resend_interval(settings).saturating_mul(4))
}

/// Posts alerts until `shutdown`, at the times of `clock`.
pub async fn run(settings: Settings, state: Arc<State>, clock: Clock, shutdown: CancellationToken) {
    let client = HttpClient::new(clock.clone());
    let mut changes = state.outbox().watch_generation();
    // Alerts that closed, with when they closed.
    let mut closed: BTreeMap<Vec<(String, String)>, (Alert, Timestamp)> = BTreeMap::new();
    let mut last: Option<BTreeMap<Vec<(String, String)>, Alert>> = None;
    let mut next_resend = tokio::time::Instant::now();
    // The WARN lines about each URL's failed posts.
    let mut logs: Vec<Repeats> = settings.urls.iter().map(|_| Repeats::default()).collect();
    loop {
        let current = firing(&state.snapshot(), &settings);
        let changed = last.as_ref() != Some(&current);
        if changed || tokio::time::Instant::now() >= next_resend {
            if let Some(previous) = &last {
                for (key, alert) in previous {
                    if !current.contains_key(key) {
                        closed.insert(key.clone(), (alert.clone(), clock.now()));
                    }
                }
            }
            let now = clock.now();
            closed.retain(|key, (_, at)| !current.contains_key(key) && now.since(*at) < CLOSED_FOR);
            let ends_at = ends_at(now, &settings).to_rfc3339();
            let mut batch: Vec<Alert> = current
                .values()
                .map(|alert| Alert {
                    ends_at: ends_at.clone(),
                    ..alert.clone()
                })
                .collect();
            batch.extend(closed.values().map(|(alert, at)| Alert {
                ends_at: at.to_rfc3339(),
                ..alert.clone()
            }));
            post_everywhere(&client, &settings, &state, &clock, &batch, &mut logs).await;
            last = Some(current);
            next_resend = instant_in(resend_interval(&settings));
        }
        changes.mark_unchanged();
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = changes.changed() => {}
            () = tokio::time::sleep_until(next_resend) => {}
        }
    }
}

/// Posts `batch` to every URL; a URL's failures are logged once a minute at most (`logs`, one
/// per URL), with the failures not logged since, and its recovery once.
async fn post_everywhere(
    client: &HttpClient,
    settings: &Settings,
    state: &State,
    clock: &Clock,
    batch: &[Alert],
    logs: &mut [Repeats],
) {
    let Ok(body) = serde_json::to_vec(batch) else {
        return;
    };
    let body = Bytes::from(body);
    for (url, log) in settings.urls.iter().zip(logs.iter_mut()) {
        let outcome = match tokio::time::timeout(
            settings.timeout,
            client.post_json(url, ALERTS_PATH, &[], &settings.headers, body.clone()),
        )
        .await
        {
            Ok(Ok(())) => {
                if let Some(suppressed) = log.ended() {
                    tracing::info!(sink = %settings.name, %url, suppressed, "posting alerts works again");
                }
                Outcome::Success
            }
            Ok(Err(Failure::Retry { reason, .. } | Failure::Reject { reason })) => {
                if let Some(suppressed) = log.occurred(tokio::time::Instant::now(), LOG_EVERY) {
                    tracing::warn!(sink = %settings.name, %url, %reason, alerts = batch.len(), suppressed, "cannot post alerts; posting again at the next change or resend");
                }
                state
                    .outbox()
                    .sink_failed(&settings.name, clock.now(), &reason);
                Outcome::Retry
            }
            Err(_) => {
                if let Some(suppressed) = log.occurred(tokio::time::Instant::now(), LOG_EVERY) {
                    tracing::warn!(sink = %settings.name, %url, suppressed, "posting alerts timed out; posting again at the next change or resend");
                }
                state.outbox().sink_failed(
                    &settings.name,
                    clock.now(),
                    &format!("{url}: no answer in time"),
                );
                Outcome::Retry
            }
        };
        state.outbox().record_notification(&settings.name, outcome);
    }
}

/// " (2 resources)" after an issue's message; nothing for an issue without resource ids (a
/// capability's issues carry none), which is not "0 resources".
fn affected(resources: usize) -> String {
    match resources {
        0 => String::new(),
        1 => " (1 resource)".to_owned(),
        n => format!(" ({n} resources)"),
    }
}

/// A kind's title inside a sentence: "node group" for "Node group"; a name stays as it is
/// ("Fargate profile").
fn in_sentence(title: &str) -> String {
    let mut chars = title.chars();
    match chars.next() {
        Some(first) if !title.starts_with("Fargate") => first.to_lowercase().chain(chars).collect(),
        _ => title.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Rules;
    use crate::sinks::http::receiver;

    #[test]
    fn a_kinds_title_inside_a_sentence_is_lower_case_but_a_name() {
        assert_eq!(
            in_sentence(crate::model::Kind::NODEGROUP.spec().title),
            "node group"
        );
        assert_eq!(
            in_sentence(crate::model::Kind::ADDON.spec().title),
            "add-on"
        );
        assert_eq!(
            in_sentence(crate::model::Kind::FARGATE_PROFILE.spec().title),
            "Fargate profile"
        );
    }

    fn settings(url: &str, resend_interval: Duration) -> Settings {
        Settings {
            name: "am".into(),
            urls: vec![SecretUrl::new(url.parse().unwrap())],
            headers: Vec::new(),
            resend_interval,
            timeout: Duration::from_secs(5),
            runbook_url: None,
            external_url: None,
        }
    }

    #[test]
    fn a_huge_resend_interval_gives_an_ends_at_within_reach() {
        let huge = humantime::parse_duration("500000000y").unwrap();
        let at = Timestamp::from_secs(1_700_000_000);
        let settings = settings("http://127.0.0.1:9/", huge);
        assert_eq!(ends_at(at, &settings).since(at), RESEND_CEILING * 4);
        assert!(ends_at(at, &settings).to_rfc3339().starts_with("2027-"));
        let max = settings_with(Duration::MAX);
        assert_eq!(ends_at(at, &max).since(at), RESEND_CEILING * 4);
        let usual = settings_with(Duration::from_secs(60));
        assert_eq!(ends_at(at, &usual).since(at), Duration::from_secs(240));
    }

    #[test]
    fn each_kind_has_its_own_alert_names_and_a_degraded_status_is_a_warning() {
        use crate::model::fake::WIDGET;
        use crate::model::{Incarnation, Input, IssueCode, Observation, RawIssue, ResourceKey};
        let state = State::new(Rules::default(), Vec::new());
        let key = ResourceKey::new(WIDGET, "111122223333", "us-east-1", "prod", "w1");
        let at = Timestamp::from_secs(1_700_000_000);
        state.discovered(&key, Default::default(), at);
        state.apply(&Input::Observed(Observation {
            key: key.clone(),
            incarnation: Incarnation {
                arn: "arn:widget".into(),
                created_at: at,
            },
            status: crate::model::Status::from_wire("WOBBLING"),
            info: Default::default(),
            values: Default::default(),
            issues: vec![RawIssue {
                code: IssueCode::from_wire("Wobbly"),
                message: "it wobbles".into(),
                resource_ids: vec!["x".into()],
            }],
            observed_at: at,
        }));
        let alerts = firing(&state.snapshot(), &settings_with(Duration::from_secs(60)));
        let labels: Vec<BTreeMap<&str, &str>> = alerts
            .values()
            .map(|a| {
                a.labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            })
            .collect();
        assert_eq!(labels.len(), 2, "{labels:?}");
        let issue = labels
            .iter()
            .find(|l| l["alertname"] == "EKSWidgetHealthIssue");
        let issue = issue.expect("the issue alert");
        assert_eq!((issue["code"], issue["severity"]), ("Wobbly", "warning"));
        assert_eq!(issue["eks_widget"], "w1");
        assert!(!issue.contains_key("fargate_profile"));
        let failed = labels.iter().find(|l| l["alertname"] == "EKSWidgetFailed");
        let failed = failed.expect("the status alert");
        assert_eq!(
            (failed["status"], failed["severity"]),
            ("WOBBLING", "warning")
        );
        let summary = alerts
            .values()
            .find_map(|a| a.annotations.get("summary"))
            .unwrap();
        assert!(summary.starts_with("Widget prod/w1"), "{summary}");
        assert!(alerts.values().all(|a| a.generator_url.is_none()));
        let mut linked = settings_with(Duration::from_secs(60));
        linked.external_url = Some("https://fhm.example.test/".parse().unwrap());
        let alerts = firing(&state.snapshot(), &linked);
        for alert in alerts.values() {
            assert_eq!(
                alert.generator_url.as_deref(),
                Some(
                    "https://fhm.example.test/api/v1/resources?kind=widget&account_id=111122223333&region=us-east-1&cluster=prod&name=w1"
                )
            );
        }
    }

    #[test]
    fn the_generator_url_selects_the_resource_below_the_external_url() {
        use crate::model::ResourceKey;
        let key = ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", "web");
        let url = |external: &str| generator_url(&external.parse().unwrap(), &key);
        let query =
            "kind=fargate_profile&account_id=111122223333&region=us-east-1&cluster=prod&name=web";
        assert_eq!(
            url("http://fhm.example.test/"),
            format!("http://fhm.example.test/api/v1/resources?{query}")
        );
        assert_eq!(
            url("https://example.test/monitor"),
            format!("https://example.test/monitor/api/v1/resources?{query}")
        );
        assert_eq!(
            url("https://example.test/monitor/?x=1#top"),
            format!("https://example.test/monitor/api/v1/resources?{query}")
        );
        // Names are query values: whatever they hold is encoded.
        let odd = ResourceKey::fargate_profile("1", "r", "a b&c", "x=y#z");
        assert_eq!(
            generator_url(&"http://h/".parse().unwrap(), &odd),
            "http://h/api/v1/resources?kind=fargate_profile&account_id=1&region=r&cluster=a+b%26c&name=x%3Dy%23z"
        );
    }

    fn settings_with(resend_interval: Duration) -> Settings {
        settings("http://127.0.0.1:9/", resend_interval)
    }

    #[tokio::test]
    async fn the_sink_runs_and_posts_with_a_huge_resend_interval() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let huge = humantime::parse_duration("500000000y").unwrap();
        let state = Arc::new(State::new(Rules::default(), Vec::new()));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            settings(&url, huge),
            state,
            Clock::wall(),
            shutdown.clone(),
        ));
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let received = tokio::time::timeout(Duration::from_secs(20), receiver::one(&listener, ok))
            .await
            .expect("the sink posted at start");
        assert_eq!(received.head[0], "POST /api/v2/alerts HTTP/1.1");
        let alerts: serde_json::Value = serde_json::from_slice(&received.body).unwrap();
        assert_eq!(alerts, serde_json::json!([]));
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .unwrap()
            .expect("the sink's task did not panic");
    }
}
