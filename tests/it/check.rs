//! `check --config PATH` through the built binary.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fargate_health_monitor::simulator::Simulator;

use crate::support::{aws_env, binary, check_config, eventually, free_port, http, repo_file, run};

/// The variables `config/example.toml` refers to, from the placeholders it ships with in
/// `config/example.env`.
fn example_vars() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_file("config/example.env")).unwrap();
    let vars: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    assert_eq!(vars.len(), 3, "{vars:?}");
    vars
}

#[test]
fn the_minimal_example_is_valid() {
    let (code, stdout, stderr) = run(binary()
        .args(["check", "--config"])
        .arg(repo_file("config/minimal.toml")));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("valid: 1 target, 0 sinks"), "{stdout}");
    assert!(!stdout.contains("alertmanager"), "{stdout}");
    assert_eq!(stderr, "");
}

#[test]
fn the_full_example_is_valid_with_its_variables_set() {
    let (code, stdout, stderr) = run(binary()
        .args(["check", "-c"])
        .arg(repo_file("config/example.toml"))
        .envs(example_vars()));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("valid: 2 targets, 4 sinks"), "{stdout}");
    assert!(
        stdout.contains("use either the alertmanager sink or the shipped Prometheus alert rules"),
        "{stdout}"
    );
    for (_, value) in example_vars() {
        assert!(
            !stdout.contains(&value) && !stderr.contains(&value),
            "a secret was printed"
        );
    }
}

#[test]
fn the_full_example_names_each_missing_variable() {
    let mut command = binary();
    for (name, _) in example_vars() {
        command.env_remove(name);
    }
    let (code, _, stderr) = run(command
        .args(["check", "--config"])
        .arg(repo_file("config/example.toml")));
    assert_eq!(code, 64);
    for (name, _) in example_vars() {
        assert!(
            stderr.contains(&format!("environment variable `{name}` is not set")),
            "{stderr}"
        );
    }
    assert!(stderr.contains("3 problems found"), "{stderr}");
}

#[test]
fn a_broken_config_lists_every_problem_with_its_place_and_exits_64() {
    let checked = check_config(
        r#"[poll]
interval = "60s"
intervall = "30s"

[[targets]]
region = "us-east-1"
cluster = "prod"
[[sinks]]
type = "webhook"
url = "hooks.example.com/no-scheme"
secret = "do-not-print-me"
"#,
        &[],
    );
    let (stdout, stderr) = (&checked.stdout, &checked.stderr);
    assert_eq!(checked.code, 64, "stdout: {stdout}\nstderr: {stderr}");
    let shown = checked.path.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "error: {shown}:3:1: unknown key `intervall` in [poll] (did you mean `interval`?)"
            ),
            format!("error: {shown}:10:7: `url` is not a valid URL (relative URL without a base)"),
            format!("{shown}: 2 problems found"),
        ]
    );
    assert!(!stderr.contains("do-not-print-me"));
    assert_eq!(stdout, "");
}

#[test]
fn warnings_are_shown_beside_errors_in_file_order() {
    let checked = check_config(
        "[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n[[sinks]]\ntype = \"log\"\nstatuses = [\"BROKEN\"]\n[[sinks]]\ntype = \"pagerduty\"\n",
        &[],
    );
    let stderr = &checked.stderr;
    assert_eq!(checked.code, 64);
    let severities: Vec<&str> = stderr
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        severities,
        ["warning", "error", &format!("{}", checked.path.display())],
        "{stderr}"
    );
    assert!(stderr.contains("1 problem found"), "{stderr}");
}

#[test]
fn a_missing_config_file_exits_64() {
    let (code, _, stderr) = run(binary().args(["check", "--config", "/nonexistent/fhm.toml"]));
    assert_eq!(code, 64);
    assert!(
        stderr.starts_with("error: /nonexistent/fhm.toml: cannot read the config file: "),
        "{stderr}"
    );
}

#[test]
fn warnings_do_not_fail_the_check() {
    let checked = check_config(
        "[[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\n[[sinks]]\ntype = \"log\"\nstatuses = [\"PAUSED\"]\n",
        &[],
    );
    let (stdout, stderr) = (&checked.stdout, &checked.stderr);
    assert_eq!(checked.code, 0, "{stderr}");
    let expected = format!(
        "warning: {}:6:13: status \"PAUSED\"",
        checked.path.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(
        stdout.contains("valid: 1 target, 1 sink: log-0 (log)"),
        "{stdout}"
    );
}

#[test]
fn secret_files_are_read_relative_to_the_config() {
    let checked = check_config(
        "[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n[[sinks]]\ntype = \"slack\"\nurl_file = \"slack-url\"\n",
        &[(
            "slack-url",
            "https://hooks.slack.com/services/T/B/FILESECRET\n",
        )],
    );
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    assert!(!checked.stdout.contains("FILESECRET") && !checked.stderr.contains("FILESECRET"));
}

#[test]
fn version_help_and_usage_errors() {
    let (code, stdout, _) = run(binary().arg("--version"));
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("fargate-health-monitor {}", env!("CARGO_PKG_VERSION"))
    );

    let (code, stdout, _) = run(binary().arg("--help"));
    assert_eq!(code, 0);
    assert!(stdout.contains("check"), "{stdout}");

    let (code, _, stderr) = run(binary().arg("no-such-command"));
    assert_eq!(code, 64, "{stderr}");
    let (code, _, stderr) = run(binary().arg("check"));
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--config"), "{stderr}");
    let (code, _, _) = run(binary().args(["--log-format", "yaml", "check", "-c", "x"]));
    assert_eq!(code, 64);
}

#[test]
fn json_logs_are_json_lines_on_stderr() {
    let (code, stdout, stderr) = run(binary()
        .env("RUST_LOG", "debug")
        .args(["--log-format", "json", "check", "--config"])
        .arg(repo_file("config/minimal.toml")));
    assert_eq!(code, 0);
    assert!(stdout.contains("valid"), "{stdout}");
    let line = stderr
        .lines()
        .find(|l| l.contains("config is valid"))
        .expect(&stderr);
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["level"], "DEBUG");
    assert_eq!(json["message"], "config is valid");
    assert_eq!(json["targets"], 1);

    // The default level is info: the debug line is not there.
    let (_, _, stderr) = run(binary()
        .args(["check", "--config"])
        .arg(repo_file("config/minimal.toml")));
    assert!(!stderr.contains("config is valid"), "{stderr}");
}

#[test]
fn server_tls_and_basic_auth_are_checked() {
    let checked = crate::support::check_config(
        "[server]\n[server.tls]\ncert_file = \"cert.pem\"\n[server.basic_auth]\nusers = { prometheus = \"plain-text\" }\n\n[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n",
        &[],
    );
    assert_eq!(checked.code, 64, "{}", checked.stderr);
    assert!(
        checked
            .stderr
            .contains("[server.tls] is missing the key `key_file`"),
        "{}",
        checked.stderr
    );
    assert!(
        checked.stderr.contains("must be a bcrypt hash"),
        "{}",
        checked.stderr
    );
    assert!(
        !checked.stderr.contains("plain-text"),
        "the password is not quoted"
    );
    let hash = bcrypt::hash("x", 4).unwrap();
    let checked = crate::support::check_config(
        &format!(
            "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n[server.basic_auth]\nusers = {{ prometheus = \"{hash}\" }}\n\n[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n"
        ),
        &[
            ("c.pem", &fixture("cert.pem")),
            ("k.pem", &fixture("key.pem")),
        ],
    );
    assert_eq!(checked.code, 0, "{}", checked.stderr);
}

/// A TLS test file from `tests/fixtures/tls/`.
fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo_file(&format!("tests/fixtures/tls/{name}"))).unwrap()
}

const TARGET: &str = "[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n";

/// `check` on `config.toml` in `dir`, killed (and the test failed) if it takes longer than
/// `secs` seconds: the exit code and stderr.
fn check_within(dir: &Path, text: &str, secs: u64) -> (i32, String) {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = binary()
        .args(["check", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("check did not return within {secs} s on:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code().expect("exited, not killed"), stderr)
}

#[test]
fn a_glob_bomb_is_a_problem_at_its_place() {
    let bomb = format!("{}a{}", "{".repeat(130), "}".repeat(130));
    let checked = check_config(
        &format!("[[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\nprofiles = [\"{bomb}\"]\n"),
        &[],
    );
    assert_eq!(checked.code, 64, "{}", checked.stderr);
    let expected = format!(
        "error: {}:4:13: `profiles`: invalid glob",
        checked.path.display()
    );
    assert!(checked.stderr.starts_with(&expected), "{}", checked.stderr);

    let nested = format!("{}a{}", "{a,".repeat(60), "}".repeat(60));
    let checked = check_config(
        &format!("[[targets]]\nregion = \"us-east-1\"\ncluster = \"{nested}\"\n"),
        &[],
    );
    assert_eq!(checked.code, 64, "{}", checked.stderr);
    assert!(
        checked.stderr.contains(":3:11: `cluster`: invalid glob")
            && checked.stderr.contains("braces nested more than 4 deep"),
        "{}",
        checked.stderr
    );
}

#[tokio::test]
async fn a_glob_bomb_on_sighup_keeps_the_daemon_running_on_the_old_config() {
    let simulator = Simulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let url = simulator.endpoint_url();
    let path = dir.path().join("config.toml");
    let good = format!(
        "[server]\nlisten = \"{addr}\"\n[state]\npath = \"{}\"\n[poll]\ninterval = \"2s\"\ntimeout = \"1s\"\n\n\
         [[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\nprofiles = [\"*\"]\n\
         endpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\n",
        dir.path().join("state.json").display()
    );
    std::fs::write(&path, &good).unwrap();
    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
    let mut child = aws_env(binary().args(["run", "--config"]).arg(&path))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let reload_ok = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("fargate_health_monitor_config_last_reload_successful "))
            .and_then(|v| v.parse::<f64>().ok())
    };
    eventually(30, "the daemon serving /metrics", || async {
        tokio::net::TcpStream::connect(addr).await.ok()?;
        let (_, body) = http(addr, "GET", "/metrics", "").await;
        (reload_ok(&body) == Some(1.0)).then_some(())
    })
    .await;

    let bomb = format!("{}a{}", "{".repeat(130), "}".repeat(130));
    std::fs::write(
        &path,
        good.replace("profiles = [\"*\"]", &format!("profiles = [\"{bomb}\"]")),
    )
    .unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually(30, "the failed reload in /metrics", || async {
        let (_, body) = http(addr, "GET", "/metrics", "").await;
        (reload_ok(&body) == Some(0.0)).then_some(())
    })
    .await;
    // Still running, still serving, on the old config.
    assert!(child.try_wait().unwrap().is_none(), "the daemon stopped");
    let (code, _) = http(addr, "GET", "/healthz", "").await;
    assert_eq!(code, 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("invalid glob"), "{log}");
    assert!(
        log.contains("reload failed; the config in force stays"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn values_the_daemon_cannot_use_are_out_of_range() {
    let checked = check_config(
        &format!(
            "[poll]\nmax_requests_per_second = 1e-30\n{TARGET}[[sinks]]\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"\nresend_interval = \"500000000y\"\n"
        ),
        &[],
    );
    assert_eq!(checked.code, 64, "{}", checked.stderr);
    let shown = checked.path.display().to_string();
    let lines: Vec<&str> = checked.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{}", checked.stderr);
    assert!(
        lines[0].starts_with(&format!(
            "error: {shown}:2:27: `max_requests_per_second` must be between 0.01 and 10000"
        )),
        "{}",
        checked.stderr
    );
    assert!(
        lines[1].starts_with(&format!(
            "error: {shown}:9:19: `resend_interval` must be between 1s and 24h"
        )),
        "{}",
        checked.stderr
    );
}

#[test]
fn secret_files_must_be_small_regular_files_and_check_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let sparse = dir.path().join("sparse");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let cases = [
        (
            "/dev/zero".to_owned(),
            "it is a character device, not a regular file",
        ),
        (
            fifo.display().to_string(),
            "it is a FIFO, not a regular file",
        ),
        (
            dir.path().display().to_string(),
            "it is a directory, not a regular file",
        ),
        (sparse.display().to_string(), "it is larger than 64 KiB"),
    ];
    for (file, why) in cases {
        let (code, stderr) = check_within(
            dir.path(),
            &format!("{TARGET}[[sinks]]\ntype = \"slack\"\nurl_file = \"{file}\"\n"),
            60,
        );
        assert_eq!(code, 64, "{stderr}");
        assert!(
            stderr.contains(&format!(":6:12: `url_file`: cannot read {file}: {why}")),
            "{stderr}"
        );
    }
    // The TLS files and the config file itself the same way.
    let (code, stderr) = check_within(
        dir.path(),
        &format!(
            "[server.tls]\ncert_file = \"{}\"\nkey_file = \"/dev/zero\"\n{TARGET}",
            fifo.display()
        ),
        60,
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("it is a FIFO, not a regular file"),
        "{stderr}"
    );
    assert!(stderr.contains("it is a character device"), "{stderr}");
    let (code, _, stderr) = run(binary().args(["check", "--config"]).arg(&fifo));
    assert_eq!(code, 64);
    assert!(
        stderr.contains("cannot read the config file: it is a FIFO, not a regular file"),
        "{stderr}"
    );
}

#[test]
fn tls_files_must_hold_a_matching_certificate_and_key() {
    let tls = |cert: &str, key: &str| {
        format!("[server.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n{TARGET}")
    };
    let (cert, key, other) = (
        fixture("cert.pem"),
        fixture("key.pem"),
        fixture("other-key.pem"),
    );
    let files = [
        ("cert.pem", cert.as_str()),
        ("key.pem", key.as_str()),
        ("other.pem", other.as_str()),
        (
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        ),
        ("empty.pem", ""),
    ];
    let checked = check_config(&tls("cert.pem", "key.pem"), &files);
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    let cases = [
        (
            tls("cert.pem", "other.pem"),
            ":3:12: `key_file`: the key in",
        ),
        (tls("garbage.pem", "key.pem"), ":2:13: `cert_file`:"),
        (tls("empty.pem", "key.pem"), ":2:13: `cert_file`:"),
        (tls("cert.pem", "garbage.pem"), ":3:12: `key_file`:"),
        (tls("key.pem", "cert.pem"), ":2:13: `cert_file`:"),
    ];
    for (text, expected) in cases {
        let checked = check_config(&text, &files);
        assert_eq!(checked.code, 64, "{text}\n{}", checked.stderr);
        assert!(
            checked.stderr.contains(expected),
            "{text}\n{}",
            checked.stderr
        );
    }
    let body = other.lines().nth(1).unwrap();
    let checked = check_config(&tls("cert.pem", "other.pem"), &files);
    assert!(!checked.stderr.contains(body), "a key was printed");
}

#[test]
fn bcrypt_costs_and_user_names_are_checked() {
    let slow = format!("$2y$31${}", "x".repeat(53));
    let fast = bcrypt::hash("x", 4).unwrap();
    let checked = check_config(
        &format!(
            "[server.basic_auth]\nusers = {{ prometheus = \"{slow}\", \"a:b\" = \"{fast}\" }}\n{TARGET}"
        ),
        &[],
    );
    assert_eq!(checked.code, 64, "{}", checked.stderr);
    assert!(
        checked
            .stderr
            .contains("the bcrypt cost of user `prometheus`'s hash is 31; use 4 to 14"),
        "{}",
        checked.stderr
    );
    assert!(
        checked
            .stderr
            .contains("user name `a:b` must not be empty or contain `:`"),
        "{}",
        checked.stderr
    );
}

#[test]
fn a_state_path_that_is_a_directory_or_a_device_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    for path in [dir.path().display().to_string(), "/dev/null".to_owned()] {
        let (code, stderr) = check_within(
            dir.path(),
            &format!("[state]\npath = \"{path}\"\n{TARGET}"),
            60,
        );
        // A warning, not a refusal: `run` alerts from memory meanwhile (tests/it/state.rs).
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stderr.contains(&format!(":2:8: `path`: {path} is a"))
                && stderr.contains("the state file must be a regular file or not exist yet"),
            "{stderr}"
        );
    }
}

#[test]
fn values_that_may_hold_secrets_are_not_quoted_back() {
    for value in [
        "https://user:hunter2@x",
        "hunter2@example.com",
        "https://hooks.slack.com/services/T0/B0/hunter2",
        "xoxb-hunter2hunter2hunter2hunter2",
    ] {
        let checked = check_config(
            &format!(
                "{TARGET}[[sinks]]\ntype = \"{value}\"\n[[sinks]]\ntype = \"log\"\nevents = [\"{value}\"]\n"
            ),
            &[],
        );
        assert_eq!(checked.code, 64, "{}", checked.stderr);
        assert!(
            checked
                .stderr
                .contains(":5:8: unknown sink type (a value of"),
            "{}",
            checked.stderr
        );
        assert!(
            !checked.stderr.contains("hunter2") && !checked.stdout.contains("hunter2"),
            "{}",
            checked.stderr
        );
    }
}

#[test]
fn values_from_the_environment_or_a_file_are_never_quoted() {
    const KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "xoxb-1234-5678-abcdEFGHijkl";
    const FILED: &str = "filed-\u{1}-secret";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("h"), FILED).unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[[targets]]\nregion = \"${AWS_SECRET_ACCESS_KEY}\"\ncluster = \"prod-${SHORT}\"\n\
         [[sinks]]\ntype = \"${SLACKTOK}\"\n\
         [[sinks]]\ntype = \"webhook\"\nurl = \"https://x\"\nheaders_file = { X-A = \"h\" }\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(binary()
        .args(["check", "--config"])
        .arg(&path)
        .env("AWS_SECRET_ACCESS_KEY", KEY)
        .env("SLACKTOK", TOKEN)
        .env("SHORT", "a/b"));
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains(":2:10: `region`: (a value from the environment or a file, 40 characters"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown sink type (a value from the environment"),
        "{stderr}"
    );
    assert!(
        stderr.contains(":9:18: the value of header `X-A` is not a valid HTTP header value"),
        "{stderr}"
    );
    for secret in [KEY, TOKEN, "prod-a/b", "filed-", "EXAMPLEKEY", "abcdEFGH"] {
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "{secret}: {stderr}"
        );
    }
}

#[test]
fn header_values_the_sinks_would_refuse_are_problems() {
    for value in ["\\u0000", "é\\u007f", "a\\tb\\u001b"] {
        let checked = check_config(
            &format!(
                "{TARGET}[[sinks]]\ntype = \"webhook\"\nurl = \"https://x\"\nheaders = {{ \"X-A\" = \"{value}\" }}\n"
            ),
            &[],
        );
        assert_eq!(checked.code, 64, "{}", checked.stderr);
        assert!(
            checked
                .stderr
                .contains(":7:13: the value of header `X-A` is not a valid HTTP header value"),
            "{}",
            checked.stderr
        );
    }
}

#[test]
fn a_state_path_that_is_a_symbolic_link_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.json");
    std::fs::write(&target, "{}").unwrap();
    let link = dir.path().join("state.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let path = link.display().to_string();
    let (code, stderr) = check_within(
        dir.path(),
        &format!("[state]\npath = \"{path}\"\n{TARGET}"),
        60,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(":2:8: `path`: {path} is a symbolic link; the state file must be a regular file or not exist yet")),
        "{stderr}"
    );
}

#[test]
fn a_lane_whose_named_resources_exceed_its_rate_is_a_warning_not_a_failure() {
    let names: Vec<String> = (0..30).map(|n| format!("\"p{n}\"")).collect();
    let text = format!(
        "[poll]\ninterval = \"20s\"\nmax_requests_per_second = 1\n[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\naccount_id = \"111122223333\"\nkinds = [\"fargate_profile\"]\nprofiles = [{}]\n",
        names.join(", ")
    );
    let checked = check_config(&text, &[]);
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    let expected = format!(
        "warning: {}: lane us-east-1 (account 111122223333): the targets name 30 resources, but max_requests_per_second = 1 allows 20 describes per interval of 20s",
        checked.path.display()
    );
    assert!(checked.stderr.contains(&expected), "{}", checked.stderr);

    // Within the budget, or unknown (a glob): no warning.
    let fits = text.replace("max_requests_per_second = 1", "max_requests_per_second = 2");
    let checked = check_config(&fits, &[]);
    assert!(!checked.stderr.contains("lane "), "{}", checked.stderr);
    let glob = "[[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\n";
    assert!(!check_config(glob, &[]).stderr.contains("lane "));
}
