//! What operators install besides the binary, checked by the real tools: the systemd unit, the
//! Prometheus alert rules.

use std::path::Path;
use std::process::Command;

use crate::support::{real_tool, repo_file, run};

#[test]
fn the_systemd_unit_verifies_and_its_exposure_is_at_most_1_5() {
    let Some(analyze) = real_tool("systemd-analyze") else {
        return;
    };
    let unit = repo_file("systemd/fargate-health-monitor.service");
    let (code, stdout, stderr) = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=15"])
        .arg(&unit));
    let score = stdout
        .lines()
        .chain(stderr.lines())
        .find_map(|l| {
            l.split("exposure level for fargate-health-monitor.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .expect("an overall exposure level");
    assert!(score <= 1.5, "exposure {score}");
    assert_eq!(code, 0, "{stdout}{stderr}");

    // `verify` wants the ExecStart binary where the unit expects it.
    let installed = Path::new("/usr/local/bin/fargate-health-monitor");
    let placed = !installed.exists()
        && std::fs::copy(env!("CARGO_BIN_EXE_fargate-health-monitor"), installed).is_ok();
    if !installed.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot install the binary for verify"
        );
        eprintln!(
            "skipped: systemd-analyze verify needs {}",
            installed.display()
        );
        return;
    }
    let (code, stdout, stderr) = run(Command::new(&analyze).arg("verify").arg(&unit));
    if placed {
        let _ = std::fs::remove_file(installed);
    }
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify said: {stderr}"
    );
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = real_tool("promtool") else {
        return;
    };
    let rules = repo_file("dashboards/alerts.yml");
    let (code, stdout, stderr) = run(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("SUCCESS: 9 rules found"), "{stdout}");
    let tests = repo_file("dashboards/alerts_test.yml");
    let (code, stdout, stderr) = run(Command::new(&promtool).args(["test", "rules"]).arg(&tests));
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Every rule has a test.
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let tests_text = std::fs::read_to_string(&tests).unwrap();
    for line in rules_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests_text.contains(&format!("alertname: {line}")),
            "no test for {line}"
        );
    }
}

#[test]
fn the_kubernetes_manifests_pass_strict_validation_and_carry_a_valid_config() {
    let dir = repo_file("deploy/kubernetes");
    let mut manifests: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 7);

    // The config in the ConfigMap is valid, with the secret files where the Secret puts them.
    let configmap = std::fs::read_to_string(dir.join("configmap.yaml")).unwrap();
    let body = configmap.split("config.toml: |\n").nth(1).unwrap();
    let toml: String = body
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(toml.contains("listen = \"0.0.0.0:9877\""));
    let secrets = tempfile::tempdir().unwrap();
    for name in ["slack-webhook-url", "webhook-secret"] {
        std::fs::write(
            secrets.path().join(name),
            "https://hooks.slack.com/services/T/B/x",
        )
        .unwrap();
    }
    let toml = toml.replace(
        "/etc/fargate-health-monitor/secrets",
        &secrets.path().display().to_string(),
    );
    let checked = crate::support::check_config(&toml, &[]);
    assert_eq!(checked.code, 0, "{}{}", checked.stdout, checked.stderr);

    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("iam-policy.json")).unwrap())
            .unwrap();
    assert_eq!(
        policy["Statement"][0]["Action"].as_array().unwrap().len(),
        3
    );

    let Some(validate) = real_tool("kubernetes-validate") else {
        return;
    };
    let (code, stdout, stderr) = run(Command::new(validate)
        .args(["--strict", "--quiet"])
        .args(&manifests));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        !stdout.contains("WARN") && !stderr.contains("WARN"),
        "{stdout}{stderr}"
    );
}

#[test]
fn the_dashboard_uses_a_datasource_variable_and_the_label_variables() {
    let text =
        std::fs::read_to_string(repo_file("dashboards/fargate-health-monitor.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        variables,
        [
            "datasource",
            "aws_account_id",
            "aws_region",
            "eks_cluster",
            "fargate_profile"
        ]
    );
    assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource");
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}");
        }
    }
    // Every series the dashboard reads is one the daemon exports.
    for name in [
        "eks_fargate_profile_health_issues",
        "eks_fargate_profile_health_issue_start_timestamp_seconds",
        "eks_fargate_profile_status",
        "eks_fargate_profile_up",
        "fargate_health_monitor_api_requests_total",
        "fargate_health_monitor_api_request_duration_seconds_bucket",
        "fargate_health_monitor_poll_cycle_overruns_total",
        "fargate_health_monitor_oldest_observation_age_seconds",
        "fargate_health_monitor_notifications_total",
        "fargate_health_monitor_notification_queue_depth",
    ] {
        assert!(text.contains(name), "{name}");
    }
}
