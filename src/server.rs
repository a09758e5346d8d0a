//! The admin HTTP server (hyper 1): `/metrics`, `/healthz`, `/readyz`, `/api/v1/profiles` and
//! an index page at `/` (DESIGN.md "HTTP endpoints").
//!
//! [`bind`] is separate from [`Bound::serve`], so a taken address fails before any polling
//! starts, with a message that names it. GET and HEAD only (405 with `Allow` otherwise), a
//! header-read timeout and a small buffer per connection. Optional TLS and basic auth (on
//! every endpoint but `/healthz`) come from a [`Guard`], which a reload can replace.
//!
//! Every client is hostile until it proves otherwise, so everything a client can hold is
//! bounded: open connections ([`MAX_CONNECTIONS`]; more wait in the kernel's accept backlog;
//! [`CONNECTIONS_PER_CLIENT`] from one IP address, more are closed at once),
//! the time to send headers ([`HEADER_READ_TIMEOUT`]) and to take what the server writes
//! ([`WRITE_TIMEOUT`]), the pages being encoded at once ([`RENDERS`], a chunk at a time, so a
//! reader that stops holds no thread and a page waiting longer than [`RENDER_WAIT`] for its
//! turn answers 503), gzip compressors ([`GZIP_RESPONSES`]; beyond, pages go uncompressed) and
//! password checks ([`BCRYPT_THREADS`] running, [`BCRYPT_QUEUE`] waiting, one per client IP
//! address; beyond, 429 at once).
//! `/metrics` and `/api/v1/profiles` are encoded from a snapshot on blocking threads, so a
//! scrape never waits on the pollers, and streamed ([`metrics::Page`]), so none holds a page.
//!
//! [`Service::serve_io`] serves one connection of any byte stream: the accept loop hands it
//! TCP or TLS streams, tests and fuzzers an in-memory `tokio::io::duplex`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Server as ServerConfig, Tls as TlsConfig};
use crate::metrics::{self, GzipPage, Metrics, Page};
use crate::secret::Secret;
use crate::state::State;
use crate::{api, page};

/// How long a client may take to send its request headers (from the connection's start, or
/// from the end of the previous response on a kept-alive connection); also the TLS handshake's.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may leave what the server writes untaken before its connection is closed
/// (and the page it was sent dropped).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's accept backlog until one ends.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections open at once from one IP address; more are closed as soon as accepted, so one
/// client cannot take every place (a probe or scraper from another address still gets in).
pub const CONNECTIONS_PER_CLIENT: usize = 64;
/// Password checks running or waiting at once for one IP address; more get 429 at once, so a
/// client flooding wrong passwords holds one place and a new client elsewhere still gets its
/// turn within a few checks.
pub const CHECKS_PER_CLIENT: usize = 1;
/// Chunks of `/metrics` or `/api/v1/profiles` encoded at once, each on a blocking thread.
pub const RENDERS: usize = 2;
/// How long a page waits for its turn to encode a chunk: for its first, the answer is then 503
/// with `Retry-After`; for a later one, the connection is closed (the page would be incomplete).
pub const RENDER_WAIT: Duration = Duration::from_secs(5);
/// gzip-compressed pages at once (a compressor holds about 300 KiB); more go uncompressed.
pub const GZIP_RESPONSES: usize = 16;
/// Password checks (bcrypt) running at once.
pub const BCRYPT_THREADS: usize = 1;
/// Password checks that may wait for one of [`BCRYPT_THREADS`]; beyond, 429 at once.
pub const BCRYPT_QUEUE: usize = 8;
/// Credentials remembered once verified (so a scraper's are checked by bcrypt once); the
/// oldest is forgotten first.
pub const VERIFIED_CACHE: usize = 64;
/// The read buffer of a connection (hyper's minimum): requests here are small.
const MAX_BUF_SIZE: usize = 8 * 1024;

/// What the endpoints read.
#[derive(Debug)]
pub struct App {
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
    pub guard: Arc<Guard>,
    /// "Now" for the status page and the JSON API (how long ago, stale or not).
    pub clock: Clock,
}

/// TLS and basic auth of the admin server, replaceable at run time.
pub struct Guard {
    tls: std::sync::RwLock<Option<tokio_rustls::TlsAcceptor>>,
    users: std::sync::RwLock<BTreeMap<String, Secret>>,
    /// Digests of credentials that verified, oldest first, at most [`VERIFIED_CACHE`]: bcrypt
    /// runs once per user and password.
    verified: std::sync::Mutex<Vec<Digest>>,
    /// [`BCRYPT_THREADS`] permits to run bcrypt.
    bcrypt: Arc<Semaphore>,
    /// Password checks running or waiting, at most [`BCRYPT_THREADS`] + [`BCRYPT_QUEUE`].
    checks: Arc<AtomicUsize>,
    /// The password checks of each client, at most [`CHECKS_PER_CLIENT`].
    checks_per_client: PerClient,
}

/// A SHA-256 digest of a user, a password and the user's bcrypt hash.
type Digest = [u8; 32];

impl Default for Guard {
    fn default() -> Self {
        Self {
            tls: Default::default(),
            users: Default::default(),
            verified: Default::default(),
            bcrypt: Arc::new(Semaphore::new(BCRYPT_THREADS)),
            checks: Arc::new(AtomicUsize::new(0)),
            checks_per_client: PerClient::default(),
        }
    }
}

/// What [`Guard::allows`] decided.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict {
    Allowed,
    Denied,
    /// Too many password checks at once: refused without checking.
    Busy,
}

/// One place among the password checks running or waiting; given back on drop.
struct CheckSlot(Arc<AtomicUsize>);

impl CheckSlot {
    /// A place, unless `limit` are taken.
    fn take(checks: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        checks
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then(|| n.saturating_add(1))
            })
            .ok()
            .map(|_| Self(checks.clone()))
    }
}

/// How many places of a shared limit each client (by IP address) holds. A client's entry
/// goes when it holds none, so the map holds at most one entry per open connection.
#[derive(Clone, Debug, Default)]
struct PerClient(Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>);

/// One place of a client in a [`PerClient`]; given back on drop.
struct ClientPlace {
    counts: PerClient,
    client: IpAddr,
}

impl PerClient {
    /// A place for `client`, unless it holds `limit` already.
    fn take(&self, client: IpAddr, limit: usize) -> Option<ClientPlace> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let held = counts.entry(client).or_insert(0);
        if *held >= limit {
            return None;
        }
        *held = held.saturating_add(1);
        Some(ClientPlace {
            counts: self.clone(),
            client,
        })
    }
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = counts.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

impl Drop for CheckSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether `digest` is one of `remembered`, in a time that depends only on how many there are
/// (every byte of every entry is compared).
fn remembered(remembered: &[Digest], digest: &Digest) -> bool {
    let mut found = 0u8;
    for entry in remembered {
        let difference = entry
            .iter()
            .zip(digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found |= u8::from(std::hint::black_box(difference) == 0);
    }
    found != 0
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

    /// Whether a request may pass: no users configured, or valid basic credentials. Credentials
    /// that verified before pass without bcrypt; new ones wait for one of [`BCRYPT_THREADS`],
    /// and are refused unchecked ([`Verdict::Busy`]) when [`BCRYPT_QUEUE`] already wait.
    async fn allows(&self, request: &Request<Incoming>, client: Option<IpAddr>) -> Verdict {
        let users = self
            .users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if users.is_empty() {
            return Verdict::Allowed;
        }
        let Some((user, password)) = basic_credentials(request) else {
            return Verdict::Denied;
        };
        let Some(hash) = users.get(&user) else {
            return Verdict::Denied;
        };
        let digest: Digest = {
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
            hasher.finalize().into()
        };
        let known = {
            let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            remembered(&verified, &digest)
        };
        if known {
            return Verdict::Allowed;
        }
        let client_place = match client {
            Some(client) => match self.checks_per_client.take(client, CHECKS_PER_CLIENT) {
                Some(place) => Some(place),
                None => return Verdict::Busy,
            },
            None => None,
        };
        let Some(slot) = CheckSlot::take(&self.checks, BCRYPT_THREADS + BCRYPT_QUEUE) else {
            return Verdict::Busy;
        };
        let Ok(permit) = self.bcrypt.clone().acquire_owned().await else {
            return Verdict::Busy;
        };
        let hash = hash.expose().to_owned();
        // The permit and the slot go with the check: a client that hangs up does not free
        // them while bcrypt still runs.
        let ok = tokio::task::spawn_blocking(move || {
            let ok = bcrypt::verify(password, &hash).unwrap_or(false);
            drop((permit, slot, client_place));
            ok
        })
        .await
        .unwrap_or(false);
        if !ok {
            return Verdict::Denied;
        }
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if !remembered(&verified, &digest) {
            if verified.len() >= VERIFIED_CACHE {
                verified.remove(0);
            }
            verified.push(digest);
        }
        Verdict::Allowed
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

    /// Serves until `shutdown` is cancelled, at most [`MAX_CONNECTIONS`] connections at once.
    pub async fn serve(self, app: Arc<App>, shutdown: CancellationToken) {
        let service = Service::new(app);
        let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let per_client = PerClient::default();
        loop {
            // At the limit, accept nothing: new connections wait in the kernel's backlog.
            let place = tokio::select! {
                () = shutdown.cancelled() => return,
                place = connections.clone().acquire_owned() => match place {
                    Ok(place) => place,
                    Err(_) => return,
                },
            };
            let (stream, peer) = tokio::select! {
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
            let client = peer.ip();
            let Some(client_place) = per_client.take(client, CONNECTIONS_PER_CLIENT) else {
                // This client holds its share: closed at once, its place given back.
                tracing::debug!(%client, "too many connections from one client");
                continue;
            };
            let service = service.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _places = (place, client_place);
                let client = Some(client);
                match service.app.guard.acceptor() {
                    None => service.serve_io(stream, client, shutdown).await,
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                                .await;
                        match handshake {
                            Ok(Ok(stream)) => service.serve_io(stream, client, shutdown).await,
                            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                }
            });
        }
    }
}

/// The endpoints and the limits every connection of one admin server shares.
#[derive(Clone, Debug)]
pub struct Service {
    app: Arc<App>,
    /// [`RENDERS`] permits to encode a chunk of a page.
    renders: Arc<Semaphore>,
    /// [`GZIP_RESPONSES`] permits to compress a page.
    gzip: Arc<Semaphore>,
}

impl Service {
    /// The service of `app`, with fresh limits.
    pub fn new(app: Arc<App>) -> Self {
        Self {
            app,
            renders: Arc::new(Semaphore::new(RENDERS)),
            gzip: Arc::new(Semaphore::new(GZIP_RESPONSES)),
        }
    }

    /// Serves HTTP/1 on one connection (TCP, TLS or in memory) until the client is done, a
    /// timeout closes it, or `shutdown` is cancelled. Never panics on what the client sends.
    /// `client` is the peer's address, for the limits per client (`None`: in memory).
    pub async fn serve_io<S>(&self, stream: S, client: Option<IpAddr>, shutdown: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        let service = service_fn(move |request| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(respond(&this, &request, client).await) }
        });
        let stream = WriteTimeout::new(stream, WRITE_TIMEOUT);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_BUF_SIZE)
            // A client that closed its side after the request still gets the answer.
            .half_close(true)
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
}

/// A stream whose writes fail once the peer has taken nothing for `limit`: hyper then drops
/// the connection and the page it was sending.
struct WriteTimeout<S> {
    stream: S,
    limit: Duration,
    /// Since the first write that could not go out, while none could.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    fn new(stream: S, limit: Duration) -> Self {
        Self {
            stream,
            limit,
            stalled: None,
        }
    }

    /// After a write that went out (or failed): the clock stops.
    fn went<T>(&mut self, result: io::Result<T>) -> Poll<io::Result<T>> {
        self.stalled = None;
        Poll::Ready(result)
    }

    /// After a write that could not go out: fails once the clock ran out.
    fn waits<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing of the response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Ready(result) => self.went(result),
            Poll::Pending => self.waits(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => self.went(result),
            Poll::Pending => self.waits(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Ready(result) => self.went(result),
            Poll::Pending => self.waits(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_shutdown(cx) {
            Poll::Ready(result) => self.went(result),
            Poll::Pending => self.waits(cx),
        }
    }
}

/// What a body fails with: the connection is then closed, so the client sees the page cut.
type BodyError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BodyError>;
type Reply = Response<Body>;

fn whole(body: Bytes) -> Body {
    Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync()
}

async fn respond(service: &Service, request: &Request<Incoming>, client: Option<IpAddr>) -> Reply {
    let app = &service.app;
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut reply = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        reply
            .headers_mut()
            .insert(ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return reply;
    }
    let path = request.uri().path();
    if path != "/healthz" {
        match app.guard.allows(request, client).await {
            Verdict::Allowed => {}
            Verdict::Denied => {
                let mut reply = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
                reply.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Basic realm=\"fargate-health-monitor\""),
                );
                return reply;
            }
            Verdict::Busy => {
                return retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many password checks at once; retry later\n",
                );
            }
        }
    }
    let head = method == Method::HEAD;
    let mut reply = match path {
        "/metrics" => metrics_reply(service, accepts_gzip(request), head).await,
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if app.state.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: discovery or the first describe of every resource is not done\n",
        ),
        "/api/v1/profiles" => match api::Query::parse(request.uri().query()) {
            Ok(query) => profiles_reply(service, head, query).await,
            Err(problem) => text_owned(StatusCode::BAD_REQUEST, format!("{problem}\n")),
        },
        "/api/v1/resources" => match api::Query::parse_resources(request.uri().query()) {
            Ok(query) => profiles_reply(service, head, query).await,
            Err(problem) => text_owned(StatusCode::BAD_REQUEST, format!("{problem}\n")),
        },
        "/" => status_page(service).await,
        _ => text(StatusCode::NOT_FOUND, "not found; see /\n"),
    };
    if head {
        // The same headers, with the length of the body that GET would send.
        let length = reply.headers().get(CONTENT_LENGTH).cloned();
        *reply.body_mut() = whole(Bytes::new());
        if let Some(length) = length {
            reply.headers_mut().insert(CONTENT_LENGTH, length);
        }
    }
    reply
}

/// A short refusal that tells the client when to come back.
fn retry_later(status: StatusCode, body: &'static str) -> Reply {
    let mut reply = text(status, body);
    reply.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(RENDER_WAIT.as_secs()),
    );
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

/// A page encoded a chunk at a time ([`metrics::Page`], the JSON of `/api/v1/profiles`).
trait Chunks: Send + 'static {
    /// The next chunk, `None` once the page is complete.
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>>;
}

/// The `/metrics` page, plain or through one of the [`GZIP_RESPONSES`] compressors.
enum MetricsPage {
    Plain(Page),
    /// The permit is given back with the page.
    Gzip {
        page: Box<GzipPage>,
        _compressor: OwnedSemaphorePermit,
    },
}

impl Chunks for MetricsPage {
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self {
            Self::Plain(page) => page.next_chunk(),
            Self::Gzip { page, .. } => page.next_chunk(),
        }
    }
}

/// Why a page stopped.
#[derive(Debug, thiserror::Error)]
enum RenderError {
    #[error("no turn to encode within {RENDER_WAIT:?}")]
    Busy,
    #[error("encoding failed: {0}")]
    Failed(#[source] io::Error),
}

/// Encodes the next chunk of the page `make` gives, on a blocking thread once one of the
/// [`RENDERS`] permits is free (waiting at most [`RENDER_WAIT`]); gives the page back with it.
async fn encode<C: Chunks>(
    renders: &Arc<Semaphore>,
    make: impl FnOnce() -> C + Send + 'static,
) -> Result<(C, Option<Bytes>), RenderError> {
    let permit = match tokio::time::timeout(RENDER_WAIT, renders.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) | Err(_) => return Err(RenderError::Busy),
    };
    let encoded = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut chunks = make();
        let chunk = chunks.next_chunk();
        (chunks, chunk)
    })
    .await;
    match encoded {
        Ok((chunks, Ok(chunk))) => Ok((chunks, chunk.map(Bytes::from))),
        Ok((_, Err(error))) => Err(RenderError::Failed(error)),
        Err(error) => Err(RenderError::Failed(io::Error::other(error))),
    }
}

/// The body of a page: its first chunk encoded before the answer (so a busy server can still
/// say 503), the rest as the client takes them. Without a length, it goes out chunked; a page
/// that stops midway closes the connection.
async fn streamed<C: Chunks>(
    service: &Service,
    make: impl FnOnce() -> C + Send + 'static,
) -> Result<Body, RenderError> {
    use futures_util::StreamExt as _;

    let (chunks, first) = encode(&service.renders, make).await?;
    let renders = service.renders.clone();
    let first = first.map(|chunk| Ok::<_, BodyError>(Frame::data(chunk)));
    let rest = futures_util::stream::unfold(Some(chunks), move |chunks| {
        let renders = renders.clone();
        async move {
            let chunks = chunks?;
            match encode(&renders, move || chunks).await {
                Ok((chunks, Some(chunk))) => Some((Ok(Frame::data(chunk)), Some(chunks))),
                Ok((_, None)) => None,
                Err(error) => {
                    tracing::debug!(%error, "a page ended early");
                    Some((Err(BodyError::from(error)), None))
                }
            }
        }
    });
    let frames = futures_util::stream::iter(first).chain(rest);
    Ok(StreamBody::new(frames).boxed_unsync())
}

/// `/metrics`, streamed (gzip-compressed when the scraper accepts it and a compressor is
/// free). HEAD renders nothing.
async fn metrics_reply(service: &Service, gzip: bool, head: bool) -> Reply {
    let (body, gzip) = if head {
        (whole(Bytes::new()), gzip)
    } else {
        let compressor = gzip
            .then(|| service.gzip.clone().try_acquire_owned().ok())
            .flatten();
        let gzip = compressor.is_some();
        let metrics = service.app.metrics.clone();
        let body = streamed(service, move || match compressor {
            Some(permit) => MetricsPage::Gzip {
                page: Box::new(GzipPage::new(metrics.page())),
                _compressor: permit,
            },
            None => MetricsPage::Plain(metrics.page()),
        })
        .await;
        match body {
            Ok(body) => (body, gzip),
            Err(_) => return busy(),
        }
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

/// 503: every render permit stayed taken for [`RENDER_WAIT`].
fn busy() -> Reply {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy: too many pages being encoded at once; retry later\n",
    )
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

/// A plain text answer made at run time (a message about the request).
fn text_owned(status: StatusCode, body: String) -> Reply {
    with_length(status, "text/plain; charset=utf-8", Bytes::from(body))
}

/// The status page, rendered on a blocking thread like the other pages.
async fn status_page(service: &Service) -> Reply {
    let (state, clock) = (service.app.state.clone(), service.app.clock.clone());
    let rendered = encode(&service.renders, move || StatusPage {
        html: Some(page::render(
            &state.snapshot(),
            state.is_ready(),
            clock.now(),
        )),
    })
    .await;
    let mut reply = match rendered {
        Ok((_, Some(html))) => with_length(StatusCode::OK, "text/html; charset=utf-8", html),
        Ok((_, None)) | Err(_) => return busy(),
    };
    // Defence in depth besides the escaping: no script, frame or outside resource, ever.
    let headers = reply.headers_mut();
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    no_sniff_no_store(headers);
    reply
}

/// The status page as one chunk.
struct StatusPage {
    html: Option<String>,
}

impl Chunks for StatusPage {
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.html.take().map(String::into_bytes))
    }
}

impl Chunks for api::ProfilesPage {
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        api::ProfilesPage::next_chunk(self)
    }
}

/// Every profile as JSON, encoded from a snapshot a chunk at a time like `/metrics` (at
/// 10,000 profiles the document is megabytes). HEAD encodes nothing.
async fn profiles_reply(service: &Service, head: bool, query: api::Query) -> Reply {
    let body = if head {
        whole(Bytes::new())
    } else {
        let (state, clock) = (service.app.state.clone(), service.app.clock.clone());
        match streamed(service, move || {
            api::ProfilesPage::new(state.snapshot(), state.is_ready(), clock.now(), &query)
        })
        .await
        {
            Ok(body) => body,
            Err(_) => return busy(),
        }
    };
    let mut reply = Response::new(body);
    reply.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    no_sniff_no_store(reply.headers_mut());
    reply
}

/// Pages of the moment: never sniffed into another type, never cached.
fn no_sniff_no_store(headers: &mut http::HeaderMap) {
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::api::tests::state_with;

    fn service(state: Arc<State>, guard: Guard) -> Service {
        let metrics = Arc::new(Metrics::new(state.clone(), Clock::wall()));
        Service::new(Arc::new(App {
            state,
            metrics,
            guard: Arc::new(guard),
            clock: Clock::wall(),
        }))
    }

    /// Sends `request` through [`Service::serve_io`] on an in-memory stream; what came back.
    async fn exchange(service: &Service, request: &[u8]) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serving = tokio::spawn({
            let service = service.clone();
            async move {
                service
                    .serve_io(server, None, CancellationToken::new())
                    .await
            }
        });
        client.write_all(request).await.unwrap();
        client.shutdown().await.unwrap();
        let mut response = Vec::new();
        client.read_to_end(&mut response).await.unwrap();
        serving.await.unwrap();
        response
    }

    #[tokio::test]
    async fn serve_io_answers_requests_on_an_in_memory_stream() {
        let service = service(state_with(3), Guard::default());
        let response = exchange(&service, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.contains("eks_fargate_profile_up{"), "{text}");
        assert!(text.contains("fargate_health_monitor_build_info"), "{text}");
        let request = b"GET /api/v1/profiles HTTP/1.1\r\nHost: x\r\n\r\n";
        let response = exchange(&service, request).await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.contains("\"profile\":\"p-00002\""), "{text}");
        let request =
            b"GET /api/v1/profiles?cluster=stage&profile=p-00001&pretty HTTP/1.1\r\nHost: x\r\n\r\n";
        let response = exchange(&service, request).await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.contains("\"profile\": \"p-00001\""), "{text}");
        assert!(!text.contains("p-00002"), "{text}");
        let request = b"GET /api/v1/profiles?unhealthy=maybe HTTP/1.1\r\nHost: x\r\n\r\n";
        let response = exchange(&service, request).await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains("unhealthy must be true or false"), "{text}");
        let response = exchange(&service, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.contains("text/html"), "{text}");
        assert!(text.contains("id=\"unhealthy\""), "{text}");
        assert!(
            text.contains("content-security-policy: default-src 'none';"),
            "{text}"
        );
        assert!(text.contains("x-content-type-options: nosniff"), "{text}");
        let request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
        let response = exchange(&service, request).await;
        assert!(response.starts_with(b"HTTP/1.1 405"));

        // Garbage gets a 400 or a closed connection, never a panic.
        let response = exchange(&service, b"\x00\xff GET /\r\n\r\n\r\n").await;
        let text = String::from_utf8_lossy(&response);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{text}"
        );
    }

    /// A stream whose reads never end and whose writes never go out: a client that stopped.
    struct Stalled;

    impl AsyncRead for Stalled {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Stalled {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_never_takes_fails_after_the_write_timeout() {
        let mut stream = WriteTimeout::new(Stalled, WRITE_TIMEOUT);
        let started = tokio::time::Instant::now();
        let error = stream.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), WRITE_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_waits_for_a_render_permit_at_most_the_render_wait_then_503() {
        let service = service(state_with(3), Guard::default());
        let taken = service
            .renders
            .clone()
            .acquire_many_owned(RENDERS as u32)
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serving = tokio::spawn({
            let service = service.clone();
            async move {
                service
                    .serve_io(server, None, CancellationToken::new())
                    .await
            }
        });
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        client.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("retry-after: 5"),
            "{text}"
        );
        assert_eq!(started.elapsed(), RENDER_WAIT);
        drop(taken);
        serving.await.unwrap();
    }

    #[test]
    fn remembered_credentials_are_found_among_others_and_nothing_else_is() {
        let cache: Vec<Digest> = (0..VERIFIED_CACHE as u8).map(|i| [i; 32]).collect();
        assert!(remembered(&cache, &[7; 32]));
        assert!(!remembered(&cache, &[200; 32]));
        let mut almost = [7; 32];
        almost[31] = 8;
        assert!(!remembered(&cache, &almost));
        assert!(!remembered(&[], &[0; 32]));
    }

    #[test]
    fn check_slots_stop_at_the_limit_and_come_back_on_drop() {
        let checks = Arc::new(AtomicUsize::new(0));
        let first = CheckSlot::take(&checks, 2).unwrap();
        let _second = CheckSlot::take(&checks, 2).unwrap();
        assert!(CheckSlot::take(&checks, 2).is_none());
        drop(first);
        assert!(CheckSlot::take(&checks, 2).is_some());
    }
}
