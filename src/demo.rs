//! `demo`: the daemon against the built-in simulated EKS and STS, with no AWS account and no
//! config file, and a scripted story over the first two minutes so that the metrics, the JSON
//! API and the event log change while a newcomer watches.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::{self, Config, Environment};
use crate::daemon::{Daemon, StartError};
use crate::eks::AwsSettings;
use crate::model::{Kind, Operation, ResourceKey, Status};
use crate::page::escape;
use crate::simulator::{
    self, Command, CommandError, Fault, FaultKind, Health, IssueSpec, Population, Scope, Simulator,
};

/// The region of the demo's world.
const REGION: &str = "us-east-1";

/// The simulated world: two accounts, three clusters each, with four profiles, two node groups
/// and two add-ons per cluster.
pub fn population() -> Population {
    Population {
        accounts: 2,
        regions: vec![REGION.to_owned()],
        clusters_per_region: 3,
        profiles_per_cluster: 4,
        nodegroups_per_cluster: 2,
        addons_per_cluster: 2,
        unhealthy_share: 0.0,
    }
}

/// The daemon's config for a simulator at `endpoint`: short intervals, one target per account
/// (the second reached through its reader role), the state file at `state`.
pub fn config_text(endpoint: &str, state: &Path) -> String {
    format!(
        r#"[state]
path = "{state}"

[poll]
interval = "5s"
discovery_interval = "20s"
timeout = "2s"
concurrency = 8
max_requests_per_second = 20

[[targets]]
region = "{REGION}"
cluster = "*"
profiles = ["*"]
labels = {{ env = "demo" }}
endpoint_url = "{endpoint}"
sts_endpoint_url = "{endpoint}"

[[targets]]
region = "{REGION}"
cluster = "*"
profiles = ["*"]
labels = {{ env = "demo-2" }}
role_arn = "{role}"
endpoint_url = "{endpoint}"
sts_endpoint_url = "{endpoint}"
"#,
        role = simulator::reader_role(&simulator::account_id(1)),
        state = state
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\""),
    )
}

/// One step of the story: when, what a newcomer should look for, and the changes.
#[derive(Debug)]
pub struct Step {
    pub at: Duration,
    pub says: String,
    pub commands: Vec<Command>,
    /// What shows in `/metrics` and on the status page once the daemon has seen the change.
    pub claim: Claim,
}

/// A step's claim, as `/metrics` and the status page show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Each of these resources has an open issue with this code.
    IssueOpen {
        keys: Vec<ResourceKey>,
        code: String,
    },
    /// None of these resources has an open issue with this code any more.
    IssueResolved {
        keys: Vec<ResourceKey>,
        code: String,
    },
    /// The resource is in this status (listed under "Failed statuses" when its kind alerts on
    /// it, and not listed there otherwise).
    Status { key: ResourceKey, status: String },
    /// Every one of these claims holds.
    All(Vec<Claim>),
    /// The profile's ARN is not the one it had when the step began: a new incarnation.
    NewIncarnation { key: ResourceKey },
    /// Describes in the account were throttled, and its lane on the page shows it.
    Throttled { account_id: String },
    /// Throttling is over: the account's lane no longer backs off, and every profile is up.
    Unthrottled { account_id: String },
}

impl Claim {
    /// Whether the claim holds in a scrape of `/metrics` and the status page; `before` is the
    /// scrape from when the step began.
    pub fn holds(&self, before: &str, metrics: &str, page: &str) -> bool {
        match self {
            Claim::IssueOpen { keys, code } => keys.iter().all(|key| {
                has_series(
                    metrics,
                    &family(key, "health_issues"),
                    key,
                    &[("code", code)],
                    "1",
                ) && section_has_row(
                    page,
                    "unhealthy",
                    key,
                    &[&format!("<code>{}</code>", escape(code))],
                )
            }),
            Claim::IssueResolved { keys, code } => keys.iter().all(|key| {
                !has_series(
                    metrics,
                    &family(key, "health_issues"),
                    key,
                    &[("code", code)],
                    "1",
                ) && !section_has_row(
                    page,
                    "unhealthy",
                    key,
                    &[&format!("<code>{}</code>", escape(code))],
                )
            }),
            Claim::Status { key, status } => {
                let listed = section_has_row(page, "failed", key, &[]);
                let alerted = key.kind.is_alert_worthy(&Status::from_wire(status));
                has_series(
                    metrics,
                    &family(key, "status"),
                    key,
                    &[("status", status)],
                    "1",
                ) && listed == alerted
                    && (!alerted
                        || section_has_row(
                            page,
                            "failed",
                            key,
                            &[&format!(">{}<", escape(status))],
                        ))
            }
            Claim::All(claims) => claims.iter().all(|c| c.holds(before, metrics, page)),
            Claim::NewIncarnation { key } => match (arn_of(before, key), arn_of(metrics, key)) {
                (Some(old), Some(new)) => old != new,
                _ => false,
            },
            Claim::Throttled { account_id } => {
                metrics.lines().any(|line| {
                    line.starts_with("fargate_health_monitor_api_requests_total{")
                        && line.contains("outcome=\"throttled\"")
                        && line.rsplit(' ').next().is_some_and(|n| n != "0")
                }) && lane_row(page, account_id).is_some_and(|row| {
                    row.contains("backing off") || !row.contains("<td>0% (") && row.contains("% (")
                })
            }
            Claim::Unthrottled { account_id } => {
                // `before` is the scrape of QUIET ago (see `compared_with`): no throttled
                // answer since, the lane not throttled, every profile up.
                throttled_total(before) == throttled_total(metrics)
                    && lane_row(page, account_id)
                        .is_some_and(|row| !row.contains("throttled by AWS"))
                    && !metrics.lines().any(|line| {
                        line.starts_with("eks_fargate_profile_up{")
                            && line.contains(&format!("aws_account_id=\"{account_id}\""))
                            && line.ends_with(" 0")
                    })
            }
        }
    }

    /// What [`Claim::holds`] compares with: the scrape from when the step began, or for a
    /// claim that something stopped, one from [`QUIET`] ago.
    fn compared_with(&self) -> Compare {
        match self {
            Claim::Unthrottled { .. } => Compare::Ago(QUIET),
            _ => Compare::StepStart,
        }
    }

    /// Where the claim shows.
    pub fn shows_in(&self) -> &'static str {
        match self {
            Claim::NewIncarnation { .. } => "in /metrics (eks_fargate_profile_info's arn)",
            _ => "in /metrics and on the status page",
        }
    }
}

/// How long "it stopped" must hold: two of the demo's poll intervals.
const QUIET: Duration = Duration::from_secs(10);

enum Compare {
    StepStart,
    Ago(Duration),
}

/// Throttled AWS answers so far, over every operation and region.
fn throttled_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("fargate_health_monitor_api_requests_total{")
                && l.contains("outcome=\"throttled\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A series of `name` for `key` with these extra labels and this value.
fn has_series(
    metrics: &str,
    name: &str,
    key: &ResourceKey,
    labels: &[(&str, &str)],
    value: &str,
) -> bool {
    metrics.lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{'))
            && is_of(line, key)
            && labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
            && line.rsplit(' ').next() == Some(value)
    })
}

/// The name of the key's kind's family with this suffix: `eks_nodegroup_status`.
fn family(key: &ResourceKey, suffix: &str) -> String {
    format!("{}_{suffix}", key.kind.spec().metric_prefix)
}

fn is_of(line: &str, key: &ResourceKey) -> bool {
    let name = key.kind.spec().name_label.map(|label| (label, &key.name));
    [
        ("aws_account_id", &key.account_id),
        ("aws_region", &key.region),
        ("eks_cluster", &key.cluster),
    ]
    .into_iter()
    .chain(name)
    .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
}

/// The `arn` label of the profile's info series.
fn arn_of<'a>(metrics: &'a str, key: &ResourceKey) -> Option<&'a str> {
    metrics
        .lines()
        .find(|line| line.starts_with("eks_fargate_profile_info{") && is_of(line, key))
        .and_then(|line| line.split("arn=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
}

/// The HTML of one section of the status page.
fn section<'a>(page: &'a str, id: &str) -> &'a str {
    let Some(start) = page.find(&format!("<section id=\"{id}\">")) else {
        return "";
    };
    let rest = &page[start..];
    &rest[..rest.find("</section>").unwrap_or(rest.len())]
}

/// Whether a row of the section names the profile (cluster and profile cells) and holds each
/// of `cells`.
fn section_has_row(page: &str, id: &str, key: &ResourceKey, cells: &[&str]) -> bool {
    let account = format!("<td>{}</td>", escape(&key.account_id));
    let cluster = format!("<td>{}</td>", escape(&key.cluster));
    let name = format!("<td class=\"name\">{}</td>", escape(&key.name));
    section(page, id).split("<tr").any(|row| {
        row.contains(&account)
            && row.contains(&cluster)
            && row.contains(&name)
            && cells.iter().all(|cell| row.contains(cell))
    })
}

/// The account's row in the lanes section.
fn lane_row<'a>(page: &'a str, account_id: &str) -> Option<&'a str> {
    let account = format!("<td>{}</td>", escape(account_id));
    section(page, "lanes")
        .split("<tr")
        .find(|row| row.starts_with('>') && row.contains(&account))
}

fn key(account: usize, cluster: usize, profile: usize) -> ResourceKey {
    ResourceKey::fargate_profile(
        simulator::account_id(account),
        REGION,
        format!("cluster-{cluster:04}"),
        format!("profile-{profile:02}"),
    )
}

/// A resource of `kind` in the demo's world, as the simulator names them (`ng-01`, `coredns`).
fn resource(kind: Kind, account: usize, cluster: usize, name: &str) -> ResourceKey {
    ResourceKey::new(
        kind,
        simulator::account_id(account),
        REGION,
        format!("cluster-{cluster:04}"),
        name,
    )
}

fn issue(code: &str, message: &str, resources: &[&str]) -> Health {
    Health::Issues(vec![IssueSpec::new(code, message, resources)])
}

/// The story of the first two minutes. Each step says what changes and where to see it; EKS's
/// throttling lasts 15 seconds, as its own does.
pub fn story() -> Vec<Step> {
    let secs = Duration::from_secs;
    let denied = key(0, 0, 1);
    let unreachable: Vec<ResourceKey> = (0..4).map(|p| key(1, 1, p)).collect();
    let cluster = format!(
        "{}/{}/{}",
        unreachable[0].account_id, unreachable[0].region, unreachable[0].cluster
    );
    let failing = key(0, 2, 2);
    let recreated = key(1, 0, 0);
    let throttled = simulator::account_id(0);
    let nodegroup = resource(Kind::NODEGROUP, 0, 1, "ng-01");
    let addon = resource(Kind::ADDON, 1, 2, "coredns");
    let launch_failures = "AsgInstanceLaunchFailures";
    let replicas = "InsufficientNumberOfReplicas";
    let clear = |keys: &[ResourceKey]| {
        keys.iter()
            .map(|key| Command::SetHealth {
                key: key.clone(),
                health: Health::Issues(Vec::new()),
            })
            .collect()
    };
    vec![
        Step {
            at: secs(10),
            says: format!(
                "AccessDenied opens on {denied} (page: Open issues; /metrics: eks_fargate_profile_health_issues)"
            ),
            commands: vec![Command::SetHealth {
                key: denied.clone(),
                health: issue(
                    "AccessDenied",
                    "The pod execution role cannot be assumed by EKS",
                    &["arn:aws:iam::111122223333:role/demo-pod-execution"],
                ),
            }],
            claim: Claim::IssueOpen {
                keys: vec![denied.clone()],
                code: "AccessDenied".into(),
            },
        },
        Step {
            at: secs(20),
            says: format!(
                "ClusterUnreachable opens on every profile of {cluster} (page: Open issues, four rows)"
            ),
            commands: unreachable
                .iter()
                .map(|key| Command::SetHealth {
                    key: key.clone(),
                    health: issue(
                        "ClusterUnreachable",
                        "The cluster's API server cannot be reached",
                        &["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
                    ),
                })
                .collect(),
            claim: Claim::IssueOpen {
                keys: unreachable.clone(),
                code: "ClusterUnreachable".into(),
            },
        },
        Step {
            at: secs(28),
            says: format!(
                "{nodegroup} goes DEGRADED with {launch_failures} (page: Failed statuses and Open issues; /metrics: eks_nodegroup_status, eks_nodegroup_health_issues)"
            ),
            commands: vec![
                Command::SetResourceHealth {
                    key: nodegroup.clone(),
                    health: issue(
                        launch_failures,
                        "InsufficientInstanceCapacity - We currently do not have sufficient m5.large capacity in us-east-1a. Launching EC2 instance failed.",
                        &["eks-ng-01-4ac5d2f1-0e4b-6b6a-7a1f-3c1d9b2e8f00"],
                    ),
                },
                Command::SetResourceStatus {
                    key: nodegroup.clone(),
                    status: "DEGRADED".into(),
                },
            ],
            claim: Claim::All(vec![
                Claim::Status {
                    key: nodegroup.clone(),
                    status: "DEGRADED".into(),
                },
                Claim::IssueOpen {
                    keys: vec![nodegroup.clone()],
                    code: launch_failures.into(),
                },
            ]),
        },
        Step {
            at: secs(35),
            says: format!(
                "{failing} goes CREATE_FAILED (page: Failed statuses; /metrics: eks_fargate_profile_status)"
            ),
            commands: vec![Command::SetStatus {
                key: failing.clone(),
                status: "CREATE_FAILED".to_owned(),
            }],
            claim: Claim::Status {
                key: failing,
                status: "CREATE_FAILED".into(),
            },
        },
        Step {
            at: secs(42),
            says: format!(
                "{addon} reports {replicas} (page: Open issues; /metrics: eks_addon_health_issues)"
            ),
            commands: vec![Command::SetResourceHealth {
                key: addon.clone(),
                health: issue(
                    replicas,
                    "The add-on is unhealthy because it doesn't have the desired number of replicas.",
                    &["coredns"],
                ),
            }],
            claim: Claim::IssueOpen {
                keys: vec![addon.clone()],
                code: replicas.into(),
            },
        },
        Step {
            at: secs(50),
            says: format!(
                "AccessDenied is fixed on {denied}: it resolves after two clean polls (about 10 s)"
            ),
            commands: clear(std::slice::from_ref(&denied)),
            claim: Claim::IssueResolved {
                keys: vec![denied],
                code: "AccessDenied".into(),
            },
        },
        Step {
            at: secs(65),
            says: format!(
                "{recreated} is deleted and created again: the old incarnation ends (resource_deleted) and a new one appears (a new arn in eks_fargate_profile_info)"
            ),
            commands: vec![Command::RecreateProfile {
                key: recreated.clone(),
            }],
            claim: Claim::NewIncarnation { key: recreated },
        },
        Step {
            at: secs(72),
            says: format!(
                "{addon} has its replicas again: {replicas} resolves after two clean polls"
            ),
            commands: vec![Command::SetResourceHealth {
                key: addon.clone(),
                health: Health::Issues(Vec::new()),
            }],
            claim: Claim::IssueResolved {
                keys: vec![addon],
                code: replicas.into(),
            },
        },
        Step {
            at: secs(80),
            says: format!(
                "EKS throttles account {throttled} above 1 describe per second: its lane backs off and lowers its rate (page: AWS lanes; /metrics: outcome=\"throttled\"); known issues stay"
            ),
            commands: vec![Command::AddFault {
                fault: Fault {
                    scope: Scope {
                        account_id: Some(throttled.clone()),
                        operations: vec![Operation::DescribeFargateProfile],
                        ..Scope::all()
                    },
                    kind: FaultKind::ThrottleAbove { per_second: 1 },
                    remaining: None,
                    accepted: Default::default(),
                },
            }],
            claim: Claim::Throttled {
                account_id: throttled.clone(),
            },
        },
        Step {
            at: secs(95),
            says: format!(
                "EKS stops throttling account {throttled}: its lane stops backing off and its rate climbs back over a minute; every profile is up"
            ),
            commands: vec![Command::ClearFaults],
            claim: Claim::Unthrottled {
                account_id: throttled,
            },
        },
        Step {
            at: secs(105),
            says: format!(
                "ClusterUnreachable clears on {cluster}: its four episodes resolve after two clean polls"
            ),
            commands: clear(&unreachable),
            claim: Claim::IssueResolved {
                keys: unreachable,
                code: "ClusterUnreachable".into(),
            },
        },
        Step {
            at: secs(112),
            says: format!(
                "{nodegroup} launches its instances again: ACTIVE, and {launch_failures} resolves after two clean polls"
            ),
            commands: vec![
                Command::SetResourceHealth {
                    key: nodegroup.clone(),
                    health: Health::Issues(Vec::new()),
                },
                Command::SetResourceStatus {
                    key: nodegroup.clone(),
                    status: "ACTIVE".into(),
                },
            ],
            claim: Claim::All(vec![
                Claim::Status {
                    key: nodegroup.clone(),
                    status: "ACTIVE".into(),
                },
                Claim::IssueResolved {
                    keys: vec![nodegroup],
                    code: launch_failures.into(),
                },
            ]),
        },
    ]
}

/// The daemon's config for the demo, parsed and validated like any other.
pub fn config(endpoint: &str, state: &Path) -> Result<Config, config::ConfigError> {
    struct NoVariables;
    impl Environment for NoVariables {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
        fn read_file(&self, path: &Path) -> std::io::Result<String> {
            std::fs::read_to_string(path)
        }
    }
    let text = config_text(endpoint, state);
    config::parse(&text, Path::new("<demo>"), &NoVariables).map(|loaded| loaded.config)
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulator's ports could not be bound.
    #[error("cannot start the simulated EKS on loopback: {0}")]
    Simulator(std::io::Error),
    /// The simulated world refused the demo's population: a bug.
    #[error("cannot build the simulated world: {0}")]
    World(CommandError),
    /// The temporary directory of the state file could not be created.
    #[error("cannot create {}: {error}", path.display())]
    StateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The demo's own config did not validate: a bug.
    #[error("the demo's own config is invalid: {0}")]
    Config(config::ConfigError),
    /// The daemon could not start: its listen address, most likely.
    #[error("{0}; pass another address, e.g. demo --listen 127.0.0.1:0")]
    Start(StartError),
}

/// Runs the demo until `stop` resolves.
pub async fn run(
    listen: SocketAddr,
    fast: bool,
    stop: impl Future<Output = ()>,
    out: &mut (dyn Write + Send),
) -> Result<(), DemoError> {
    let simulator = Simulator::start().await.map_err(DemoError::Simulator)?;
    simulator
        .populate(&population())
        .map_err(DemoError::World)?;
    // A fresh state file per run, removed at the end: the demo starts from scratch each time.
    let state_dir = std::env::temp_dir().join(format!(
        "fargate-health-monitor-demo-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&state_dir).map_err(|error| DemoError::StateDir {
        path: state_dir.clone(),
        error,
    })?;
    let _cleanup = RemoveOnDrop(state_dir.clone());
    let config = config(&simulator.endpoint_url(), &state_dir.join("state.json"))
        .map_err(DemoError::Config)?;
    let aws = AwsSettings {
        static_credentials: Some(simulator::credentials()),
        ..AwsSettings::new(config.poll.timeout)
    };
    let clock = Clock::wall();
    let daemon = Daemon::start(&config, aws, Some(listen), clock.clone())
        .await
        .map_err(DemoError::Start)?;
    let base = format!("http://{}", daemon.addr());
    let population = population();
    let _ = writeln!(
        out,
        "fargate-health-monitor demo: {clusters} simulated EKS clusters in {accounts} accounts with {profiles} Fargate profiles, {nodegroups} node groups and {addons} add-ons, polled every 5s\n\
         \n  {base}/                   status page\n  {base}/metrics            Prometheus metrics\n  {base}/api/v1/resources   every resource as JSON\n\
         \nsimulated EKS and STS at {aws} (control API at {control})\n\
         events appear in the log below as they happen; the story runs for two minutes (with --fast, as fast as each step shows) and each step says where to look; the status page reloads every 10 s; stop with Ctrl-C\n",
        clusters = population.clusters(),
        profiles = population.profiles(),
        nodegroups = population.nodegroups(),
        addons = population.addons(),
        accounts = population.accounts,
        aws = simulator.endpoint_url(),
        control = simulator.control_url(),
    );
    let _ = out.flush();

    let story = async {
        let started = tokio::time::Instant::now();
        for step in story() {
            if !fast {
                tokio::time::sleep_until(started + step.at).await;
            }
            let before = daemon.metrics().render();
            for command in step.commands {
                if let Err(error) = simulator.apply(command) {
                    tracing::warn!(%error, "demo step failed");
                }
            }
            let at = started.elapsed().as_secs();
            let _ = writeln!(out, "demo +{at:>3}s: {}", step.says);
            let _ = out.flush();
            let line = match seen(&daemon, &clock, &step.claim, &before).await {
                Some(after) => format!(
                    "            seen {} {:.1}s later",
                    step.claim.shows_in(),
                    after.as_secs_f64()
                ),
                None => format!(
                    "            not seen {} within {}s: see the log",
                    step.claim.shows_in(),
                    CLAIM_DEADLINE.as_secs()
                ),
            };
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        let _ = writeln!(
            out,
            "demo: the story is over; the daemon keeps polling. Script more with POST {}/v1/commands",
            simulator.control_url()
        );
        let _ = out.flush();
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = stop => {}
        () = story => {}
    }
    daemon.stop().await;
    Ok(())
}

/// How long a step's claim may take to show before the demo says it did not.
pub const CLAIM_DEADLINE: Duration = Duration::from_secs(30);

/// How often the demo looks for a claim.
const CLAIM_POLL: Duration = Duration::from_millis(250);

/// Waits for the claim to show in what `/metrics` and `/` serve; how long it took, or `None`
/// after [`CLAIM_DEADLINE`].
async fn seen(daemon: &Daemon, clock: &Clock, claim: &Claim, before: &str) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    // Scrapes of the last QUIET and a little more, oldest first, for `Compare::Ago`.
    let mut samples: std::collections::VecDeque<(tokio::time::Instant, String)> =
        Default::default();
    while started.elapsed() < CLAIM_DEADLINE {
        let metrics = daemon.metrics().render();
        let state = daemon.state();
        let page = crate::page::render(&state.snapshot(), state.is_ready(), clock.now());
        let at = tokio::time::Instant::now();
        let earlier = match claim.compared_with() {
            Compare::StepStart => Some(before),
            Compare::Ago(ago) => {
                while samples.len() > 1 && at.duration_since(samples[1].0) >= ago {
                    samples.pop_front();
                }
                samples
                    .front()
                    .filter(|(then, _)| at.duration_since(*then) >= ago)
                    .map(|(_, m)| m.as_str())
            }
        };
        if earlier.is_some_and(|earlier| claim.holds(earlier, &metrics, &page)) {
            return Some(started.elapsed());
        }
        samples.push_back((at, metrics));
        tokio::time::sleep(CLAIM_POLL).await;
    }
    None
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
