//! `check --config PATH` through the built binary.

use crate::support::{binary, check_config, repo_file, run};

/// The variables `config/example.toml` refers to.
const EXAMPLE_VARS: [(&str, &str); 3] = [
    (
        "SLACK_WEBHOOK_URL",
        "https://hooks.slack.com/services/T000/B000/EXAMPLESECRET",
    ),
    ("WEBHOOK_SECRET", "example-signing-secret"),
    ("WEBHOOK_TOKEN", "example-token"),
];

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
        .envs(EXAMPLE_VARS));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("valid: 2 targets, 4 sinks"), "{stdout}");
    assert!(
        stdout.contains("use either the alertmanager sink or the shipped Prometheus alert rules"),
        "{stdout}"
    );
    for (_, value) in EXAMPLE_VARS {
        assert!(
            !stdout.contains(value) && !stderr.contains(value),
            "a secret was printed"
        );
    }
}

#[test]
fn the_full_example_names_each_missing_variable() {
    let mut command = binary();
    for (name, _) in EXAMPLE_VARS {
        command.env_remove(name);
    }
    let (code, _, stderr) = run(command
        .args(["check", "--config"])
        .arg(repo_file("config/example.toml")));
    assert_eq!(code, 64);
    for (name, _) in EXAMPLE_VARS {
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
        "[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n[[sinks]]\ntype = \"log\"\nstatuses = [\"FAILED\"]\n[[sinks]]\ntype = \"pagerduty\"\n",
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
        &[],
    );
    assert_eq!(checked.code, 0, "{}", checked.stderr);
}
