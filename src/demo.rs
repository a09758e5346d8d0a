//! `demo`: the daemon against the built-in simulated EKS and STS, with no AWS account and no
//! config file, and a scripted story over the first two minutes so that the metrics, the JSON
//! API and the event log change while a newcomer watches.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::{self, Config, Environment};
use crate::daemon::Daemon;
use crate::eks::AwsSettings;
use crate::model::{Operation, ProfileKey};
use crate::simulator::{
    self, Command, Fault, FaultKind, Health, IssueSpec, Population, Scope, Simulator,
};

/// The region of the demo's world.
const REGION: &str = "us-east-1";

/// The simulated world: two accounts, three clusters each, four profiles per cluster.
pub fn population() -> Population {
    Population {
        accounts: 2,
        regions: vec![REGION.to_owned()],
        clusters_per_region: 3,
        profiles_per_cluster: 4,
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
}

fn key(account: usize, cluster: usize, profile: usize) -> ProfileKey {
    ProfileKey::new(
        simulator::account_id(account),
        REGION,
        format!("cluster-{cluster:04}"),
        format!("profile-{profile:02}"),
    )
}

fn issue(code: &str, message: &str, resources: &[&str]) -> Health {
    Health::Issues(vec![IssueSpec::new(code, message, resources)])
}

/// The story of the first two minutes.
pub fn story() -> Vec<Step> {
    let secs = Duration::from_secs;
    let denied = key(0, 0, 1);
    let unreachable: Vec<ProfileKey> = (0..4).map(|p| key(1, 1, p)).collect();
    let failing = key(0, 2, 2);
    let recreated = key(1, 0, 0);
    let mut steps = vec![
        Step {
            at: secs(10),
            says: format!("AccessDenied appears on {denied}"),
            commands: vec![Command::SetHealth {
                key: denied.clone(),
                health: issue(
                    "AccessDenied",
                    "The pod execution role cannot be assumed by EKS",
                    &["arn:aws:iam::111122223333:role/demo-pod-execution"],
                ),
            }],
        },
        Step {
            at: secs(20),
            says: format!(
                "ClusterUnreachable hits every profile of {}/{}",
                unreachable[0].account_id, unreachable[0].cluster
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
        },
        Step {
            at: secs(35),
            says: format!("{failing} goes CREATE_FAILED"),
            commands: vec![Command::SetStatus {
                key: failing.clone(),
                status: "CREATE_FAILED".to_owned(),
            }],
        },
        Step {
            at: secs(50),
            says: format!("AccessDenied is fixed on {denied}; it resolves after two clean polls"),
            commands: vec![Command::SetHealth {
                key: denied,
                health: Health::Issues(Vec::new()),
            }],
        },
        Step {
            at: secs(65),
            says: format!("{recreated} is deleted and created again: a new incarnation"),
            commands: vec![Command::RecreateProfile { key: recreated }],
        },
        Step {
            at: secs(80),
            says: format!(
                "EKS throttles account {} for a while: up drops to 0, issues stay",
                simulator::account_id(0)
            ),
            commands: vec![Command::AddFault {
                fault: Fault {
                    scope: Scope {
                        account_id: Some(simulator::account_id(0)),
                        operations: vec![Operation::DescribeFargateProfile],
                        ..Scope::all()
                    },
                    kind: FaultKind::Throttle,
                    remaining: Some(60),
                    accepted: Default::default(),
                },
            }],
        },
    ];
    steps.push(Step {
        at: secs(105),
        says: "ClusterUnreachable clears; its episodes resolve".to_owned(),
        commands: unreachable
            .into_iter()
            .map(|key| Command::SetHealth {
                key,
                health: Health::Issues(Vec::new()),
            })
            .collect(),
    });
    steps
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

/// Runs the demo until `stop` resolves; returns the exit code.
pub async fn run(
    listen: SocketAddr,
    stop: impl Future<Output = ()>,
    out: &mut (dyn Write + Send),
    err: &mut dyn Write,
) -> u8 {
    use crate::cli::exit;

    let simulator = match Simulator::start().await {
        Ok(simulator) => simulator,
        Err(error) => {
            let _ = writeln!(
                err,
                "error: cannot start the simulated EKS on loopback: {error}"
            );
            return exit::UNAVAILABLE;
        }
    };
    if let Err(error) = simulator.populate(&population()) {
        let _ = writeln!(err, "error: cannot build the simulated world: {error}");
        return exit::FAILURE;
    }
    // A fresh state file per run, removed at the end: the demo starts from scratch each time.
    let state_dir = std::env::temp_dir().join(format!(
        "fargate-health-monitor-demo-{}",
        std::process::id()
    ));
    if let Err(error) = std::fs::create_dir_all(&state_dir) {
        let _ = writeln!(err, "error: cannot create {}: {error}", state_dir.display());
        return exit::CANT_CREATE;
    }
    let _cleanup = RemoveOnDrop(state_dir.clone());
    let config = match config(&simulator.endpoint_url(), &state_dir.join("state.json")) {
        Ok(config) => config,
        Err(error) => {
            let _ = writeln!(err, "error: the demo's own config is invalid: {error}");
            return exit::FAILURE;
        }
    };
    let aws = AwsSettings {
        static_credentials: Some(simulator::credentials()),
        ..AwsSettings::new(config.poll.timeout)
    };
    let daemon = match Daemon::start(&config, aws, Some(listen)).await {
        Ok(daemon) => daemon,
        Err(error) => {
            let _ = writeln!(
                err,
                "error: {error}; pass another address, e.g. demo --listen 127.0.0.1:0"
            );
            return crate::cli::start_failed(&error, &mut std::io::sink());
        }
    };
    let base = format!("http://{}", daemon.addr());
    let population = population();
    let _ = writeln!(
        out,
        "fargate-health-monitor demo: {profiles} simulated Fargate profiles in {accounts} accounts, polled every 5s\n\
         \n  {base}/                  links\n  {base}/metrics           Prometheus metrics\n  {base}/api/v1/profiles   every profile as JSON\n\
         \nsimulated EKS and STS at {aws} (control API at {control})\n\
         events appear in the log below as they happen; the story runs for two minutes; stop with Ctrl-C\n",
        profiles = population.profiles(),
        accounts = population.accounts,
        aws = simulator.endpoint_url(),
        control = simulator.control_url(),
    );
    let _ = out.flush();

    let story = async {
        let started = tokio::time::Instant::now();
        for step in story() {
            tokio::time::sleep_until(started + step.at).await;
            for command in step.commands {
                if let Err(error) = simulator.apply(command) {
                    tracing::warn!(%error, "demo step failed");
                }
            }
            let _ = writeln!(out, "demo +{:>3}s: {}", step.at.as_secs(), step.says);
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
    exit::OK
}

/// Removes a directory when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
