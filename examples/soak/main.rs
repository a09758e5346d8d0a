//! The fault soak: the daemon (`run`, a child process) against the simulator (in this process)
//! for N minutes, while a seeded random schedule opens and clears issue codes (an unknown one
//! included), changes statuses (CREATE_FAILED, DELETE_FAILED, an unknown one), deletes and
//! re-creates profiles, injects every simulator fault kind scoped to the account, a cluster or a
//! profile for a few seconds, makes the webhook receiver refuse for a while, and SIGKILLs (now
//! and then SIGTERMs) and restarts the daemon with its state file. Then the schedule stops, the
//! system settles, and [`check`] proves the delivery properties from the simulator's history and
//! what the receiver got.
//!
//!     cargo run --release --example soak -- --minutes 30 --seed 7 \
//!         [--binary target/release/fargate-health-monitor] [--settle 45] [--keep]
//!
//! Exits 0 when every check passes, 1 when one fails (each failure printed), 2 when the soak
//! cannot run. With `--keep` (or on a failure) its directory stays: config, state file, the
//! daemon's log and every delivery as JSON lines.

mod check;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitCode, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use clap::Parser;
use fargate_health_monitor::model::{ResourceKey, Timestamp};
use fargate_health_monitor::simulator::{
    self, Command, CommandError, Fault, FaultKind, Health, IssueSpec, Scope, Simulator,
};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use check::{Applied, Change, Delivery, History, Incarnation, Life};

const REGION: &str = "us-east-1";
const CLUSTERS: [&str; 2] = ["alpha", "beta"];
const PROFILES: [&str; 3] = ["p0", "p1", "p2"];
const CODES: [&str; 5] = [
    "AccessDenied",
    "ClusterUnreachable",
    "InternalFailure",
    "PodExecutionRoleAlreadyInUse",
    "SoakUnknownIssue",
];
const STATUSES: [&str; 6] = [
    "ACTIVE",
    "CREATING",
    "DELETING",
    "CREATE_FAILED",
    "DELETE_FAILED",
    "SOAK_UNKNOWN_STATUS",
];
/// The daemon's poll interval and per-call timeout.
const INTERVAL_SECS: u64 = 3;
const TIMEOUT_MS: i64 = 2_000;

#[derive(Debug, Parser)]
#[command(about = "Fault soak of fargate-health-monitor against the simulator")]
struct Args {
    /// How long the schedule runs.
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Seeds the schedule.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The daemon binary; default target/release/…, else target/debug/….
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Seconds to let the system settle after the schedule stops.
    #[arg(long, default_value_t = 45)]
    settle: u64,
    /// Keep the soak's directory even when every check passes.
    #[arg(long)]
    keep: bool,
    /// Self-test of the checker: the receiver answers 200 to the Nth `issue_*` event but leaves
    /// every delivery of it out of what the checker gets, so the run must fail.
    #[arg(long, value_name = "N")]
    forget_issue_event: Option<usize>,
}

/// splitmix64: small, seeded, good enough for a schedule.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn now_ms() -> i64 {
    Timestamp::from_system_time(SystemTime::now()).as_millis()
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    arrival_ms: i64,
    answered: u16,
    body: Value,
}

/// The webhook receiver on loopback: records every POST; answers `answer` (200, or 503/429
/// during an outage).
#[derive(Clone, Debug)]
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    answer: Arc<AtomicU16>,
    /// `--forget-issue-event`: which one, how many came so far, the id forgotten.
    forget: Option<usize>,
    issue_events: Arc<AtomicUsize>,
    forgotten: Arc<Mutex<Option<String>>>,
}

impl Receiver {
    async fn start(forget: Option<usize>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let receiver = Receiver {
            addr: listener.local_addr()?,
            got: Arc::default(),
            answer: Arc::new(AtomicU16::new(200)),
            forget,
            issue_events: Arc::default(),
            forgotten: Arc::default(),
        };
        let shared = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let shared = shared.clone();
                            async move {
                                let body = Limited::new(request.into_body(), 1 << 20)
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let answered = shared.answer.load(Ordering::SeqCst);
                                let got = Got {
                                    arrival_ms: now_ms(),
                                    answered,
                                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                };
                                if !shared.forgets(&got) {
                                    shared
                                        .got
                                        .lock()
                                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                                        .push(got);
                                }
                                let mut response = http::Response::new(Full::new(Bytes::new()));
                                *response.status_mut() = http::StatusCode::from_u16(answered)
                                    .unwrap_or(http::StatusCode::OK);
                                if answered == 429 {
                                    response
                                        .headers_mut()
                                        .insert("retry-after", http::HeaderValue::from_static("1"));
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
        Ok(receiver)
    }

    /// Whether this delivery is left out (`--forget-issue-event`).
    fn forgets(&self, got: &Got) -> bool {
        let Some(nth) = self.forget else {
            return false;
        };
        let id = got.body["id"].as_str().unwrap_or_default().to_owned();
        let mut forgotten = self
            .forgotten
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(forgotten) = forgotten.as_ref() {
            return *forgotten == id;
        }
        let kind = got.body["kind"].as_str().unwrap_or_default();
        if got.answered != 200 || !kind.starts_with("issue_") || kind == "issue_updated" {
            return false;
        }
        if self.issue_events.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            println!("self-test: forgetting {kind} {id}");
            *forgotten = Some(id);
            return true;
        }
        false
    }

    fn got(&self) -> Vec<Got> {
        self.got
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What the schedule did, for the figures.
#[derive(Debug, Default)]
struct Figures {
    steps: usize,
    opened: usize,
    cleared: usize,
    blips: usize,
    messages: usize,
    statuses: usize,
    deletions: usize,
    re_adds: usize,
    recreations: usize,
    faults: BTreeMap<String, usize>,
    outages: usize,
    sigkills: usize,
    sigterms: usize,
    restarts: usize,
    unexpected_exits: Vec<String>,
}

/// A fault in force until `until`.
#[derive(Clone, Debug)]
struct Active {
    scope: Scope,
    kind: FaultKind,
    until: Instant,
}

/// The daemon child process and its lives.
#[derive(Debug)]
struct Daemon {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    started_ms: i64,
    lives: Vec<Life>,
}

impl Daemon {
    fn start(&mut self) -> std::io::Result<()> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(log, "---- soak: daemon started at {} ----", now_ms())?;
        let child = Process::new(&self.binary)
            .args(["run", "--config"])
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env("AWS_ACCESS_KEY_ID", simulator::DEFAULT_ACCESS_KEY_ID)
            .env(
                "AWS_SECRET_ACCESS_KEY",
                simulator::DEFAULT_SECRET_ACCESS_KEY,
            )
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.started_ms = now_ms();
        self.child = Some(child);
        Ok(())
    }

    fn end_life(&mut self) {
        self.lives.push(Life {
            start_ms: self.started_ms,
            end_ms: now_ms(),
        });
    }

    fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.end_life();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to 20 s for the exit (SIGKILL after that); the exit code.
    async fn sigterm(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Process::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.end_life();
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                self.end_life();
                let _ = child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status when the daemon ended by itself.
    fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        self.end_life();
        Some(status.to_string())
    }
}

/// The soak's world: the simulator, what it holds, and the history of every change.
struct Soak {
    sim: Simulator,
    rng: Rng,
    applied: Vec<Applied>,
    /// Each profile's codes (with their message); `None` while deleted.
    codes: BTreeMap<ResourceKey, Option<BTreeMap<String, String>>>,
    active: Vec<Active>,
    /// Deleted profiles and when they come back.
    re_add: Vec<(ResourceKey, Instant)>,
    figures: Figures,
}

impl Soak {
    fn keys(&self) -> Vec<ResourceKey> {
        self.codes.keys().cloned().collect()
    }

    fn existing(&self) -> Vec<ResourceKey> {
        self.codes
            .iter()
            .filter(|(_, codes)| codes.is_some())
            .map(|(key, _)| key.clone())
            .collect()
    }

    fn health(&mut self, codes: &BTreeMap<String, String>) -> Health {
        if codes.is_empty() && self.rng.chance(50) {
            return Health::Absent;
        }
        Health::Issues(
            codes
                .iter()
                .map(|(code, message)| IssueSpec::new(code, message, &["r-1"]))
                .collect(),
        )
    }

    /// Applies a command and records the profile as it is now.
    fn apply_profile(&mut self, key: &ResourceKey, command: Command) -> Result<(), CommandError> {
        let position = self.sim.apply_logged(command)?;
        let at_ms = now_ms();
        let now = self.sim.with_world(|world| {
            world.profile(key).map(|p| Incarnation {
                arn: p.arn.clone(),
                status: p.status.clone(),
                codes: match &p.health {
                    Health::Absent => Default::default(),
                    Health::Issues(issues) => issues.iter().map(|i| i.code.clone()).collect(),
                },
            })
        });
        self.applied.push(Applied {
            position,
            at_ms,
            change: Change::Profile {
                key: key.clone(),
                now,
            },
        });
        Ok(())
    }

    /// The faults recorded as in force (what was added since the last clearing).
    fn faults_recorded(&self) -> Vec<(Scope, FaultKind)> {
        self.applied
            .iter()
            .rev()
            .find_map(|a| match &a.change {
                Change::Faults(f) => Some(f.clone()),
                Change::Profile { .. } => None,
            })
            .unwrap_or_default()
    }

    fn add_fault(&mut self, scope: Scope, kind: FaultKind) -> Result<(), CommandError> {
        let position = self.sim.apply_logged(Command::AddFault {
            fault: Fault {
                scope: scope.clone(),
                kind: kind.clone(),
                remaining: None,
                accepted: Default::default(),
            },
        })?;
        let mut faults = self.faults_recorded();
        faults.push((scope, kind));
        self.applied.push(Applied {
            position,
            at_ms: now_ms(),
            change: Change::Faults(faults),
        });
        Ok(())
    }

    /// Ends the faults whose time is up (all with `all`): clears them all and adds back the rest.
    fn expire_faults(&mut self, all: bool) -> Result<(), CommandError> {
        let now = Instant::now();
        if !self.active.iter().any(|a| all || a.until <= now) {
            return Ok(());
        }
        self.active.retain(|a| !all && a.until > now);
        // Cleared in the recorded history first, so the re-adds build on an empty set.
        let position = self.sim.apply_logged(Command::ClearFaults)?;
        self.applied.push(Applied {
            position,
            at_ms: now_ms(),
            change: Change::Faults(Vec::new()),
        });
        for active in self.active.clone() {
            self.add_fault(active.scope, active.kind)?;
        }
        Ok(())
    }

    fn set_codes(&mut self, key: &ResourceKey, codes: BTreeMap<String, String>) -> bool {
        let health = self.health(&codes);
        let command = Command::SetHealth {
            key: key.clone(),
            health,
        };
        if self.apply_profile(key, command).is_err() {
            return false;
        }
        self.codes.insert(key.clone(), Some(codes));
        true
    }

    fn codes_of(&self, key: &ResourceKey) -> Option<BTreeMap<String, String>> {
        self.codes.get(key).cloned().flatten()
    }

    /// One step of the schedule.
    async fn step(&mut self, receiver: &Receiver, outage_until: &mut Option<Instant>) {
        self.figures.steps += 1;
        let existing = self.existing();
        let roll = self.rng.range(0, 99);
        let Some(key) = (!existing.is_empty()).then(|| self.rng.pick(&existing).clone()) else {
            return;
        };
        let Some(mut codes) = self.codes_of(&key) else {
            return;
        };
        match roll {
            0..=39 => {
                // Half the time one of the present codes clears, else a random code toggles.
                let present: Vec<String> = codes.keys().cloned().collect();
                let code = match present.is_empty() || self.rng.chance(50) {
                    true => (*self.rng.pick(&CODES)).to_owned(),
                    false => self.rng.pick(&present).clone(),
                };
                if codes.remove(&code).is_some() {
                    self.figures.cleared += 1;
                } else {
                    codes.insert(code.clone(), format!("{code} on {}", key.name));
                    self.figures.opened += 1;
                }
                self.set_codes(&key, codes);
            }
            40..=44 => {
                // A blip too short for the daemon to have to see.
                let code = (*self.rng.pick(&CODES)).to_owned();
                if codes.contains_key(&code) {
                    return;
                }
                let before = codes.clone();
                codes.insert(code.clone(), format!("{code} blip"));
                if self.set_codes(&key, codes) {
                    self.figures.blips += 1;
                    let millis = self.rng.range(50, 900);
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    self.set_codes(&key, before);
                }
            }
            45..=49 => {
                let Some(code) = codes.keys().next().cloned() else {
                    return;
                };
                let n = self.rng.range(1, 1000);
                codes.insert(code.clone(), format!("{code} on {} (#{n})", key.name));
                if self.set_codes(&key, codes) {
                    self.figures.messages += 1;
                }
            }
            50..=59 => {
                let status = (*self.rng.pick(&STATUSES)).to_owned();
                let command = Command::SetStatus {
                    key: key.clone(),
                    status,
                };
                if self.apply_profile(&key, command).is_ok() {
                    self.figures.statuses += 1;
                }
            }
            60..=63 => {
                if existing.len() < 4 {
                    return;
                }
                let command = Command::DeleteProfile { key: key.clone() };
                if self.apply_profile(&key, command).is_ok() {
                    self.figures.deletions += 1;
                    self.codes.insert(key.clone(), None);
                    let back = Instant::now() + Duration::from_secs(self.rng.range(4, 25));
                    self.re_add.push((key, back));
                }
            }
            64..=67 => {
                let command = Command::RecreateProfile { key: key.clone() };
                if self.apply_profile(&key, command).is_ok() {
                    self.figures.recreations += 1;
                    self.codes.insert(key, Some(BTreeMap::new()));
                }
            }
            68..=92 => {
                let kind = match self.rng.range(0, 6) {
                    0 => FaultKind::Throttle,
                    1 => FaultKind::ServerError,
                    2 => FaultKind::AccessDenied,
                    3 => FaultKind::Malformed,
                    4 => FaultKind::Delay { millis: 300 },
                    5 => FaultKind::Delay {
                        millis: 2_500 + TIMEOUT_MS as u64,
                    },
                    _ => FaultKind::ThrottleAbove { per_second: 1 },
                };
                let scope = match self.rng.range(0, 2) {
                    0 => Scope {
                        account_id: Some(key.account_id.clone()),
                        ..Scope::all()
                    },
                    1 => Scope {
                        account_id: Some(key.account_id.clone()),
                        region: Some(key.region.clone()),
                        cluster: Some(key.cluster.clone()),
                        ..Scope::all()
                    },
                    _ => Scope::profile(&key),
                };
                let name = match &kind {
                    FaultKind::Delay { millis } if *millis >= TIMEOUT_MS as u64 => {
                        "delay beyond the timeout".to_owned()
                    }
                    FaultKind::Delay { .. } => "delay".to_owned(),
                    FaultKind::ThrottleAbove { .. } => "throttle_above".to_owned(),
                    other => format!("{other:?}").to_lowercase(),
                };
                let until = Instant::now() + Duration::from_secs(self.rng.range(2, 15));
                if self.add_fault(scope.clone(), kind.clone()).is_ok() {
                    *self.figures.faults.entry(name).or_default() += 1;
                    self.active.push(Active { scope, kind, until });
                }
            }
            _ => {
                if outage_until.is_none() {
                    let status = if self.rng.chance(50) { 503 } else { 429 };
                    receiver.answer.store(status, Ordering::SeqCst);
                    *outage_until =
                        Some(Instant::now() + Duration::from_secs(self.rng.range(2, 10)));
                    self.figures.outages += 1;
                }
            }
        }
    }

    /// Brings back the deleted profiles whose time has come (all with `all`).
    fn re_add_due(&mut self, all: bool) {
        let now = Instant::now();
        let due: Vec<ResourceKey> = self
            .re_add
            .iter()
            .filter(|(_, at)| all || *at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        self.re_add.retain(|(key, _)| !due.contains(key));
        for key in due {
            let mut codes = BTreeMap::new();
            if self.rng.chance(50) {
                let code = (*self.rng.pick(&CODES)).to_owned();
                codes.insert(code.clone(), format!("{code} on {}", key.name));
            }
            let health = self.health(&codes);
            let command = Command::AddProfile {
                key: key.clone(),
                status: "ACTIVE".to_owned(),
                health,
            };
            if self.apply_profile(&key, command).is_ok() {
                self.figures.re_adds += 1;
                self.codes.insert(key, Some(codes));
            }
        }
    }
}

fn config_text(
    dir: &Path,
    simulator: &Simulator,
    receiver: SocketAddr,
    listen: SocketAddr,
) -> String {
    let url = simulator.endpoint_url();
    let statuses: Vec<String> = STATUSES.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        r#"[server]
listen = "{listen}"
[state]
path = "{state}"
[poll]
interval = "{INTERVAL_SECS}s"
discovery_interval = "{INTERVAL_SECS}s"
timeout = "{TIMEOUT_MS}ms"
max_requests_per_second = 50

[[targets]]
region = "{REGION}"
cluster = "*"
labels = {{ env = "soak" }}
endpoint_url = "{url}"
sts_endpoint_url = "{url}"

[[sinks]]
name = "soak"
type = "webhook"
url = "http://{receiver}/hook"
events = ["issue_opened", "issue_updated", "issue_resolved", "status_changed", "profile_deleted"]
statuses = [{statuses}]
retry_initial = "200ms"
retry_max = "2s"
"#,
        state = dir.join("state.json").display(),
        statuses = statuses.join(", "),
    )
}

fn default_binary() -> PathBuf {
    let release = PathBuf::from("target/release/fargate-health-monitor");
    if release.is_file() {
        release
    } else {
        PathBuf::from("target/debug/fargate-health-monitor")
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match soak(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("soak: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn soak(args: &Args) -> anyhow::Result<bool> {
    let binary = args.binary.clone().unwrap_or_else(default_binary);
    anyhow::ensure!(
        binary.is_file(),
        "no daemon binary at {} (build it, or pass --binary)",
        binary.display()
    );
    let dir = tempfile::Builder::new().prefix("fhm-soak-").tempdir()?;
    let simulator = Simulator::start().await?;
    let receiver = Receiver::start(args.forget_issue_event).await?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        config_text(dir.path(), &simulator, receiver.addr, listen),
    )?;

    let mut soak = Soak {
        sim: simulator,
        rng: Rng(args.seed),
        applied: Vec::new(),
        codes: BTreeMap::new(),
        active: Vec::new(),
        re_add: Vec::new(),
        figures: Figures::default(),
    };
    // Faults start empty.
    soak.applied.push(Applied {
        position: 0,
        at_ms: now_ms(),
        change: Change::Faults(Vec::new()),
    });
    for cluster in CLUSTERS {
        for profile in PROFILES {
            let key =
                ResourceKey::fargate_profile(simulator::DEFAULT_ACCOUNT, REGION, cluster, profile);
            let mut codes = BTreeMap::new();
            if soak.rng.chance(40) {
                let code = (*soak.rng.pick(&CODES)).to_owned();
                codes.insert(code.clone(), format!("{code} on {profile}"));
            }
            let health = soak.health(&codes);
            soak.apply_profile(
                &key,
                Command::AddProfile {
                    key: key.clone(),
                    status: "ACTIVE".to_owned(),
                    health,
                },
            )?;
            soak.codes.insert(key, Some(codes));
        }
    }

    let mut daemon = Daemon {
        binary: binary.clone(),
        config,
        log: dir.path().join("daemon.log"),
        child: None,
        started_ms: 0,
        lives: Vec::new(),
    };
    println!(
        "fault soak: seed {}, {} minutes, {} profiles, interval {INTERVAL_SECS}s, daemon {}, dir {}",
        args.seed,
        args.minutes,
        soak.keys().len(),
        binary.display(),
        dir.path().display()
    );
    daemon.start()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.minutes.max(0.0) * 60.0);
    let mut next_kill = Instant::now() + Duration::from_secs(soak.rng.range(15, 60));
    let mut restart_at: Option<Instant> = None;
    let mut outage_until: Option<Instant> = None;
    let mut next_report = Instant::now() + Duration::from_secs(60);

    while Instant::now() < deadline {
        let pause = soak.rng.range(300, 2_500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let now = Instant::now();
        if let Some(status) = daemon.exited() {
            println!("daemon exited by itself: {status}");
            soak.figures.unexpected_exits.push(format!(
                "{status} after {:.0} s",
                started.elapsed().as_secs_f64()
            ));
            restart_at = Some(now + Duration::from_secs(1));
        }
        if restart_at.is_some_and(|at| at <= now) {
            daemon.start()?;
            soak.figures.restarts += 1;
            restart_at = None;
            next_kill = now + Duration::from_secs(soak.rng.range(10, 60));
        }
        if daemon.child.is_some() && now >= next_kill {
            if soak.rng.chance(80) {
                daemon.sigkill();
                soak.figures.sigkills += 1;
            } else {
                let code = daemon.sigterm().await;
                soak.figures.sigterms += 1;
                if code != Some(0) {
                    soak.figures
                        .unexpected_exits
                        .push(format!("SIGTERM gave exit {code:?}"));
                }
            }
            restart_at = Some(Instant::now() + Duration::from_millis(soak.rng.range(200, 5_000)));
        }
        if outage_until.is_some_and(|until| until <= now) {
            receiver.answer.store(200, Ordering::SeqCst);
            outage_until = None;
        }
        soak.expire_faults(false)?;
        soak.re_add_due(false);
        soak.step(&receiver, &mut outage_until).await;
        if now >= next_report {
            next_report = now + Duration::from_secs(60);
            println!(
                "  {:.0} min: {} steps, {} kills, {} POSTs",
                started.elapsed().as_secs_f64() / 60.0,
                soak.figures.steps,
                soak.figures.sigkills + soak.figures.sigterms,
                receiver.got().len()
            );
        }
    }

    // Settle: no faults, the receiver answers, every profile back, the daemon up.
    soak.expire_faults(true)?;
    soak.re_add_due(true);
    receiver.answer.store(200, Ordering::SeqCst);
    if daemon.child.is_none() {
        daemon.start()?;
        soak.figures.restarts += 1;
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    if let Some(status) = daemon.exited() {
        soak.figures
            .unexpected_exits
            .push(format!("{status} while settling"));
    }
    let code = daemon.sigterm().await;
    if code.is_some_and(|c| c != 0) {
        soak.figures
            .unexpected_exits
            .push(format!("final SIGTERM gave exit {code:?}"));
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;

    let requests = soak.sim.requests();
    let got = receiver.got();
    let deliveries: Vec<Delivery> = got
        .iter()
        .filter(|g| (200..300).contains(&g.answered))
        .map(|g| Delivery {
            arrival_ms: g.arrival_ms,
            body: g.body.clone(),
        })
        .collect();
    let log_full = requests.len() >= 200_000;
    let history = History {
        timeout_ms: TIMEOUT_MS,
        applied: std::mem::take(&mut soak.applied),
        requests,
        lives: daemon.lives.clone(),
    };
    let report = check::check(&history, &deliveries);

    let f = &soak.figures;
    println!();
    println!(
        "ran {minutes:.1} minutes ({} s settling), seed {}",
        args.settle, args.seed
    );
    println!(
        "schedule: {} steps: {} codes opened, {} cleared, {} blips, {} message changes, \
         {} status changes, {} deletions ({} re-added), {} re-creations, {} receiver outages",
        f.steps,
        f.opened,
        f.cleared,
        f.blips,
        f.messages,
        f.statuses,
        f.deletions,
        f.re_adds,
        f.recreations,
        f.outages
    );
    let faults: Vec<String> = f.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "faults injected: {} ({})",
        f.faults.values().sum::<usize>(),
        faults.join(", ")
    );
    println!(
        "daemon: {} SIGKILL, {} SIGTERM, {} restarts, {} lives, {} unexpected exits",
        f.sigkills,
        f.sigterms,
        f.restarts,
        daemon.lives.len(),
        f.unexpected_exits.len()
    );
    println!(
        "simulator: {} requests, {} successful describes, {} failed",
        history.requests.len(),
        report.describes_ok,
        report.describes_failed
    );
    let refused = got.len() - deliveries.len();
    println!(
        "receiver: {} POSTs, {} refused (outages), {} delivered, {} duplicate deliveries (same id)",
        got.len(),
        refused,
        report.deliveries,
        report.duplicates
    );
    let events: Vec<String> = report
        .events
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("events delivered (distinct ids): {}", events.join(", "));
    println!("checks:");
    let mut failed = 0;
    for outcome in &report.outcomes {
        let verdict = if outcome.failures.is_empty() {
            "pass"
        } else {
            "FAIL"
        };
        println!(
            "  {verdict} {} ({} checked, {} failed)",
            outcome.name,
            outcome.checked,
            outcome.failures.len()
        );
        for failure in &outcome.failures {
            println!("      {failure}");
        }
        failed += outcome.failures.len();
    }
    let exits = if f.unexpected_exits.is_empty() {
        "pass"
    } else {
        "FAIL"
    };
    println!(
        "  {exits} the daemon never exits by itself ({} lives)",
        daemon.lives.len()
    );
    for exit in &f.unexpected_exits {
        println!("      {exit}");
    }
    failed += f.unexpected_exits.len();
    if log_full {
        println!(
            "  FAIL the simulator's request log reached its limit: the run is too long to check"
        );
        failed += 1;
    }
    let passed = failed == 0;
    println!(
        "{}: {} checks failed",
        if passed { "PASSED" } else { "FAILED" },
        failed
    );

    let mut jsonl = String::new();
    for g in &got {
        jsonl.push_str(
            &serde_json::json!({"arrival_ms": g.arrival_ms, "answered": g.answered, "body": g.body})
                .to_string(),
        );
        jsonl.push('\n');
    }
    std::fs::write(dir.path().join("deliveries.jsonl"), jsonl)?;
    let mut changes = String::new();
    for a in &history.applied {
        changes.push_str(&format!("{} {} {:?}\n", a.position, a.at_ms, a.change));
    }
    std::fs::write(dir.path().join("changes.txt"), changes)?;
    let mut log = String::new();
    for (i, r) in history.requests.iter().enumerate() {
        log.push_str(&format!(
            "{i} {} {:?} {} {} {} {}\n",
            r.at.as_millis(),
            r.operation,
            r.cluster.as_deref().unwrap_or("-"),
            r.profile.as_deref().unwrap_or("-"),
            r.status,
            r.account_id.as_deref().unwrap_or("-")
        ));
    }
    std::fs::write(dir.path().join("requests.txt"), log)?;
    if args.keep || !passed {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    Ok(passed)
}
