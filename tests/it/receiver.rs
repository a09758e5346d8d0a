//! A webhook receiver on loopback for the tests that drive the binary: it keeps every request
//! and answers from a script (200 once the script is empty), and the simulator's helpers those
//! tests share.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fargate_health_monitor::model::ResourceKey;
use fargate_health_monitor::simulator::{self, Health, IssueSpec};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::support::eventually;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: BTreeMap<String, String>,
    pub raw: Vec<u8>,
    pub body: Value,
    pub answered: u16,
    pub at: std::time::Instant,
}

impl Received {
    pub fn kind(&self) -> &str {
        self.body["kind"].as_str().unwrap_or_default()
    }
    pub fn id(&self) -> &str {
        self.body["id"].as_str().unwrap_or_default()
    }
    /// The resource's name (a Fargate profile's, in these tests).
    pub fn profile(&self) -> &str {
        self.body["resource"]["name"].as_str().unwrap_or_default()
    }
}

/// A webhook receiver on loopback that answers from a script (200 once it is empty).
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
            script: Arc::default(),
        };
        let shared = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let shared = shared.clone();
                            async move {
                                let headers = request
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.as_str().to_owned(),
                                            v.to_str().unwrap_or_default().to_owned(),
                                        )
                                    })
                                    .collect();
                                let raw = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .unwrap()
                                    .to_bytes()
                                    .to_vec();
                                let answered =
                                    shared.script.lock().unwrap().pop_front().unwrap_or(200);
                                let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                                let at = std::time::Instant::now();
                                shared.got.lock().unwrap().push(Received {
                                    headers,
                                    raw,
                                    body,
                                    answered,
                                    at,
                                });
                                let mut response = http::Response::new(Full::new(Bytes::new()));
                                *response.status_mut() =
                                    http::StatusCode::from_u16(answered).unwrap();
                                if answered == 429 {
                                    let wait = http::HeaderValue::from_static("2");
                                    response.headers_mut().insert("retry-after", wait);
                                }
                                if (300..400).contains(&answered) {
                                    // Back to this receiver: a client that followed would
                                    // send the same event again.
                                    let to = format!("http://{}/moved", shared.addr);
                                    let to = http::HeaderValue::from_str(&to).unwrap();
                                    response.headers_mut().insert("location", to);
                                }
                                Ok::<_, Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn answer(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses);
    }

    /// Forgets what is left of the script: 200 from now on.
    pub fn answer_200(&self) {
        self.script.lock().unwrap().clear();
    }

    /// The delivered (2xx) requests of `kind` for `profile`.
    pub fn delivered(&self, kind: &str, profile: &str) -> Vec<Received> {
        self.got()
            .into_iter()
            .filter(|r| r.answered < 300 && r.kind() == kind && r.profile() == profile)
            .collect()
    }

    pub async fn until_delivered(&self, kind: &str, profile: &str) -> Received {
        eventually(30, &format!("{kind} of {profile} delivered"), || async {
            self.delivered(kind, profile).into_iter().next()
        })
        .await
    }

    /// The sequence numbers of the requests of `kind` for `profile` received so far.
    pub fn sequences(&self, kind: &str, profile: &str) -> Vec<u64> {
        self.got()
            .iter()
            .filter(|r| r.kind() == kind && r.profile() == profile)
            .filter_map(|r| r.body["sequence"].as_u64())
            .collect()
    }

    /// Waits until `count` requests of `kind` for `profile` have come.
    pub async fn until(&self, kind: &str, profile: &str, count: usize) {
        eventually(30, &format!("{count} {kind} of {profile}"), || async {
            (self.sequences(kind, profile).len() >= count).then_some(())
        })
        .await;
    }
}

/// A profile of the simulator's default account in `us-east-1/prod`.
pub fn key(profile: &str) -> ResourceKey {
    ResourceKey::fargate_profile(simulator::DEFAULT_ACCOUNT, "us-east-1", "prod", profile)
}

/// One issue of `code` on one resource.
pub fn issue(code: &str) -> Health {
    Health::Issues(vec![IssueSpec::new(
        code,
        &format!("{code} happened"),
        &["r-1", "r-2"],
    )])
}
