//! What operators install besides the binary, checked by the real tools: the systemd unit, the
//! Prometheus alert rules.

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

    // `verify` wants the binaries the unit names: a copy of the unit that names the built one.
    let dir = tempfile::tempdir().unwrap();
    let built = env!("CARGO_BIN_EXE_fargate-health-monitor");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("\nExecStart=fargate-health-monitor run "));
    let rewritten = text
        .replace(
            "ExecStartPre=fargate-health-monitor ",
            &format!("ExecStartPre={built} "),
        )
        .replace(
            "ExecStart=fargate-health-monitor ",
            &format!("ExecStart={built} "),
        );
    let copy = dir.path().join("fargate-health-monitor.service");
    std::fs::write(&copy, rewritten).unwrap();
    let (code, stdout, stderr) = run(Command::new(&analyze).arg("verify").arg(&copy));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify said: {stderr}"
    );
}

/// systemd.exec(5): `LoadCredential=ID:/directory` loads each file of the directory as the
/// credential `ID_FILENAME`, at `$CREDENTIALS_DIRECTORY/ID_FILENAME`. Every credential path the
/// README and the shipped configs name must be one the unit creates.
#[test]
fn the_credential_paths_in_the_docs_and_configs_are_where_the_unit_puts_them() {
    let unit =
        std::fs::read_to_string(repo_file("systemd/fargate-health-monitor.service")).unwrap();
    let loads: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("LoadCredential="))
        .collect();
    assert_eq!(loads.len(), 1, "{loads:?}");
    let (id, source) = loads[0].split_once(':').unwrap();
    assert_eq!(source, "/etc/fargate-health-monitor/credentials");
    let prefix = format!("/run/credentials/fargate-health-monitor.service/{id}_");

    let mut seen = 0;
    for file in [
        "README.md",
        "systemd/fargate-health-monitor.service",
        "config/example.toml",
        "deploy/debian/config.toml",
    ] {
        let text = std::fs::read_to_string(repo_file(file)).unwrap();
        for (at, _) in text.match_indices("/run/credentials/") {
            let path: String = text[at..]
                .chars()
                .take_while(|c| !matches!(c, '"' | '`' | ' ' | '\n' | ')'))
                .collect();
            if path.ends_with("/<file") || path == "/run/credentials/" {
                continue;
            }
            assert!(
                path.starts_with(&prefix) && path.len() > prefix.len(),
                "{file} names {path}, but the unit's LoadCredential= makes {prefix}<file name>"
            );
            seen += 1;
        }
    }
    assert!(seen >= 4, "only {seen} credential paths found");
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = real_tool("promtool") else {
        return;
    };
    let rules = repo_file("dashboards/alerts.yml");
    let (code, stdout, stderr) = run(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("SUCCESS: 22 rules found"), "{stdout}");
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

    // Every rule links to its runbook: a heading of the README, by GitHub's anchor for it.
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let anchors: Vec<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|heading| github_anchor(heading.trim_start_matches('#')))
        .collect();
    let base =
        "https://github.com/fargate-health-monitor/fargate-health-monitor/blob/main/README.md#";
    let mut alerts = 0;
    for block in rules_text.split("- alert: ").skip(1) {
        let name = block.lines().next().unwrap().trim();
        let url = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook_url: "))
            .unwrap_or_else(|| panic!("{name} has no runbook_url"))
            .trim_matches('"');
        let anchor = url
            .strip_prefix(base)
            .unwrap_or_else(|| panic!("{name}: {url} is not a README link"));
        assert_eq!(anchor, name.to_lowercase(), "{name}");
        assert!(
            anchors.iter().any(|a| a == anchor),
            "no README heading for {url}"
        );
        alerts += 1;
    }
    assert_eq!(alerts, 22);
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to hyphens, punctuation dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn the_kubernetes_manifests_pass_strict_validation_and_carry_a_valid_config() {
    let dir = repo_file("deploy/kubernetes");
    // What `kubectl apply -k` applies: the kustomization's resources, the Namespace first.
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    let manifests: Vec<std::path::PathBuf> = kustomization
        .split("\nresources:\n")
        .nth(1)
        .unwrap()
        .lines()
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(|name| dir.join(name))
        .collect();
    assert_eq!(manifests.len(), 7, "{manifests:?}");
    assert!(manifests[0].ends_with("namespace.yaml"));
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            manifests.contains(&path) || path.ends_with("kustomization.yaml"),
            "{} is in deploy/kubernetes/ but not applied",
            path.display()
        );
    }

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

    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("deploy/iam-policy.json")).unwrap(),
    )
    .unwrap();
    let actions: Vec<&str> = policy["Statement"][0]["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(actions.len(), 10, "{actions:?}");
    // A list and a describe per kind, and the cluster's describe; every place that spells the
    // policy out names every action.
    for (list, describe) in [
        ("ListClusters", "DescribeCluster"),
        ("ListFargateProfiles", "DescribeFargateProfile"),
        ("ListNodegroups", "DescribeNodegroup"),
        ("ListAddons", "DescribeAddon"),
        ("ListCapabilities", "DescribeCapability"),
    ] {
        for action in [list, describe] {
            let action = format!("eks:{action}");
            assert!(actions.contains(&action.as_str()), "{action}");
        }
    }
    for file in ["README.md", "docs/configuration.md", "docs/kubernetes.md"] {
        let text = std::fs::read_to_string(repo_file(file)).unwrap();
        for action in &actions {
            assert!(
                text.contains(&format!("`{action}`")) || text.contains(&format!("\"{action}\"")),
                "{file} does not name {action}"
            );
        }
    }

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
            "kind",
            "aws_account_id",
            "aws_region",
            "eks_cluster",
            "fargate_profile"
        ]
    );
    assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource");
    assert_eq!(
        dashboard["templating"]["list"][1]["definition"],
        "label_values(fargate_health_monitor_resources, kind)"
    );
    let panels = dashboard["panels"].as_array().unwrap();
    // A row per kind, and one for the monitor itself.
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "Fargate profiles",
            "Node groups",
            "Add-ons",
            "Clusters",
            "Capabilities",
            "The monitor"
        ]
    );
    let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
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
        "fargate_health_monitor_resources",
        "eks_nodegroup_health_issues",
        "eks_nodegroup_desired_size",
        "eks_nodegroup_min_size",
        "eks_nodegroup_max_size",
        "eks_addon_status",
        "eks_cluster_up",
        "eks_capability_health_issue_start_timestamp_seconds",
    ] {
        assert!(text.contains(name), "{name}");
    }
}

/// The memory the docs and the manifests promise comes from one measurement (bench/run.sh at
/// 10,000 resources of every kind): every place that states it states the same figures.
#[test]
fn the_memory_figures_agree_in_the_readme_the_docs_and_the_manifests() {
    let (start, peak) = ("23 MB at start", "72 MB peak");
    for file in [
        "README.md",
        "docs/kubernetes.md",
        "docs/development.md",
        "deploy/kubernetes/deployment.yaml",
        "deploy/helm/fargate-health-monitor/values.yaml",
    ] {
        let text = std::fs::read_to_string(repo_file(file)).unwrap();
        let flat = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("**", "");
        assert!(flat.contains(start), "{file} does not say {start}");
        assert!(flat.contains(peak), "{file} does not say {peak}");
    }
}
