//! The admin HTTP server (hyper 1): `/metrics`, `/healthz`, `/readyz`, `/api/v1/profiles` and
//! an index page at `/` (DESIGN.md "HTTP endpoints").
//!
//! [`bind`] is separate from [`Bound::serve`], so a taken address fails before any polling
//! starts, with a message that names it. GET and HEAD only (405 with `Allow` otherwise), a
//! header-read timeout and a small buffer per connection. Optional TLS and basic auth (on
//! every endpoint but `/healthz`) come from a [`Guard`], which a reload can replace. `/metrics` is rendered on a blocking
//! thread from a snapshot, so a scrape never waits on the pollers, and streamed a chunk at a
//! time (gzip-compressed when the scraper accepts it), so it never holds the whole page;
//! `/api/v1/profiles` is encoded on a blocking thread too.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Server as ServerConfig, Tls as TlsConfig};
use crate::metrics::{self, Metrics};
use crate::model::ErrorKind;
use crate::secret::Secret;
use crate::state::{Entry, State};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The read buffer of a connection (hyper's minimum): requests here are small.
const MAX_BUF_SIZE: usize = 8 * 1024;

/// What the endpoints read.
#[derive(Debug)]
pub struct App {
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
    pub guard: Arc<Guard>,
}

/// TLS and basic auth of the admin server, replaceable at run time.
#[derive(Default)]
pub struct Guard {
    tls: std::sync::RwLock<Option<tokio_rustls::TlsAcceptor>>,
    users: std::sync::RwLock<BTreeMap<String, Secret>>,
    /// Digests of credentials that verified, so bcrypt runs once per user and password.
    verified: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tls = self.tls.read().map(|t| t.is_some()).unwrap_or_default();
        let users = self.users.read().map(|u| u.len()).unwrap_or_default();
        f.debug_struct("Guard")
            .field("tls", &tls)
            .field("users", &users)
            .finish()
    }
}

impl Guard {
    /// The guard for `[server]`: loads the certificate and key when TLS is on.
    pub fn new(server: &ServerConfig) -> Result<Self, String> {
        let guard = Guard::default();
        guard.update(server)?;
        Ok(guard)
    }

    /// Applies `[server]` again (a reload): new certificate files, new users. On an error
    /// nothing changes.
    pub fn update(&self, server: &ServerConfig) -> Result<(), String> {
        let tls = match &server.tls {
            Some(tls) => Some(acceptor(tls)?),
            None => None,
        };
        *self.tls.write().unwrap_or_else(PoisonError::into_inner) = tls;
        *self.users.write().unwrap_or_else(PoisonError::into_inner) = server.basic_auth.clone();
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }

    fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a request may pass: no users configured, or valid basic credentials.
    async fn allows(&self, request: &Request<Incoming>) -> bool {
        let users = self
            .users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if users.is_empty() {
            return true;
        }
        let Some((user, password)) = basic_credentials(request) else {
            return false;
        };
        let Some(hash) = users.get(&user) else {
            return false;
        };
        let digest = {
            use sha2::Digest as _;
            let mut hasher = sha2::Sha256::new();
            for part in [
                user.as_bytes(),
                b"\0",
                password.as_bytes(),
                b"\0",
                hash.expose().as_bytes(),
            ] {
                hasher.update(part);
            }
            hasher.finalize().to_vec()
        };
        if self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&digest)
        {
            return true;
        }
        let hash = hash.expose().to_owned();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(digest);
        }
        ok
    }
}

/// A TLS acceptor from PEM files: the certificate chain and the private key.
fn acceptor(tls: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|certs| certs.collect())
        .map_err(|e| {
            format!(
                "cannot read the certificate {}: {e}",
                tls.cert_file.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", tls.cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| {
        format!(
            "cannot read the private key {}: {e}",
            tls.key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {} do not make a TLS identity: {e}",
                tls.cert_file.display(),
                tls.key_file.display()
            )
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The user and password of an `Authorization: Basic` header.
fn basic_credentials(request: &Request<Incoming>) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = request
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A listening socket, not serving yet.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
}

/// The address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds the admin server's address.
pub async fn bind(addr: SocketAddr) -> Result<Bound, BindError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| BindError { addr, source })?;
    Ok(Bound { listener, addr })
}

impl Bound {
    /// The bound address (with the port the OS picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(self, app: Arc<App>, shutdown: CancellationToken) {
        loop {
            let (stream, _) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: wait a little rather than spin.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let app = app.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                match app.guard.acceptor() {
                    None => serve_connection(stream, app, shutdown).await,
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                                .await;
                        match handshake {
                            Ok(Ok(stream)) => serve_connection(stream, app, shutdown).await,
                            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                }
            });
        }
    }
}

/// Serves HTTP/1 on one connection, plain or TLS.
async fn serve_connection<S>(stream: S, app: Arc<App>, shutdown: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(respond(&app, &request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        () = shutdown.cancelled() => {}
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "admin connection ended");
            }
        }
    }
}

type Reply = Response<UnsyncBoxBody<Bytes, Infallible>>;

fn whole(body: Bytes) -> UnsyncBoxBody<Bytes, Infallible> {
    Full::new(body).boxed_unsync()
}

async fn respond(app: &App, request: &Request<Incoming>) -> Reply {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut reply = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        reply
            .headers_mut()
            .insert(ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return reply;
    }
    let path = request.uri().path();
    if path != "/healthz" && !app.guard.allows(request).await {
        let mut reply = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        reply.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"fargate-health-monitor\""),
        );
        return reply;
    }
    let mut reply = match path {
        "/metrics" => metrics_reply(app, accepts_gzip(request), method == Method::HEAD),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if app.state.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: discovery or the first describe of every profile is not done\n",
        ),
        "/api/v1/profiles" => profiles_reply(app).await,
        "/" => index(),
        _ => text(StatusCode::NOT_FOUND, "not found; see /\n"),
    };
    if method == Method::HEAD {
        // The same headers, with the length of the body that GET would send.
        let length = reply.headers().get(CONTENT_LENGTH).cloned();
        *reply.body_mut() = whole(Bytes::new());
        if let Some(length) = length {
            reply.headers_mut().insert(CONTENT_LENGTH, length);
        }
    }
    reply
}

/// Whether `Accept-Encoding` allows gzip (and does not refuse it with `q=0`).
fn accepts_gzip(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// `/metrics`, streamed: a blocking thread encodes the page and sends it a chunk at a time
/// (gzip-compressed when the scraper accepts it), so neither the pollers nor memory wait on a
/// whole page. Without a length, it goes out chunked. HEAD renders nothing.
fn metrics_reply(app: &App, gzip: bool, head: bool) -> Reply {
    let body = if head {
        whole(Bytes::new())
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
        let metrics = app.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let sink = io::BufWriter::with_capacity(metrics::CHUNK, ChunkSender(tx));
            let sent = if gzip {
                metrics
                    .render_gzip_to(sink)
                    .and_then(|mut sink| sink.flush())
            } else {
                let mut sink = sink;
                metrics.render_to(&mut sink).and_then(|()| sink.flush())
            };
            if let Err(error) = sent {
                tracing::debug!(%error, "a /metrics scrape ended early");
            }
        });
        let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
        });
        StreamBody::new(chunks).boxed_unsync()
    };
    let mut reply = Response::new(body);
    let headers = reply.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    headers.insert(VARY, http::HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, http::HeaderValue::from_static("gzip"));
    }
    reply
}

/// Hands each write to the response body; fails once the scraper has gone.
struct ChunkSender(tokio::sync::mpsc::Sender<Bytes>);

impl io::Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn with_length(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let length = body.len();
    let mut reply = Response::new(whole(body));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, http::HeaderValue::from(length));
    reply
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    with_length(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn json(value: &impl Serialize) -> Reply {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            with_length(StatusCode::OK, "application/json", Bytes::from(body))
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode\n"),
    }
}

fn index() -> Reply {
    const PAGE: &str = concat!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>fargate-health-monitor</title></head>\n",
        "<body><h1>fargate-health-monitor ",
        env!("CARGO_PKG_VERSION"),
        "</h1>\n<ul>\n",
        "<li><a href=\"metrics\">/metrics</a>: Prometheus metrics</li>\n",
        "<li><a href=\"api/v1/profiles\">/api/v1/profiles</a>: every monitored profile as JSON</li>\n",
        "<li><a href=\"readyz\">/readyz</a>: 200 once every target was discovered and every profile attempted</li>\n",
        "<li><a href=\"healthz\">/healthz</a>: 200 while the process runs</li>\n",
        "</ul></body></html>\n"
    );
    with_length(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from_static(PAGE.as_bytes()),
    )
}

/// The body of `/api/v1/profiles`.
#[derive(Debug, Serialize)]
struct ProfilesDocument<'a> {
    ready: bool,
    profiles: Vec<ProfileView<'a>>,
}

#[derive(Debug, Serialize)]
struct ProfileView<'a> {
    account_id: &'a str,
    region: &'a str,
    cluster: &'a str,
    profile: &'a str,
    labels: &'a BTreeMap<String, String>,
    up: bool,
    /// How the last describe failed, while `up` is false.
    error: Option<ErrorKind>,
    status: Option<&'a str>,
    arn: Option<&'a str>,
    created_at: Option<String>,
    last_success: Option<String>,
    last_attempt: Option<String>,
    issues: Vec<IssueView<'a>>,
}

#[derive(Debug, Serialize)]
struct IssueView<'a> {
    code: &'a str,
    message: &'a str,
    resource_ids: &'a [String],
    resource_count: usize,
    episode_id: &'a str,
    since: String,
}

/// Every profile as JSON, encoded on a blocking thread like `/metrics` (at 10,000 profiles
/// the document is megabytes).
async fn profiles_reply(app: &App) -> Reply {
    let state = app.state.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let snapshot = state.snapshot();
        json(&ProfilesDocument {
            ready: state.is_ready(),
            profiles: snapshot.profiles.iter().map(|e| profile_view(e)).collect(),
        })
    })
    .await;
    encoded.unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode\n"))
}

fn profile_view(entry: &Entry) -> ProfileView<'_> {
    let state = &entry.state;
    let known = state.known.as_ref();
    ProfileView {
        account_id: &state.key.account_id,
        region: &state.key.region,
        cluster: &state.key.cluster,
        profile: &state.key.profile,
        labels: &entry.labels,
        up: state.up,
        error: state.last_error,
        status: known.map(|k| k.status.as_str()),
        arn: known.map(|k| k.incarnation.arn.as_str()),
        created_at: known.map(|k| k.incarnation.created_at.to_rfc3339()),
        last_success: state.last_success.map(|t| t.to_rfc3339()),
        last_attempt: state.last_attempt.map(|t| t.to_rfc3339()),
        issues: known
            .into_iter()
            .flat_map(|k| k.episodes.values())
            .map(|episode| IssueView {
                code: episode.issue.code.as_str(),
                message: &episode.issue.message,
                resource_ids: &episode.issue.resource_ids,
                resource_count: episode.issue.resource_ids.len(),
                episode_id: &episode.id,
                since: episode.since.to_rfc3339(),
            })
            .collect(),
    }
}
