//! The generic `webhook` sink: one `POST` per event with the JSON payload version 1, its
//! `X-Fargate-Health-*` headers and, with a `secret`, both signatures (DESIGN.md "Generic
//! webhook payload"). Redirects are not followed; 2xx is delivered, 408, 429 and 5xx are
//! retried (honouring `Retry-After`), any other answer is rejected.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use sha2::Sha256;

use crate::diff::{Event, EventDetail};
use crate::secret::{Secret, SecretUrl};
use crate::state::Pending;

use super::{Failure, Sink, response};

/// At most this many resource ids are sent per issue; `resource_count` is the true count.
pub const RESOURCE_IDS_CAP: usize = 1000;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The HTTP(S) client of the sinks.
pub type HttpsClient = Client<Https, Full<Bytes>>;

/// Posts events to one URL.
#[derive(Clone, Debug)]
pub struct WebhookSink {
    url: SecretUrl,
    /// Signing keys, newest first.
    secrets: Vec<Secret>,
    headers: Vec<(String, Secret)>,
    client: HttpsClient,
}

impl WebhookSink {
    pub fn new(url: SecretUrl, secrets: Vec<Secret>, headers: Vec<(String, Secret)>) -> Self {
        Self {
            url,
            secrets,
            headers,
            client: https_client(),
        }
    }
}

/// An HTTP(S) client with the system's root certificates; it follows no redirects.
pub fn https_client() -> HttpsClient {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_native_roots() {
        Ok(builder) => builder,
        Err(error) => {
            tracing::warn!(%error, "no system root certificates; https sinks will fail");
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(empty_roots_config())
        }
    };
    let connector = builder.https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new()).build(connector)
}

fn empty_roots_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

impl Sink for WebhookSink {
    async fn deliver(&self, batch: &[Pending]) -> Result<(), Failure> {
        for pending in batch {
            let body = payload(pending);
            let timestamp = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let mut ours = vec![("x-fargate-health-event-id", pending.id.clone())];
            ours.extend(signature_headers(
                &self.secrets,
                &pending.id,
                timestamp,
                &body,
            ));
            post_json(&self.client, &self.url, &ours, &self.headers, body).await?;
        }
        Ok(())
    }
}

/// POSTs a JSON body with our headers and the configured ones, and classifies the answer:
/// 2xx delivered; 408, 429, 5xx and connection errors retried (`Retry-After` in seconds or as
/// an HTTP-date on 429 and 503); a redirect (not followed) or any other answer rejected. The
/// body is read as [`response::drain`] says, never more.
pub async fn post_json(
    client: &HttpsClient,
    url: &SecretUrl,
    ours: &[(&str, String)],
    headers: &[(String, Secret)],
    body: Vec<u8>,
) -> Result<(), Failure> {
    let (uri, basic) = without_userinfo(url.expose());
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("fargate-health-monitor/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in ours {
        request = request.header(*name, value);
    }
    let configured_auth = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    if let Some(basic) = basic.filter(|_| !configured_auth) {
        request = request.header(http::header::AUTHORIZATION, basic);
    }
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.expose()),
        ) else {
            return Err(Failure::Reject {
                reason: format!("header {name} is not a valid HTTP header"),
            });
        };
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|error| Failure::Reject {
            reason: format!("cannot build the request: {error}"),
        })?;
    let response = client
        .request(request)
        .await
        .map_err(|error| Failure::Retry {
            reason: format!("cannot reach {url}: {}", error_chain(&error)),
            after: None,
        })?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| response::retry_after(v, SystemTime::now()));
    // Its content does not matter: read a little so a small body's connection can be reused.
    response::drain(response.into_body()).await;
    let code = status.as_u16();
    match code {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(Failure::Retry {
            reason: format!("{url} answered {status}"),
            after: retry_after.filter(|_| code == 429 || code == 503),
        }),
        300..=399 => Err(Failure::Reject {
            reason: format!("{url} answered {status}; redirects are not followed"),
        }),
        _ => Err(Failure::Reject {
            reason: format!("{url} answered {status}"),
        }),
    }
}

/// The URL without `user:password@` (which the HTTP client would log as part of the host) and
/// the `Authorization: Basic` value it stands for.
pub fn without_userinfo(url: &url::Url) -> (url::Url, Option<String>) {
    if url.username().is_empty() && url.password().is_none() {
        return (url.clone(), None);
    }
    let decode = |part: &str| {
        url::form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let credentials = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or_default())
    );
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    (bare, Some(basic))
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
    profile: ProfilePart<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issue: Option<IssuePart<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusPart<'a>>,
}

#[derive(Serialize)]
struct ProfilePart<'a> {
    account_id: &'a str,
    region: &'a str,
    cluster: &'a str,
    profile: &'a str,
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

/// The JSON body, version 1.
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
        version: "1",
        id: &pending.id,
        kind: event.kind().as_str(),
        sequence: event.sequence,
        observed_at: event.observed_at.to_rfc3339(),
        profile: ProfilePart {
            account_id: &event.key.account_id,
            region: &event.key.region,
            cluster: &event.key.cluster,
            profile: &event.key.profile,
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
            Incarnation, Issue, IssueCode, ProfileKey, ResolveReason, Status, Timestamp,
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
            key: ProfileKey::new("111122223333", "us-east-1", "prod", "default"),
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
        assert_eq!(body["version"], "1");
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
        assert_eq!(body["profile"]["labels"]["env"], "prod");
        assert!(body.get("status").is_none());
    }

    #[test]
    fn userinfo_leaves_the_url_and_becomes_basic_auth() {
        let url: url::Url = "http://us%40er:p%3Ass@127.0.0.1:9/hook?x=1"
            .parse()
            .unwrap();
        let (bare, basic) = without_userinfo(&url);
        assert_eq!(bare.as_str(), "http://127.0.0.1:9/hook?x=1");
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(basic, Some(format!("Basic {expected}")));
        let plain: url::Url = "https://hooks.example.com/x".parse().unwrap();
        assert_eq!(without_userinfo(&plain), (plain.clone(), None));
    }
}
