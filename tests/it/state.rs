//! The state file, end to end with the built binary: a lost file never makes the sequence go
//! backwards, a file that cannot be written never silences alerts, and a path that is not a
//! regular file is left alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fargate_health_monitor::simulator::{Command as SimCommand, Health, Simulator};

use crate::receiver::{Receiver, issue, key};
use crate::support::{aws_env, binary, eventually, free_port, http};

/// A config for the simulator and the receiver with `[state] path` = `state`; the daemon it
/// runs.
struct Setup {
    dir: PathBuf,
    config: PathBuf,
    admin: SocketAddr,
}

impl Setup {
    fn new(dir: &Path, simulator: &Simulator, receiver: SocketAddr, state: &Path) -> Self {
        let url = simulator.endpoint_url();
        let admin = free_port();
        let text = format!(
            r#"[server]
listen = "{admin}"
[state]
path = "{state}"
[poll]
interval = "2s"
discovery_interval = "2s"
timeout = "1s"
max_requests_per_second = 100

[[targets]]
region = "us-east-1"
cluster = "*"
endpoint_url = "{url}"
sts_endpoint_url = "{url}"

[[sinks]]
name = "hook"
type = "webhook"
url = "http://{receiver}/hook"
retry_initial = "100ms"
retry_max = "300ms"
"#,
            state = state.display(),
        );
        let config = dir.join("config.toml");
        std::fs::write(&config, text).unwrap();
        Setup {
            dir: dir.to_owned(),
            config,
            admin,
        }
    }

    fn start(&self, log_name: &str) -> Daemon {
        let log = std::fs::File::create(self.dir.join(log_name)).unwrap();
        let child = aws_env(binary().args(["run", "--config"]).arg(&self.config))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon(Some(child))
    }

    fn log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.dir.join(log_name)).unwrap_or_default()
    }

    /// `fargate_health_monitor_state_write_errors_total`, once the server answers.
    async fn write_errors(&self) -> u64 {
        let page = eventually(30, "a scrape", || async {
            let (status, page) = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                http(self.admin, "GET", "/metrics", ""),
            )
            .await
            .ok()?;
            (status == 200).then_some(page)
        })
        .await;
        page.lines()
            .find_map(|l| l.strip_prefix("fargate_health_monitor_state_write_errors_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the counter is exported")
    }

    async fn until_write_errors_above(&self, floor: u64) -> u64 {
        eventually(
            30,
            &format!("more than {floor} state write errors"),
            || async {
                let errors = self.write_errors().await;
                (errors > floor).then_some(errors)
            },
        )
        .await
    }
}

/// A running daemon, killed if a failed assertion drops it (so no daemon outlives its test).
struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stops the daemon with `signal` and returns its exit code.
async fn stop(mut daemon: Daemon, signal: &str) -> Option<i32> {
    let mut child = daemon.0.take().unwrap();
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::task::spawn_blocking(move || child.wait().unwrap().code())
        .await
        .unwrap()
}

fn set_health(simulator: &Simulator, profile: &str, health: Health) {
    simulator
        .apply(SimCommand::SetHealth {
            key: key(profile),
            health,
        })
        .unwrap();
}

#[tokio::test]
async fn a_lost_state_file_never_makes_the_sequence_go_backwards() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    let addr = receiver.addr;
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let setup = Setup::new(dir.path(), &simulator, addr, &state);

    let daemon = setup.start("first.log");
    receiver.until("issue_opened", "web", 1).await;
    set_health(&simulator, "web", Health::Issues(Vec::new()));
    receiver.until("issue_resolved", "web", 1).await;
    set_health(&simulator, "web", issue("AccessDenied"));
    receiver.until("issue_opened", "web", 2).await;
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
    let before: Vec<u64> = receiver
        .got()
        .iter()
        .filter_map(|r| r.body["sequence"].as_u64())
        .collect();
    let highest = *before.iter().max().unwrap();
    assert!(before.windows(2).all(|w| w[0] < w[1]), "{before:?}");

    // The file and its previous version are lost: the open issue is alerted again, with a
    // sequence above every earlier one.
    std::fs::remove_file(&state).unwrap();
    std::fs::remove_file(format!("{}.prev", state.display())).unwrap();
    let daemon = setup.start("second.log");
    receiver.until("issue_opened", "web", 3).await;
    set_health(&simulator, "web", Health::Issues(Vec::new()));
    receiver.until("issue_resolved", "web", 2).await;
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
    let after: Vec<u64> = receiver.got()[before.len()..]
        .iter()
        .filter_map(|r| r.body["sequence"].as_u64())
        .collect();
    assert!(after.len() >= 2, "{after:?}");
    assert!(
        after.iter().all(|s| *s > highest),
        "{before:?} then {after:?}"
    );
    // Exact as a JSON number in JavaScript.
    assert!(after.iter().all(|s| *s < 1 << 53));
}

#[tokio::test]
async fn a_state_file_that_cannot_be_written_never_silences_alerts_and_is_written_once_it_can() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    let addr = receiver.addr;
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    // A directory where the temporary file goes: no write can succeed, even as root.
    let obstacle = dir.path().join("state.json.tmp");
    std::fs::create_dir(&obstacle).unwrap();
    let setup = Setup::new(dir.path(), &simulator, addr, &state);

    // The start runs anyway (it used to exit 73) and delivers from memory.
    let daemon = setup.start("run.log");
    receiver.until("issue_opened", "web", 1).await;
    let errors = setup.until_write_errors_above(0).await;
    assert!(!state.exists());
    set_health(&simulator, "web", Health::Issues(Vec::new()));
    receiver.until("issue_resolved", "web", 1).await;
    // Retried by itself, and counted.
    setup.until_write_errors_above(errors).await;
    let log = setup.log("run.log");
    assert!(log.contains("cannot write the state file"), "{log}");
    assert!(log.contains("state.json.tmp"), "{log}");

    // Once the obstacle is gone the file is written, without a restart.
    std::fs::remove_dir(&obstacle).unwrap();
    eventually(60, "the state file written", || async {
        state.exists().then_some(())
    })
    .await;

    // Writes that start failing while running do not hold deliveries back either.
    std::fs::create_dir(&obstacle).unwrap();
    let errors = setup.write_errors().await;
    set_health(&simulator, "web", issue("InternalFailure"));
    receiver.until("issue_opened", "web", 2).await;
    setup.until_write_errors_above(errors).await;
    std::fs::remove_dir(&obstacle).unwrap();
    eventually(60, "the state file holding the new issue", || async {
        let text = std::fs::read_to_string(&state).ok()?;
        text.contains("InternalFailure").then_some(())
    })
    .await;
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
    let log = setup.log("run.log");
    assert!(log.contains("state file written again"), "{log}");
    assert_eq!(receiver.sequences("issue_opened", "web").len(), 2);
}

#[tokio::test]
async fn a_state_path_that_is_a_directory_is_left_alone_and_alerts_go_on() {
    let simulator = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    let addr = receiver.addr;
    simulator.add_profile(&key("web"), "ACTIVE", issue("AccessDenied"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("keep"), b"mine").unwrap();
    let setup = Setup::new(dir.path(), &simulator, addr, &state);

    let daemon = setup.start("run.log");
    receiver.until("issue_opened", "web", 1).await;
    setup.until_write_errors_above(0).await;
    assert_eq!(stop(daemon, "-TERM").await, Some(0));
    assert_eq!(std::fs::read(state.join("keep")).unwrap(), b"mine");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("corrupt") || n.contains("prev")),
        "{names:?}"
    );
    let log = setup.log("run.log");
    assert!(
        log.contains("a directory is there, not a regular file"),
        "{log}"
    );
    assert!(log.contains("cannot use the state file path"), "{log}");
}
