//! The `log` sink: each event it wants as one structured INFO line on stderr. It is the only
//! sink when none is configured. Text lines show what broke and where; the ids, the issue's
//! message and its resource ids are in JSON lines only (see [`crate::logging::logfmt`]).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::defaults;
use crate::diff::EventDetail;
use crate::limits::Backoff;
use crate::model::{EventKind, Kind, Status};
use crate::outbox::{Pending, Subscription};

use super::webhook::RESOURCE_IDS_CAP;
use super::{Failure, Pacing, Sink};

/// The name of the sink that runs when none is configured.
pub const DEFAULT_NAME: &str = "log";

/// How the worker paces a log sink: it has no receiver to wait for.
pub const PACING: Pacing = Pacing {
    timeout: Duration::from_secs(1),
    max_age: defaults::MAX_AGE,
    backoff: Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(1),
    },
    group_wait: Duration::ZERO,
    min_interval: Duration::ZERO,
};

/// Logs events; it cannot fail.
#[derive(Clone, Debug)]
pub struct LogSink {
    pub name: String,
}

impl LogSink {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    /// What a `type = "log"` section named `name` receives.
    pub fn subscription(
        name: &str,
        events: &BTreeSet<EventKind>,
        statuses: &BTreeSet<Status>,
    ) -> Subscription {
        Subscription {
            sink: name.to_owned(),
            events: events.clone(),
            statuses: statuses.clone(),
            max_queue: defaults::MAX_QUEUE,
        }
    }

    /// What the sink that runs when none is configured receives: the default events and
    /// statuses.
    pub fn default_subscription() -> Subscription {
        Subscription {
            sink: DEFAULT_NAME.to_owned(),
            events: EventKind::ALL
                .into_iter()
                .filter(|k| *k != EventKind::IssueUpdated)
                .collect(),
            statuses: Kind::alert_worthy_of_all().into_iter().collect(),
            max_queue: defaults::MAX_QUEUE,
        }
    }
}

impl Sink for LogSink {
    async fn deliver(&self, batch: &[Pending]) -> Result<(), Failure> {
        for pending in batch {
            log(&self.name, pending);
        }
        Ok(())
    }
}

fn log(sink: &str, pending: &Pending) {
    let event = &pending.event;
    let key = &event.key;
    let labels: Vec<String> = pending
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let labels = labels.join(",");
    let kind = event.kind().as_str();
    let id = pending.id.as_str();
    match &event.detail {
        EventDetail::IssueOpened { issue } | EventDetail::IssueUpdated { issue } => {
            tracing::info!(
                sink,
                event = kind,
                id,
                sequence = event.sequence,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                fargate_profile = %key.name,
                labels,
                code = issue.issue.code.as_str(),
                resource_count = issue.issue.resource_ids.len(),
                episode_id = %issue.episode_id,
                since = %issue.since.to_rfc3339(),
                issue_message = %issue.issue.message,
                resource_ids = %resource_ids(&issue.issue.resource_ids),
                "{}",
                if kind == "issue_opened" { "issue opened" } else { "issue updated" }
            );
        }
        EventDetail::IssueResolved {
            issue,
            resolved_at,
            reason,
        } => {
            tracing::info!(
                sink,
                event = kind,
                id,
                sequence = event.sequence,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                fargate_profile = %key.name,
                labels,
                code = issue.issue.code.as_str(),
                episode_id = %issue.episode_id,
                since = %issue.since.to_rfc3339(),
                duration_seconds = resolved_at.since(issue.since).as_secs(),
                reason = reason.as_str(),
                "issue resolved"
            );
        }
        EventDetail::StatusChanged { from, to } => {
            tracing::info!(
                sink,
                event = kind,
                id,
                sequence = event.sequence,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                fargate_profile = %key.name,
                labels,
                from = from.as_ref().map_or("none", Status::as_str),
                to = to.as_str(),
                "status changed"
            );
        }
        EventDetail::ResourceDeleted => {
            tracing::info!(
                sink,
                event = kind,
                id,
                sequence = event.sequence,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                fargate_profile = %key.name,
                labels,
                arn = %event.incarnation.arn,
                "profile deleted"
            );
        }
    }
}

/// Resource ids for a log field: comma-separated, the first [`RESOURCE_IDS_CAP`] of them
/// (`resource_count` is the true count), as in the webhook payload.
fn resource_ids(ids: &[String]) -> String {
    ids[..ids.len().min(RESOURCE_IDS_CAP)].join(",")
}
