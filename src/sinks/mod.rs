//! The receivers of events, one file each behind the outbox's small [`Sink`] trait: each knows
//! only its receiver's payload; the [outbox's worker](crate::outbox::worker) owns order,
//! retries and timing.
//!
//! [`spawn_all`] builds and starts every sink of a config (the Alertmanager sink too, which
//! reads the snapshot instead of the outbox), and [`subscriptions`] says what the outbox keeps
//! for them.

pub mod alertmanager;
pub mod http;
pub mod log;
pub mod response;
pub mod slack;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, Delivery, SinkKind};
use crate::limits::Backoff;
use crate::outbox::{Subscription, worker};
use crate::state::State;
use crate::supervisor::Supervisor;

pub use crate::outbox::worker::{Failure, Pacing, Sink};

use self::log::LogSink;
use self::slack::SlackSink;
use self::webhook::WebhookSink;

/// Sinks are paced by their config's delivery keys.
impl Pacing {
    /// The pacing a sink's delivery keys give, without grouping or a least interval.
    pub fn of(delivery: &Delivery) -> Self {
        Self {
            timeout: delivery.timeout,
            max_age: delivery.max_age,
            backoff: Backoff {
                base: delivery.retry_initial,
                max: delivery.retry_max,
            },
            group_wait: Duration::ZERO,
            min_interval: Duration::ZERO,
        }
    }
}

/// How long stopping sinks keep delivering what is due.
pub const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// What the outbox keeps for each sink it feeds, in the config's order: every `log`,
/// `webhook` and `slack` sink, or the default `log` sink when no sink is configured.
pub fn subscriptions(config: &Config) -> Vec<Subscription> {
    if config.sinks.is_empty() {
        return vec![LogSink::default_subscription()];
    }
    let of_delivery = |sink: &str, delivery: &Delivery| Subscription {
        sink: sink.to_owned(),
        events: delivery.events.clone(),
        statuses: delivery.statuses.clone(),
        max_queue: delivery.max_queue,
    };
    config
        .sinks
        .iter()
        .filter_map(|sink| match &sink.kind {
            SinkKind::Log { events, statuses } => {
                Some(LogSink::subscription(&sink.name, events, statuses))
            }
            SinkKind::Webhook { delivery, .. } | SinkKind::Slack { delivery, .. } => {
                Some(of_delivery(&sink.name, delivery))
            }
            SinkKind::Alertmanager { .. } => None,
        })
        .collect()
}

/// The running sinks of one config, stopped together: what a reload replaces.
#[derive(Debug)]
pub struct Sinks {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Sinks {
    /// Stops every sink and waits until each is over; the outbox-fed ones first deliver what
    /// is due, for up to [`FLUSH_GRACE`].
    pub async fn stop(&mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            // How a task ended is the supervisor's to report.
            let _ = task.await;
        }
    }
}

/// Builds every sink of `config` and starts each under `supervisor` as the task `sink
/// <name>`: a worker that feeds it from the outbox (the default `log` sink when none is
/// configured), or the Alertmanager sink's loop. `clock` gives every sink its "now". The
/// outbox must already hold the [`subscriptions`] of the same config.
pub fn spawn_all(
    config: &Config,
    state: &Arc<State>,
    clock: &Clock,
    supervisor: &Supervisor,
) -> Sinks {
    let spawner = Spawner {
        state,
        clock,
        supervisor,
        stop: CancellationToken::new(),
    };
    let mut tasks = Vec::new();
    for sink in &config.sinks {
        let name = sink.name.as_str();
        let task = match &sink.kind {
            SinkKind::Log { .. } => spawner.worker(name, LogSink::new(name), log::PACING),
            SinkKind::Webhook {
                url,
                secrets,
                headers,
                delivery,
            } => {
                let sink =
                    WebhookSink::new(url.clone(), secrets.clone(), headers.clone(), clock.clone());
                spawner.worker(name, sink, Pacing::of(delivery))
            }
            SinkKind::Slack {
                url,
                delivery,
                group_wait,
            } => {
                let sink = SlackSink::new(url.clone(), clock.clone());
                spawner.worker(name, sink, SlackSink::pacing(delivery, *group_wait))
            }
            SinkKind::Alertmanager {
                urls,
                headers,
                resend_interval,
                timeout,
                runbook_url,
            } => {
                let settings = alertmanager::Settings {
                    name: name.to_owned(),
                    urls: urls.clone(),
                    headers: headers.clone(),
                    resend_interval: *resend_interval,
                    timeout: *timeout,
                    runbook_url: runbook_url.clone(),
                    external_url: config.server.external_url.clone(),
                };
                let stop = spawner.stop.clone();
                let run = alertmanager::run(settings, state.clone(), clock.clone(), stop);
                spawner.task(name, run)
            }
        };
        tasks.push(task);
    }
    if config.sinks.is_empty() {
        let name = log::DEFAULT_NAME;
        tasks.push(spawner.worker(name, LogSink::new(name), log::PACING));
    }
    Sinks {
        stop: spawner.stop,
        tasks,
    }
}

/// What the sink tasks of one config share.
struct Spawner<'a> {
    state: &'a Arc<State>,
    clock: &'a Clock,
    supervisor: &'a Supervisor,
    stop: CancellationToken,
}

impl Spawner<'_> {
    /// Starts `task` as the task `sink <name>`.
    fn task(&self, name: &str, task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let stop = self.stop.clone();
        self.supervisor.spawn(format!("sink {name}"), stop, task)
    }

    /// Starts the worker that feeds `sink` from the outbox.
    fn worker(&self, name: &str, sink: impl Sink, pacing: Pacing) -> JoinHandle<()> {
        let run = worker::run(
            name.to_owned(),
            sink,
            pacing,
            self.state.outbox().clone(),
            self.clock.clone(),
            self.stop.clone(),
            FLUSH_GRACE,
        );
        self.task(name, run)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::diff::Rules;
    use crate::model::{
        EventKind, Incarnation, Input, IssueCode, Observation, RawIssue, ResourceKey, Status,
        Timestamp,
    };

    fn config(sinks: &str) -> Config {
        let text = format!("[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n{sinks}");
        let path = std::path::Path::new("sinks.toml");
        match crate::config::parse(&text, path, &crate::config::ProcessEnvironment) {
            Ok(loaded) => loaded.config,
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn the_outbox_feeds_every_sink_but_alertmanager_and_a_log_sink_when_none_is_configured() {
        let only_log = subscriptions(&config(""));
        assert_eq!(only_log, vec![LogSink::default_subscription()]);
        assert_eq!(only_log[0].sink, "log");
        assert!(!only_log[0].events.contains(&EventKind::IssueUpdated));
        let sinks = config(
            r#"
[[sinks]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:9093"

[[sinks]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/h"
max_queue = 7

[[sinks]]
name = "audit"
type = "log"
events = ["issue_updated"]

[[sinks]]
name = "chat"
type = "slack"
url = "https://hooks.slack.com/services/T/B/x"
"#,
        );
        let fed = subscriptions(&sinks);
        let names: Vec<&str> = fed.iter().map(|s| s.sink.as_str()).collect();
        assert_eq!(names, ["hook", "audit", "chat"]);
        assert_eq!(fed[0].max_queue, 7);
        assert_eq!(
            fed[1].events,
            std::collections::BTreeSet::from([EventKind::IssueUpdated])
        );
    }

    #[tokio::test]
    async fn spawn_all_feeds_a_webhook_signed_at_the_clock_s_time_and_stops_every_sink() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = config(&format!(
            r#"
[[sinks]]
name = "hook"
type = "webhook"
url = "http://{addr}/hook"
secret = "s"

[[sinks]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:9"
"#
        ));
        let at = Timestamp::from_secs(1_795_428_240);
        let state = Arc::new(State::new(Rules::default(), subscriptions(&config)));
        let key = ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", "web");
        state.discovered(&key, Arc::default(), at);
        state.apply(&Input::Observed(Observation {
            key,
            incarnation: Incarnation {
                arn: "arn:aws:eks:us-east-1:111122223333:fargateprofile/prod/web/1".into(),
                created_at: Timestamp::from_secs(1),
            },
            status: Status::from_wire("ACTIVE"),
            info: BTreeMap::new(),
            values: Default::default(),
            issues: vec![RawIssue {
                code: IssueCode::from_wire("AccessDenied"),
                message: "denied".into(),
                resource_ids: Vec::new(),
            }],
            observed_at: at,
        }));
        let (generation, _) = state.to_save();
        state.outbox().mark_saved(generation);
        let (supervisor, _failures) = crate::supervisor::new();
        let mut sinks = spawn_all(&config, &state, &Clock::fixed(at), &supervisor);
        assert_eq!(sinks.tasks.len(), 2);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let received =
            tokio::time::timeout(Duration::from_secs(20), http::receiver::one(&listener, ok))
                .await
                .expect("the webhook was posted");
        assert_eq!(received.head[0], "POST /hook HTTP/1.1");
        assert_eq!(received.header("webhook-timestamp"), ["1795428240"]);
        assert_eq!(received.header("user-agent"), [http::USER_AGENT]);
        let body: serde_json::Value = serde_json::from_slice(&received.body).unwrap();
        assert_eq!(body["kind"], "issue_opened");
        tokio::time::timeout(Duration::from_secs(20), sinks.stop())
            .await
            .expect("every sink stopped");
        assert!(sinks.tasks.is_empty());
    }
}
