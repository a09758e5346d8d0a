//! The `log` sink: each event it wants as one structured INFO line on stderr. It is the only
//! sink when none is configured. A line names its resource with `kind`, `account_id`,
//! `region`, `cluster` and `name`, for every kind alike. Text lines show what broke and where;
//! the ids, the issue's message and its resource ids are in JSON lines only (see
//! [`crate::logging::logfmt`]).

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
    let event_kind = event.kind().as_str();
    let kind = key.kind.name();
    let id = pending.id.as_str();
    match &event.detail {
        EventDetail::IssueOpened { issue } | EventDetail::IssueUpdated { issue } => {
            tracing::info!(
                sink,
                event = event_kind,
                id,
                sequence = event.sequence,
                kind,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                name = %key.name,
                labels,
                code = issue.issue.code.as_str(),
                resource_count = issue.issue.resource_ids.len(),
                episode_id = %issue.episode_id,
                since = %issue.since.to_rfc3339(),
                issue_message = %issue.issue.message,
                resource_ids = %resource_ids(&issue.issue.resource_ids),
                "{}",
                if event_kind == "issue_opened" { "issue opened" } else { "issue updated" }
            );
        }
        EventDetail::IssueResolved {
            issue,
            resolved_at,
            reason,
        } => {
            tracing::info!(
                sink,
                event = event_kind,
                id,
                sequence = event.sequence,
                kind,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                name = %key.name,
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
                event = event_kind,
                id,
                sequence = event.sequence,
                kind,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                name = %key.name,
                labels,
                from = from.as_ref().map_or("none", Status::as_str),
                to = to.as_str(),
                "status changed"
            );
        }
        EventDetail::ResourceDeleted => {
            tracing::info!(
                sink,
                event = event_kind,
                id,
                sequence = event.sequence,
                kind,
                account_id = %key.account_id,
                region = %key.region,
                cluster = %key.cluster,
                name = %key.name,
                labels,
                arn = %event.incarnation.arn,
                "resource deleted"
            );
        }
    }
}

/// Resource ids for a log field: comma-separated, the first [`RESOURCE_IDS_CAP`] of them
/// (`resource_count` is the true count), as in the webhook payload.
fn resource_ids(ids: &[String]) -> String {
    ids[..ids.len().min(RESOURCE_IDS_CAP)].join(",")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::diff::Event;
    use crate::model::{Incarnation, ResourceKey, Timestamp};

    fn pending(key: ResourceKey, detail: EventDetail) -> Pending {
        let event = Event {
            sequence: 7,
            key,
            incarnation: Incarnation {
                arn: "arn:aws:eks:us-east-1:111122223333:thing/prod/w1/1".into(),
                created_at: Timestamp::from_secs(1),
            },
            status: Status::from_wire("OK"),
            observed_at: Timestamp::from_secs(1_700_000_000),
            detail,
        };
        Pending {
            id: event.id(),
            sink: "log".into(),
            event,
            labels: BTreeMap::new(),
            enqueued_at: Timestamp::from_secs(1_700_000_000),
            attempts: 0,
            not_before: None,
            generation: 0,
        }
    }

    #[test]
    fn a_line_names_the_resource_by_kind_and_name_whatever_its_kind() {
        let captured = crate::logging::Captured::start();
        let widget = ResourceKey::new(
            crate::model::fake::WIDGET,
            "111122223333",
            "us-east-1",
            "prod",
            "w1",
        );
        log("log", &pending(widget, EventDetail::ResourceDeleted));
        let profile = ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", "web");
        let changed = EventDetail::StatusChanged {
            from: None,
            to: Status::from_wire("CREATE_FAILED"),
        };
        log("log", &pending(profile, changed));
        let deleted = captured.lines_with("resource deleted");
        assert_eq!(deleted.len(), 1, "{}", captured.text());
        assert!(
            deleted[0].ends_with(
                " msg=\"resource deleted\" sink=log profile=\"widget 111122223333/us-east-1/prod/w1\""
            ),
            "{}",
            deleted[0]
        );
        let changed = captured.lines_with("status changed");
        assert!(
            changed[0].ends_with(
                " msg=\"status changed\" sink=log profile=111122223333/us-east-1/prod/web from=none to=CREATE_FAILED"
            ),
            "{}",
            changed[0]
        );
        assert!(!captured.text().contains("fargate_profile"));
    }
}
