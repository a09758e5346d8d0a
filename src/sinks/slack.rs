//! The `slack` sink: incoming-webhook messages people can act on, fed by the outbox like the
//! webhook sink. A message has `text` (the notification line and the fallback) and Block Kit
//! `blocks`: what happened, where, the code and message, the affected resource ids, a link to
//! the resource in the AWS console and a one-line remediation hint per code. What a resource is
//! called, its console page and the hints are its kind's ([`crate::model::KindSpec`]).
//!
//! Events of the same kind and code about resources of one kind in one (account, region,
//! cluster), queued within the sink's `group_wait`, become one message that summarises them.
//! Every message stays within Slack's limits whatever the API returned (at most 50 blocks, 3,000
//! characters of section text, 10 fields of 2,000 characters, a 150-character header), and the
//! worker sends at most one message per second.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::Delivery;
use crate::diff::EventDetail;
use crate::model::{Kind, ResourceKey};
use crate::outbox::Pending;
use crate::secret::SecretUrl;

use super::http::{HttpClient, USER_AGENT};
use super::{Failure, Pacing, Sink};

/// The least time between two messages: Slack takes about one per second per webhook.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Slack's limits for the parts of a message we use.
pub mod limits {
    pub const BLOCKS: usize = 50;
    pub const SECTION_TEXT: usize = 3000;
    pub const FIELDS: usize = 10;
    pub const FIELD_TEXT: usize = 2000;
    pub const HEADER_TEXT: usize = 150;
    /// The top-level `text`; Slack truncates beyond 40,000, we stay far below.
    pub const TEXT: usize = 3000;
}

/// Posts messages to one incoming webhook.
#[derive(Clone, Debug)]
pub struct SlackSink {
    url: SecretUrl,
    client: HttpClient,
}

impl SlackSink {
    /// The sink of a `type = "slack"` section.
    pub fn new(url: SecretUrl, clock: Clock) -> Self {
        Self {
            url,
            client: HttpClient::new(clock),
        }
    }

    /// How the worker paces a Slack sink: its delivery keys, its `group_wait`, and at most one
    /// message per [`INTERVAL`].
    pub fn pacing(delivery: &Delivery, group_wait: Duration) -> Pacing {
        Pacing {
            group_wait,
            min_interval: INTERVAL,
            ..Pacing::of(delivery)
        }
    }
}

impl Sink for SlackSink {
    async fn deliver(&self, batch: &[Pending]) -> Result<(), Failure> {
        let body = serde_json::to_vec(&message(batch)).unwrap_or_default();
        let ours = [("user-agent", USER_AGENT.to_owned())];
        self.client
            .post_json(&self.url, "", &ours, &[], body.into())
            .await
    }

    fn group_key(&self, pending: &Pending) -> Option<String> {
        let event = &pending.event;
        let code = event
            .episode_issue()
            .map(|i| i.issue.code.as_str().to_owned());
        let to = match &event.detail {
            EventDetail::StatusChanged { to, .. } => Some(to.as_str().to_owned()),
            _ => None,
        };
        let key = &event.key;
        // One message speaks of one kind of resource ("40 profiles of cluster prod").
        Some(format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            event.kind().as_str(),
            key.kind.name(),
            code.or(to).unwrap_or_default(),
            key.account_id,
            key.region,
            key.cluster,
            match &event.detail {
                EventDetail::IssueResolved { reason, .. } => reason.as_str(),
                _ => "",
            }
        ))
    }
}

/// A one-line hint for a code of a kind: what to check first (the kind's hint table, or its
/// fallback for a code it has no hint for).
pub fn remediation(kind: Kind, code: &str) -> &'static str {
    kind.hint(code)
}

/// The AWS console page of a resource: its own page below its cluster's, or the cluster's page
/// for a kind whose resource is the cluster.
/// Names go in percent-encoded, so that no name ends the link of a Slack message (`|`, `>`)
/// or points it elsewhere (`/`, `?`, `#`).
pub fn console_url(key: &ResourceKey) -> String {
    let region = encoded(&key.region);
    let mut url = format!(
        "https://{region}.console.aws.amazon.com/eks/home?region={region}#/clusters/{}",
        encoded(&key.cluster),
    );
    if let Some(path) = key.kind.spec().console_path {
        let _ = write!(url, "/{path}/{}", encoded(&key.name));
    }
    url
}

/// `text` with every byte but letters, digits and `-._~` as `%XX`. EKS names are letters,
/// digits, `-` and `_`, and come out as they are.
fn encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `text` with its first letter in upper case: "profile" becomes "Profile".
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Cuts `text` to at most `max` characters, ending with "…" when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Items joined with ", ", as many as fit in `max` characters, then "and N more".
fn listed(items: &[String], max: usize) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let after = items.len() - i - 1;
        let tail = if after > 0 {
            format!(" and {after} more").len()
        } else {
            0
        };
        if out.chars().count() + sep.len() + item.chars().count() + tail > max {
            let rest = items.len() - i;
            let _ = write!(out, "{}and {rest} more", if i == 0 { "" } else { " " });
            return cut(&out, max);
        }
        out.push_str(sep);
        out.push_str(item);
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(text, limits::SECTION_TEXT)}})
}

fn fields(pairs: &[(&str, String)]) -> Value {
    let fields: Vec<Value> = pairs
        .iter()
        .take(limits::FIELDS)
        .map(|(name, value)| {
            json!({"type": "mrkdwn", "text": cut(&format!("*{name}*\n{}", escape(value)), limits::FIELD_TEXT)})
        })
        .collect();
    json!({"type": "section", "fields": fields})
}

/// The message for one event, or for a group of alike events.
pub fn message(batch: &[Pending]) -> Value {
    let Some(first) = batch.first() else {
        return json!({"text": "fargate-health-monitor: nothing to report"});
    };
    let event = &first.event;
    let key = &event.key;
    let kind = key.kind.spec();
    let names: Vec<String> = batch.iter().map(|p| p.event.key.name.clone()).collect();
    let many = batch.len() > 1;
    let where_ = if many {
        format!("{} {} of cluster {}", batch.len(), kind.plural, key.cluster)
    } else if kind.name_label.is_none() {
        // The resource is the cluster: its name once.
        format!("cluster {}", key.cluster)
    } else {
        format!("{}/{}", key.cluster, key.name)
    };
    // The header is plain text; the rest is mrkdwn, where `<` and `&` from EKS would be markup.
    let header_where = where_.clone();
    let where_ = escape(&where_);
    let scope = escape(&format!("account {}, {}", key.account_id, key.region));
    let mut blocks = Vec::new();
    let (header, text, color_line) = match &event.detail {
        EventDetail::IssueOpened { issue } | EventDetail::IssueUpdated { issue } => {
            let plain = issue.issue.code.as_str();
            let code = escape(plain);
            let verb = if matches!(event.detail, EventDetail::IssueOpened { .. }) {
                "opened"
            } else {
                "changed"
            };
            (
                format!(":red_circle: {plain} {verb} on {header_where}"),
                format!("{code} {verb} on {where_} ({scope})"),
                format!(
                    "*Issue {verb}*: `{code}` since {}",
                    issue.since.to_rfc3339()
                ),
            )
        }
        EventDetail::IssueResolved {
            issue,
            resolved_at,
            reason,
        } => {
            let plain = issue.issue.code.as_str();
            let code = escape(plain);
            let took = humantime::format_duration(std::time::Duration::from_secs(
                resolved_at.since(issue.since).as_secs(),
            ));
            let why = match reason.as_str() {
                "cleared" => "the issue cleared",
                "resource_deleted" => "it was deleted",
                _ => "it is no longer monitored",
            };
            (
                format!(":white_check_mark: Resolved: {plain} on {header_where}"),
                format!("Resolved: {code} on {where_} after {took} ({why}; {scope})"),
                format!(
                    "*Resolved* after {took}: {why}. `{code}` had been open since {}",
                    issue.since.to_rfc3339()
                ),
            )
        }
        EventDetail::StatusChanged { from, to } => (
            format!(":large_orange_circle: {header_where} is {}", to.as_str()),
            format!("{where_} is {} ({scope})", escape(to.as_str())),
            format!(
                "*Status changed*: {} → *{}*",
                escape(from.as_ref().map_or("(new)", |s| s.as_str())),
                escape(to.as_str())
            ),
        ),
        EventDetail::ResourceDeleted => (
            format!(":wastebasket: {header_where} was deleted"),
            format!("{where_} was deleted ({scope})"),
            format!("*{} deleted*", capitalized(kind.noun)),
        ),
    };
    blocks.push(json!({"type": "header", "text": {"type": "plain_text", "text": cut(&header, limits::HEADER_TEXT), "emoji": true}}));
    blocks.push(section(&color_line));
    let (name_field, names_value) = if many {
        (
            capitalized(kind.plural),
            listed(&names, limits::FIELD_TEXT - 32),
        )
    } else {
        (capitalized(kind.noun), key.name.clone())
    };
    let mut pairs = vec![
        ("Account", key.account_id.clone()),
        ("Region", key.region.clone()),
        ("Cluster", key.cluster.clone()),
        (name_field.as_str(), names_value),
        ("Status", event.status.as_str().to_owned()),
    ];
    if let Some(issue) = event.episode_issue() {
        pairs.push(("Code", issue.issue.code.as_str().to_owned()));
    }
    if let Some((k, v)) = first.labels.iter().next() {
        pairs.push((
            "Labels",
            format!("{k}={v}{}", if first.labels.len() > 1 { ", …" } else { "" }),
        ));
    }
    blocks.push(fields(&pairs));
    if let Some(issue) = event.episode_issue() {
        if !issue.issue.message.is_empty() {
            blocks.push(section(&format!(
                "*Message*\n{}",
                escape(&issue.issue.message)
            )));
        }
        let mut ids: Vec<String> = batch
            .iter()
            .filter_map(|p| p.event.episode_issue())
            .flat_map(|i| i.issue.resource_ids.iter().cloned())
            .collect();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let quoted: Vec<String> = ids.iter().map(|id| format!("`{}`", escape(id))).collect();
            blocks.push(section(&format!(
                "*Affected resources ({})*\n{}",
                ids.len(),
                listed(&quoted, limits::SECTION_TEXT - 40)
            )));
        }
        if matches!(
            event.detail,
            EventDetail::IssueOpened { .. } | EventDetail::IssueUpdated { .. }
        ) {
            blocks.push(json!({"type": "context", "elements": [
                {"type": "mrkdwn", "text": cut(&format!(":bulb: {}", remediation(key.kind, issue.issue.code.as_str())), limits::SECTION_TEXT)}
            ]}));
        }
    }
    let links: Vec<String> = batch
        .iter()
        .take(5)
        .map(|p| {
            format!(
                "<{}|{} in the AWS console>",
                console_url(&p.event.key),
                escape(&p.event.key.name)
            )
        })
        .collect();
    let more = if batch.len() > 5 {
        format!(" and {} more", batch.len() - 5)
    } else {
        String::new()
    };
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": cut(&format!("{}{more}", links.join(" · ")), limits::SECTION_TEXT)}
    ]}));
    blocks.truncate(limits::BLOCKS);
    json!({"text": cut(&text, limits::TEXT), "blocks": blocks})
}

#[cfg(test)]
mod tests;
