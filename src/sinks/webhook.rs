//! The generic `webhook` sink: one `POST` per event with the JSON payload version 2, its
//! `X-Fargate-Health-*` headers and, with a `secret`, both signatures (DESIGN.md "Generic
//! webhook payload"), dated by the sink's clock. The answer is classified by
//! [`super::http`]: 2xx delivered, 408, 429 and 5xx retried, anything else rejected.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::clock::Clock;
use crate::diff::{Event, EventDetail};
use crate::outbox::Pending;
use crate::secret::{Secret, SecretUrl};

use super::http::{HttpClient, USER_AGENT};
use super::{Failure, Sink};

/// At most this many resource ids are sent per issue; `resource_count` is the true count.
pub const RESOURCE_IDS_CAP: usize = 1000;

/// Posts events to one URL.
#[derive(Clone, Debug)]
pub struct WebhookSink {
    url: SecretUrl,
    /// Signing keys, newest first.
    secrets: Vec<Secret>,
    headers: Vec<(String, Secret)>,
    client: HttpClient,
    /// Dates the signatures.
    clock: Clock,
}

impl WebhookSink {
    /// The sink of a `type = "webhook"` section.
    pub fn new(
        url: SecretUrl,
        secrets: Vec<Secret>,
        headers: Vec<(String, Secret)>,
        clock: Clock,
    ) -> Self {
        Self {
            url,
            secrets,
            headers,
            client: HttpClient::new(clock.clone()),
            clock,
        }
    }
}

impl Sink for WebhookSink {
    async fn deliver(&self, batch: &[Pending]) -> Result<(), Failure> {
        for pending in batch {
            let body = payload(pending);
            let timestamp = self
                .clock
                .system_time()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let mut ours = vec![
                ("user-agent", USER_AGENT.to_owned()),
                ("x-fargate-health-event-id", pending.id.clone()),
            ];
            ours.extend(signature_headers(
                &self.secrets,
                &pending.id,
                timestamp,
                &body,
            ));
            self.client
                .post_json(&self.url, "", &ours, &self.headers, body.into())
                .await?;
        }
        Ok(())
    }
}

/// The signature headers for `secrets` (newest first): `X-Fargate-Health-Signature` with the
/// newest key, and the Standard Webhooks headers with one signature per key.
pub fn signature_headers(
    secrets: &[Secret],
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let Some(newest) = secrets.first() else {
        return Vec::new();
    };
    let hex: String = hmac(newest.expose().as_bytes(), &[body])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let timestamp = timestamp.to_string();
    let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    let standard: Vec<String> = secrets
        .iter()
        .map(|secret| {
            let mac = hmac(secret.expose().as_bytes(), &signed);
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac)
            )
        })
        .collect();
    vec![
        ("x-fargate-health-signature", format!("sha256={hex}")),
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", standard.join(" ")),
    ]
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

#[derive(Serialize)]
struct Payload<'a> {
    version: &'static str,
    id: &'a str,
    kind: &'static str,
    sequence: u64,
    observed_at: String,
    resource: ResourcePart<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issue: Option<IssuePart<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusPart<'a>>,
}

#[derive(Serialize)]
struct ResourcePart<'a> {
    kind: &'static str,
    account_id: &'a str,
    region: &'a str,
    cluster: &'a str,
    name: &'a str,
    arn: &'a str,
    status: &'a str,
    labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct IssuePart<'a> {
    code: &'a str,
    message: &'a str,
    resource_ids: &'a [String],
    resource_count: usize,
    episode_id: &'a str,
    since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

#[derive(Serialize)]
struct StatusPart<'a> {
    from: Option<&'a str>,
    to: &'a str,
}

/// The JSON body, version 2 (DESIGN.md "Resource kinds"): `resource` names the kind and the
/// name of what the event is about.
pub fn payload(pending: &Pending) -> Vec<u8> {
    let event: &Event = &pending.event;
    let issue = event.episode_issue().map(|episode| {
        let ids = &episode.issue.resource_ids;
        let (resolved_at, duration_seconds, reason) = match &event.detail {
            EventDetail::IssueResolved {
                resolved_at,
                reason,
                ..
            } => (
                Some(resolved_at.to_rfc3339()),
                Some(resolved_at.since(episode.since).as_secs()),
                Some(reason.as_str()),
            ),
            _ => (None, None, None),
        };
        IssuePart {
            code: episode.issue.code.as_str(),
            message: &episode.issue.message,
            resource_ids: &ids[..ids.len().min(RESOURCE_IDS_CAP)],
            resource_count: ids.len(),
            episode_id: &episode.episode_id,
            since: episode.since.to_rfc3339(),
            resolved_at,
            duration_seconds,
            reason,
        }
    });
    let status = match &event.detail {
        EventDetail::StatusChanged { from, to } => Some(StatusPart {
            from: from.as_ref().map(|s| s.as_str()),
            to: to.as_str(),
        }),
        _ => None,
    };
    let body = Payload {
        version: "2",
        id: &pending.id,
        kind: event.kind().as_str(),
        sequence: event.sequence,
        observed_at: event.observed_at.to_rfc3339(),
        resource: ResourcePart {
            kind: event.key.kind.name(),
            account_id: &event.key.account_id,
            region: &event.key.region,
            cluster: &event.key.cluster,
            name: &event.key.name,
            arn: &event.incarnation.arn,
            status: event.status.as_str(),
            labels: &pending.labels,
        },
        issue,
        status,
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_published_examples() {
        // Standard Webhooks' example: secret bytes are the UTF-8 of the configured secret here.
        let secrets = vec![Secret::new("new-key"), Secret::new("old-key")];
        let headers = signature_headers(&secrets, "msg_1", 1_700_000_000, b"{\"a\":1}");
        let get = |name: &str| headers.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        let expected_hex: String = hmac(b"new-key", &[b"{\"a\":1}"])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            get("x-fargate-health-signature"),
            format!("sha256={expected_hex}")
        );
        assert_eq!(get("webhook-id"), "msg_1");
        assert_eq!(get("webhook-timestamp"), "1700000000");
        let signatures = get("webhook-signature");
        let parts: Vec<&str> = signatures.split(' ').collect();
        assert_eq!(parts.len(), 2);
        let old = hmac(b"old-key", &[b"msg_1.1700000000.{\"a\":1}"]);
        assert_eq!(
            parts[1],
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(old)
            )
        );
        // HMAC-SHA256 of a known input (RFC 4231 test case 2).
        let known = hmac(b"Jefe", &[b"what do ya want for nothing?"]);
        let hex: String = known.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(signature_headers(&[], "x", 1, b"").is_empty());
    }

    #[test]
    fn the_payload_caps_resource_ids_and_keeps_the_true_count() {
        use crate::diff::{EpisodeIssue, Event};
        use crate::model::{
            Incarnation, Issue, IssueCode, ResolveReason, ResourceKey, Status, Timestamp,
        };

        let ids: Vec<String> = (0..1500).map(|i| format!("subnet-{i:05}")).collect();
        let issue = EpisodeIssue {
            issue: Issue {
                code: IssueCode::from_wire("ClusterUnreachable"),
                message: "unreachable".into(),
                resource_ids: ids,
            },
            episode_id: "episode".into(),
            since: Timestamp::from_secs(1_700_000_000),
        };
        let event = Event {
            sequence: 7,
            key: ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", "default"),
            incarnation: Incarnation {
                arn: "arn".into(),
                created_at: Timestamp::from_secs(1),
            },
            status: Status::from_wire("ACTIVE"),
            observed_at: Timestamp::from_secs(1_700_000_270),
            detail: EventDetail::IssueResolved {
                issue,
                resolved_at: Timestamp::from_secs(1_700_000_270),
                reason: ResolveReason::Cleared,
            },
        };
        let pending = Pending {
            id: event.id(),
            sink: "hook".into(),
            event,
            labels: BTreeMap::from([("env".into(), "prod".into())]),
            enqueued_at: Timestamp::from_secs(1_700_000_270),
            attempts: 0,
            not_before: None,
            generation: 0,
        };
        let body: serde_json::Value = serde_json::from_slice(&payload(&pending)).unwrap();
        assert_eq!(body["version"], "2");
        assert_eq!(body["kind"], "issue_resolved");
        assert_eq!(body["sequence"], 7);
        assert_eq!(body["observed_at"], "2023-11-14T22:17:50Z");
        assert_eq!(
            body["issue"]["resource_ids"].as_array().unwrap().len(),
            RESOURCE_IDS_CAP
        );
        assert_eq!(body["issue"]["resource_count"], 1500);
        assert_eq!(body["issue"]["duration_seconds"], 270);
        assert_eq!(body["issue"]["reason"], "cleared");
        assert_eq!(body["issue"]["resolved_at"], "2023-11-14T22:17:50Z");
        assert_eq!(body["resource"]["labels"]["env"], "prod");
        assert_eq!(body["resource"]["kind"], "fargate_profile");
        assert_eq!(body["resource"]["name"], "default");
        assert_eq!(body["resource"]["cluster"], "prod");
        assert!(body.get("profile").is_none());
        assert!(body.get("status").is_none());
    }
}
