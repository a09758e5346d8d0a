//! The HTTP client of the webhook, Slack and Alertmanager sinks: the client itself (rustls with
//! the system's root certificates, HTTP/1, redirects never followed), one JSON `POST` with our
//! headers, the user info of the URL as basic auth and the configured `headers`, and the
//! classification of the answer: 2xx delivered; 408, 429, 5xx and connection errors retried
//! (`Retry-After` honoured on 429 and 503); a redirect or any other answer rejected. The body
//! of an answer is read only as [`response::drain`] allows. The time limit of a post is the
//! caller's (the worker's `timeout`, the Alertmanager sink's `timeout`).

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::clock::Clock;
use crate::secret::{Secret, SecretUrl};

use super::{Failure, response};

/// The `User-Agent` of the webhook and Slack posts.
pub const USER_AGENT: &str = concat!("fargate-health-monitor/", env!("CARGO_PKG_VERSION"));

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A sink's HTTP(S) client, with the clock that dates `Retry-After`. Cheap to clone: clones
/// share their connections.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<Https, Full<Bytes>>,
    clock: Clock,
}

impl HttpClient {
    /// A client with the system's root certificates (none, with a WARN, when the system has
    /// none: https posts then fail and are retried); it follows no redirects.
    pub fn new(clock: Clock) -> Self {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_native_roots() {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(%error, "no system root certificates; https sinks will fail");
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(empty_roots_config())
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            clock,
        }
    }

    /// POSTs a JSON `body` to `url`, with `path` (when not empty) appended to its path, and
    /// classifies the answer. `ours` are the sink's own headers, sent first; then
    /// `Authorization: Basic` from the URL's user info (unless `headers` has an
    /// `Authorization`), then the configured `headers`. Failures name `url` by its `Display`,
    /// which shows no secret.
    pub async fn post_json(
        &self,
        url: &SecretUrl,
        path: &str,
        ours: &[(&str, String)],
        headers: &[(String, Secret)],
        body: Bytes,
    ) -> Result<(), Failure> {
        let (mut uri, basic) = without_userinfo(url.expose());
        if !path.is_empty() {
            uri.set_path(&format!("{}{path}", uri.path().trim_end_matches('/')));
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri.as_str())
            .header(http::header::CONTENT_TYPE, "application/json");
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
            .body(Full::new(body))
            .map_err(|error| Failure::Reject {
                reason: format!("cannot build the request: {error}"),
            })?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| Failure::Retry {
                reason: format!("cannot reach {url}: {}", error_text(&error)),
                after: None,
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| response::retry_after(v, self.clock.system_time()));
        // Its content does not matter: read a little so a small body's connection can be reused.
        response::drain(response.into_body()).await;
        classify(url, status, retry_after)
    }
}

/// What an answer with `status` means for the event: 2xx delivered; 408, 429 and 5xx retried,
/// not before `retry_after` on 429 and 503; a redirect (not followed) or anything else
/// rejected.
fn classify(
    url: &SecretUrl,
    status: http::StatusCode,
    retry_after: Option<std::time::Duration>,
) -> Result<(), Failure> {
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

fn empty_roots_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
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

/// An error and its sources, joined with ": ", each source left out when the text so far
/// already says it.
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    for cause in crate::model::error_chain(error) {
        let cause_text = cause.to_string();
        if text.is_empty() {
            text = cause_text;
        } else if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
    }
    text
}

/// A receiver of one request on loopback, for the sinks' tests.
#[cfg(test)]
pub(crate) mod receiver {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// One request as it arrived.
    #[derive(Debug)]
    pub struct Received {
        /// The request line and the headers, names lowercased, in the order they came.
        pub head: Vec<String>,
        pub body: Vec<u8>,
    }

    impl Received {
        /// The values of the header `name` (lowercase).
        pub fn header(&self, name: &str) -> Vec<&str> {
            self.head
                .iter()
                .filter_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
                .collect()
        }
    }

    /// Accepts one connection, reads one request, answers `answer` (a whole HTTP response)
    /// and returns the request.
    pub async fn one(listener: &TcpListener, answer: &[u8]) -> Received {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the request ended early");
            buffer.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&buffer).into_owned();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let head: Vec<String> = text[..end]
                .split("\r\n")
                .map(|line| match line.split_once(": ") {
                    Some((name, value)) => format!("{}: {value}", name.to_lowercase()),
                    None => line.to_owned(),
                })
                .collect();
            let length: usize = head
                .iter()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buffer.len() >= end + 4 + length {
                stream.write_all(answer).await.unwrap();
                let body = buffer[end + 4..end + 4 + length].to_vec();
                return Received { head, body };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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

    #[tokio::test]
    async fn a_post_carries_our_headers_then_basic_auth_then_the_configured_ones() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = SecretUrl::new(format!("http://us%40er:pw@{addr}/base/").parse().unwrap());
        let client = HttpClient::new(Clock::wall());
        let ours = [("x-ours", "1".to_owned())];
        let headers = vec![("X-Team".to_owned(), Secret::new("platform"))];
        let (received, result) = tokio::join!(
            receiver::one(&listener, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            client.post_json(&url, "/api/v2/alerts", &ours, &headers, Bytes::from("{}")),
        );
        assert_eq!(result, Ok(()));
        assert_eq!(received.head[0], "POST /base/api/v2/alerts HTTP/1.1");
        let names: Vec<&str> = received.head[1..]
            .iter()
            .filter_map(|l| l.split_once(": ").map(|(name, _)| name))
            .collect();
        assert_eq!(
            names[..4],
            ["content-type", "x-ours", "authorization", "x-team"],
            "{:?}",
            received.head
        );
        assert_eq!(received.header("content-type"), ["application/json"]);
        let basic = base64::engine::general_purpose::STANDARD.encode("us@er:pw");
        assert_eq!(
            received.header("authorization"),
            [format!("Basic {basic}").as_str()]
        );
        assert_eq!(received.header("x-team"), ["platform"]);
        assert!(received.header("user-agent").is_empty());
        assert_eq!(received.body, b"{}");

        // A configured `Authorization` replaces the URL's user info.
        let headers = vec![("Authorization".to_owned(), Secret::new("Bearer t"))];
        let (received, _) = tokio::join!(
            receiver::one(&listener, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            client.post_json(&url, "", &[], &headers, Bytes::new()),
        );
        assert_eq!(received.head[0], "POST /base/ HTTP/1.1");
        assert_eq!(received.header("authorization"), ["Bearer t"]);

        // A header that HTTP cannot carry is a rejection, and nothing is sent.
        let headers = vec![("X-Bad".to_owned(), Secret::new("line\nbreak"))];
        let result = client
            .post_json(&url, "", &[], &headers, Bytes::new())
            .await;
        assert!(matches!(result, Err(Failure::Reject { .. })), "{result:?}");
    }

    #[tokio::test]
    async fn retry_after_as_a_date_counts_from_the_clock() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = SecretUrl::new(
            format!("http://{}/", listener.local_addr().unwrap())
                .parse()
                .unwrap(),
        );
        // 2023-11-14T22:13:20Z, 30 s before the date the receiver names.
        let client = HttpClient::new(Clock::fixed(crate::model::Timestamp::from_secs(
            1_700_000_000,
        )));
        let (_, result) = tokio::join!(
            receiver::one(
                &listener,
                concat!(
                    "HTTP/1.1 503 Service Unavailable\r\n",
                    "retry-after: Tue, 14 Nov 2023 22:13:50 GMT\r\n",
                    "content-length: 0\r\n\r\n",
                )
                .as_bytes()
            ),
            client.post_json(&url, "", &[], &[], Bytes::new()),
        );
        assert_eq!(
            result,
            Err(Failure::Retry {
                reason: format!("{url} answered 503 Service Unavailable"),
                after: Some(Duration::from_secs(30)),
            })
        );
    }

    #[test]
    fn answers_are_delivered_retried_or_rejected() {
        let url = SecretUrl::new("http://127.0.0.1:9/hook".parse().unwrap());
        let after = Some(Duration::from_secs(7));
        let answer = |code: u16| classify(&url, http::StatusCode::from_u16(code).unwrap(), after);
        assert_eq!(answer(200), Ok(()));
        assert_eq!(answer(204), Ok(()));
        for (code, honoured) in [(408, None), (429, after), (500, None), (503, after)] {
            let Err(Failure::Retry { after, .. }) = answer(code) else {
                panic!("{code} is retried");
            };
            assert_eq!(after, honoured, "{code}");
        }
        for code in [301, 302, 400, 401, 404, 410] {
            assert!(
                matches!(answer(code), Err(Failure::Reject { .. })),
                "{code} is rejected"
            );
        }
        let Err(Failure::Reject { reason }) = answer(302) else {
            unreachable!()
        };
        assert!(reason.ends_with("redirects are not followed"), "{reason}");
        assert!(
            !reason.contains("hook"),
            "the URL's path is a secret: {reason}"
        );
    }
}
