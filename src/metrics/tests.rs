use std::collections::BTreeMap;

use super::*;
use crate::diff::Rules;
use crate::model::{
    Incarnation, Input, IssueCode, Kind, Observation, RawIssue, ResourceKey, Status,
};
use crate::state::Labels;

fn key(profile: &str) -> ResourceKey {
    ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", profile)
}

fn observation(profile: &str, status: &str, issues: &[(&str, &[&str])], at: i64) -> Input {
    Input::Observed(Observation {
        key: key(profile),
        incarnation: Incarnation {
            arn: format!("arn:aws:eks:us-east-1:111122223333:fargateprofile/prod/{profile}/1"),
            created_at: Timestamp::from_millis(1_700_000_000_500),
        },
        status: Status::from_wire(status),
        info: BTreeMap::from([(
            "pod_execution_role_arn".to_owned(),
            "arn:aws:iam::111122223333:role/pods".to_owned(),
        )]),
        values: Default::default(),
        issues: issues
            .iter()
            .map(|(code, ids)| RawIssue {
                code: IssueCode::from_wire(code),
                message: "a \"quoted\" message".into(),
                resource_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            })
            .collect(),
        observed_at: Timestamp::from_secs(at),
    })
}

/// The samples of `name` whose labels contain every one of `having`.
fn samples<'a>(text: &'a str, name: &str, having: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| having.iter().all(|h| line.contains(h)))
        .collect()
}

fn state_with_three_profiles() -> State {
    let state = State::new(Rules::default(), Vec::new());
    let labels = Arc::new(Labels::from([("env".to_owned(), "pro\"d\\1".to_owned())]));
    for profile in ["healthy", "broken", "never"] {
        state.discovered(&key(profile), labels.clone(), Timestamp::from_secs(100));
    }
    state.apply(&observation("healthy", "ACTIVE", &[], 200));
    state.apply(&observation(
        "broken",
        "SOMETHING_NEW",
        &[
            ("AccessDenied", &["role-b", "role-a", "role-b"]),
            ("BrandNewCode", &["subnet-1"]),
        ],
        200,
    ));
    state
}

#[test]
fn a_profile_never_described_exports_only_up_0() {
    let state = state_with_three_profiles();
    let text = render_snapshot(&state.snapshot(), Timestamp::from_secs(260));
    let never = "fargate_profile=\"never\"";
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(never)).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("eks_fargate_profile_up{") && lines[0].ends_with("} 0"));
}

#[test]
fn issues_show_1_for_open_codes_0_for_other_known_codes_and_unknowns_verbatim() {
    let state = state_with_three_profiles();
    let text = render_snapshot(&state.snapshot(), Timestamp::from_secs(260));
    let broken = "fargate_profile=\"broken\"";
    let issues = samples(&text, "eks_fargate_profile_health_issues", &[broken]);
    assert_eq!(
        issues.len(),
        Kind::FARGATE_PROFILE.spec().codes.len() + 1,
        "{issues:?}"
    );
    for line in &issues {
        let open = line.contains("code=\"AccessDenied\"") || line.contains("code=\"BrandNewCode\"");
        assert!(line.ends_with(if open { "} 1" } else { "} 0" }), "{line}");
    }
    let healthy = samples(&text, "eks_fargate_profile_health_issues", &["\"healthy\""]);
    assert_eq!(healthy.len(), Kind::FARGATE_PROFILE.spec().codes.len());
    assert!(healthy.iter().all(|line| line.ends_with("} 0")));

    let resources = samples(
        &text,
        "eks_fargate_profile_health_issue_resources",
        &[broken],
    );
    assert_eq!(resources.len(), 2);
    assert!(
        resources
            .iter()
            .any(|l| l.contains("AccessDenied") && l.ends_with("} 2"))
    );
    let starts = samples(
        &text,
        "eks_fargate_profile_health_issue_start_timestamp_seconds",
        &[],
    );
    assert_eq!(starts.len(), 2);
    assert!(starts.iter().all(|l| l.ends_with("} 200")));

    let statuses = samples(&text, "eks_fargate_profile_status", &[broken]);
    assert_eq!(
        statuses.len(),
        Kind::FARGATE_PROFILE.spec().statuses.len() + 1
    );
    assert!(
        statuses
            .iter()
            .any(|l| l.contains("status=\"SOMETHING_NEW\"") && l.ends_with("} 1"))
    );
    assert_eq!(statuses.iter().filter(|l| l.ends_with("} 1")).count(), 1);
    let active = samples(
        &text,
        "eks_fargate_profile_status",
        &["\"healthy\"", "\"ACTIVE\""],
    );
    assert_eq!(active.len(), 1);
    assert!(active[0].ends_with("} 1"));
}

#[test]
fn labels_info_and_timestamps_are_encoded_as_the_contract_says() {
    let state = state_with_three_profiles();
    let text = render_snapshot(&state.snapshot(), Timestamp::from_secs(260));
    let info = samples(&text, "eks_fargate_profile_info", &["\"healthy\""]);
    assert_eq!(
        info,
        [
            "eks_fargate_profile_info{aws_account_id=\"111122223333\",aws_region=\"us-east-1\",\
          eks_cluster=\"prod\",fargate_profile=\"healthy\",env=\"pro\\\"d\\\\1\",\
          arn=\"arn:aws:eks:us-east-1:111122223333:fargateprofile/prod/healthy/1\",\
          pod_execution_role_arn=\"arn:aws:iam::111122223333:role/pods\"} 1"
        ]
    );
    let created = samples(
        &text,
        "eks_fargate_profile_created_timestamp_seconds",
        &["\"healthy\""],
    );
    assert!(created[0].ends_with("} 1700000000.5"), "{created:?}");
    let success = samples(
        &text,
        "eks_fargate_profile_last_success_timestamp_seconds",
        &[],
    );
    assert_eq!(success.len(), 2);
    assert_eq!(
        samples(&text, "fargate_health_monitor_resources", &[]),
        [
            "fargate_health_monitor_resources{kind=\"addon\"} 0",
            "fargate_health_monitor_resources{kind=\"capability\"} 0",
            "fargate_health_monitor_resources{kind=\"cluster\"} 0",
            "fargate_health_monitor_resources{kind=\"fargate_profile\"} 3",
            "fargate_health_monitor_resources{kind=\"nodegroup\"} 0",
        ]
    );
    // The stalest profile was discovered at 100 and never attempted.
    assert_eq!(
        samples(
            &text,
            "fargate_health_monitor_oldest_observation_age_seconds",
            &[]
        ),
        ["fargate_health_monitor_oldest_observation_age_seconds 160"]
    );
    let opened = samples(
        &text,
        "fargate_health_monitor_events_total",
        &["issue_opened"],
    );
    assert_eq!(
        opened,
        ["fargate_health_monitor_events_total{kind=\"issue_opened\"} 2"]
    );
    // No resource ids or messages in any label.
    assert!(!text.contains("role-a") && !text.contains("quoted"));
}

#[test]
fn the_full_render_has_the_registry_series_and_gzip_round_trips() {
    let state = Arc::new(state_with_three_profiles());
    let metrics = Metrics::new(state, Clock::wall());
    metrics.api().observe(
        "us-east-1",
        Operation::DescribeFargateProfile,
        Err(ErrorKind::Throttled),
        Duration::from_millis(30),
    );
    let text = metrics.render();
    assert!(text.contains(
        "fargate_health_monitor_api_requests_total{aws_region=\"us-east-1\",operation=\"DescribeFargateProfile\",outcome=\"throttled\"} 1"
    ));
    assert!(text.contains("fargate_health_monitor_api_request_duration_seconds_bucket"));
    assert!(text.contains(&format!(
        "fargate_health_monitor_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    let compressed = metrics.render_gzip_to(Vec::new()).unwrap();
    assert!(compressed.len() < text.len());
    let mut decoded = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut decoded,
    )
    .unwrap();
    // The same series (the process_* values move between two renders).
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .map(|line| line.split([' ', '{']).next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(names(&decoded), names(&text));
}

/// A writer that records the size of each write, and fails after `fail_after` of them.
struct Recorder {
    text: Vec<u8>,
    writes: Vec<usize>,
    fail_after: usize,
}

impl std::io::Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.writes.len() == self.fail_after {
            return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        }
        self.writes.push(buf.len());
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_large_page_goes_out_in_chunks_and_stops_when_the_scraper_goes_away() {
    let state = Arc::new(State::new(Rules::default(), Vec::new()));
    let labels = Arc::new(Labels::new());
    for i in 0..2_000 {
        let profile = format!("profile-{i:04}");
        state.discovered(&key(&profile), labels.clone(), Timestamp::from_secs(100));
        state.apply(&observation(&profile, "ACTIVE", &[], 200));
    }
    let metrics = Metrics::new(state.clone(), Clock::fixed(Timestamp::from_secs(260)));
    let mut whole = Recorder {
        text: Vec::new(),
        writes: Vec::new(),
        fail_after: usize::MAX,
    };
    metrics.render_to(&mut whole).unwrap();
    let domain = render_snapshot(&state.snapshot(), Timestamp::from_secs(260));
    assert!(domain.len() > 10 * CHUNK, "{}", domain.len());
    // The domain series go out a chunk at a time, never much more, and add up to the page.
    let chunks = whole.writes.iter().filter(|n| **n >= CHUNK).count();
    assert!(chunks >= 10, "{:?}", whole.writes);
    assert!(whole.writes.iter().all(|n| *n < CHUNK + 4096));
    let text = String::from_utf8(whole.text).unwrap();
    assert_eq!(
        samples(&text, "eks_fargate_profile_up", &[]).len(),
        2_000,
        "every profile once"
    );
    assert!(text.contains("fargate_health_monitor_build_info"));

    let mut gone = Recorder {
        text: Vec::new(),
        writes: Vec::new(),
        fail_after: 2,
    };
    let error = metrics.render_to(&mut gone).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe);
    assert_eq!(gone.writes.len(), 2);
}

/// An observation of a resource of any kind, with its info labels and values.
fn observed(
    key: &ResourceKey,
    status: &str,
    info: &[(&str, &str)],
    values: &[(&str, i64)],
    issues: &[(&str, &[&str])],
    at: i64,
) -> Input {
    Input::Observed(Observation {
        key: key.clone(),
        incarnation: Incarnation {
            arn: format!(
                "arn:aws:eks:us-east-1:111122223333:{}/{}",
                key.kind.name(),
                key.name
            ),
            created_at: Timestamp::from_secs(1_700_000_000),
        },
        status: Status::from_wire(status),
        info: info
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        values: values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        issues: issues
            .iter()
            .map(|(code, ids)| RawIssue {
                code: IssueCode::from_wire(code),
                message: "a message".into(),
                resource_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            })
            .collect(),
        observed_at: Timestamp::from_secs(at),
    })
}

fn nodegroup() -> ResourceKey {
    ResourceKey::new(
        Kind::NODEGROUP,
        "111122223333",
        "us-east-1",
        "prod",
        "ng-general",
    )
}

fn addon() -> ResourceKey {
    ResourceKey::new(Kind::ADDON, "111122223333", "us-east-1", "prod", "vpc-cni")
}

fn cluster() -> ResourceKey {
    ResourceKey::new(Kind::CLUSTER, "111122223333", "us-east-1", "prod", "prod")
}

fn capability() -> ResourceKey {
    ResourceKey::new(
        Kind::CAPABILITY,
        "111122223333",
        "us-east-1",
        "prod",
        "argo",
    )
}

/// A profile, a node group (degraded, with an issue), an add-on, a cluster and a capability
/// that was never described.
fn state_with_every_kind() -> State {
    let state = State::new(Rules::default(), Vec::new());
    let labels = Arc::new(Labels::from([("env".to_owned(), "prod".to_owned())]));
    for key in [key("web"), nodegroup(), addon(), cluster(), capability()] {
        state.discovered(&key, labels.clone(), Timestamp::from_secs(100));
    }
    state.apply(&observation("web", "ACTIVE", &[], 200));
    state.apply(&observed(
        &nodegroup(),
        "DEGRADED",
        &[
            ("node_role_arn", "arn:aws:iam::111122223333:role/nodes"),
            ("capacity_type", "ON_DEMAND"),
            ("release_version", "1.33.0-20250704"),
        ],
        &[("desired_size", 3), ("min_size", 1), ("max_size", 10)],
        &[("AsgInstanceLaunchFailures", &["asg-1"])],
        200,
    ));
    state.apply(&observed(
        &addon(),
        "ACTIVE",
        &[("addon_version", "v1.19.0-eksbuild.1")],
        &[],
        &[],
        200,
    ));
    state.apply(&observed(
        &cluster(),
        "ACTIVE",
        &[("version", "1.33"), ("platform_version", "eks.9")],
        &[],
        &[],
        200,
    ));
    state
}

const SUFFIXES: [&str; 8] = [
    "info",
    "status",
    "health_issues",
    "health_issue_resources",
    "health_issue_start_timestamp_seconds",
    "created_timestamp_seconds",
    "up",
    "last_success_timestamp_seconds",
];

/// The metric name of a sample or `HELP`/`TYPE` line.
fn family_of(line: &str) -> &str {
    let line = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
        .unwrap_or(line);
    line.split([' ', '{']).next().unwrap_or_default()
}

#[test]
fn every_kind_has_its_families_with_its_own_name_label() {
    let state = state_with_every_kind();
    let text = render_snapshot(&state.snapshot(), Timestamp::from_secs(260));
    for prefix in [
        "eks_fargate_profile",
        "eks_nodegroup",
        "eks_addon",
        "eks_cluster",
        "eks_capability",
    ] {
        for suffix in SUFFIXES {
            let name = format!("{prefix}_{suffix}");
            let help = format!("# HELP {name} ");
            assert_eq!(
                text.lines().filter(|l| l.starts_with(&help)).count(),
                1,
                "{name}"
            );
            assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{name}");
        }
    }
    let base = "aws_account_id=\"111122223333\",aws_region=\"us-east-1\",eks_cluster=\"prod\"";
    assert_eq!(
        samples(&text, "eks_nodegroup_info", &[]),
        [format!(
            "eks_nodegroup_info{{{base},eks_nodegroup=\"ng-general\",env=\"prod\",\
             arn=\"arn:aws:eks:us-east-1:111122223333:nodegroup/ng-general\",\
             capacity_type=\"ON_DEMAND\",node_role_arn=\"arn:aws:iam::111122223333:role/nodes\",\
             release_version=\"1.33.0-20250704\"}} 1"
        )]
    );
    assert_eq!(
        samples(&text, "eks_addon_up", &[]),
        [format!(
            "eks_addon_up{{{base},eks_addon=\"vpc-cni\",env=\"prod\"}} 1"
        )]
    );
    // A cluster's series carry only the account, region and cluster labels.
    assert_eq!(
        samples(&text, "eks_cluster_up", &[]),
        [format!("eks_cluster_up{{{base},env=\"prod\"}} 1")]
    );
    assert!(
        samples(&text, "eks_cluster_info", &[])[0]
            .ends_with(",platform_version=\"eks.9\",version=\"1.33\"} 1")
    );
    // A capability never described: only up 0.
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("eks_capability"))
            .collect::<Vec<_>>(),
        [format!(
            "eks_capability_up{{{base},eks_capability=\"argo\",env=\"prod\"}} 0"
        )]
    );
    // Each kind's own statuses and codes: a series per known one.
    let statuses = samples(&text, "eks_nodegroup_status", &[]);
    assert_eq!(statuses.len(), Kind::NODEGROUP.spec().statuses.len());
    assert_eq!(
        statuses
            .iter()
            .filter(|l| l.ends_with("} 1"))
            .collect::<Vec<_>>(),
        [&format!(
            "eks_nodegroup_status{{{base},eks_nodegroup=\"ng-general\",env=\"prod\",status=\"DEGRADED\"}} 1"
        )]
    );
    let issues = samples(&text, "eks_nodegroup_health_issues", &[]);
    assert_eq!(issues.len(), Kind::NODEGROUP.spec().codes.len());
    assert_eq!(
        issues.iter().filter(|l| l.ends_with("} 1")).count(),
        1,
        "{issues:?}"
    );
    assert_eq!(
        samples(&text, "eks_addon_health_issues", &[]).len(),
        Kind::ADDON.spec().codes.len()
    );
    assert_eq!(
        samples(&text, "eks_cluster_status", &[]).len(),
        Kind::CLUSTER.spec().statuses.len()
    );
    assert_eq!(
        samples(&text, "eks_nodegroup_health_issue_resources", &[]),
        [format!(
            "eks_nodegroup_health_issue_resources{{{base},eks_nodegroup=\"ng-general\",env=\"prod\",code=\"AsgInstanceLaunchFailures\"}} 1"
        )]
    );
    // No other kind's series under the Fargate names.
    assert!(
        text.lines()
            .filter(|l| l.starts_with("eks_fargate_profile_"))
            .all(|l| l.contains("fargate_profile=\"web\""))
    );
    assert!(text.contains(
        "# HELP eks_nodegroup_info Always 1 for a node group described at least once; \
         labels arn, node_role_arn, capacity_type and release_version.\n"
    ));
    assert!(text.contains(
        "# HELP eks_addon_created_timestamp_seconds Unix time the add-on was created.\n"
    ));
}

#[test]
fn a_node_group_has_its_size_gauges() {
    let state = state_with_every_kind();
    let text = render_snapshot(&state.snapshot(), Timestamp::from_secs(260));
    let labels = "aws_account_id=\"111122223333\",aws_region=\"us-east-1\",eks_cluster=\"prod\",\
                  eks_nodegroup=\"ng-general\",env=\"prod\"";
    for (name, value) in [("desired_size", 3), ("min_size", 1), ("max_size", 10)] {
        let family = format!("eks_nodegroup_{name}");
        assert!(text.contains(&format!("# TYPE {family} gauge\n")));
        assert_eq!(
            samples(&text, &family, &[]),
            [format!("{family}{{{labels}}} {value}")]
        );
    }
    // Sizes are the node group's only: no other kind has them.
    assert!(
        text.lines()
            .filter(|l| l.contains("_size"))
            .all(|l| family_of(l).starts_with("eks_nodegroup_"))
    );
}

#[test]
fn every_family_is_contiguous_under_one_header_across_chunks() {
    // Enough resources of several kinds that families straddle chunks.
    let state = State::new(Rules::default(), Vec::new());
    let labels = Arc::new(Labels::new());
    for i in 0..600 {
        let profile = format!("profile-{i:04}");
        state.discovered(&key(&profile), labels.clone(), Timestamp::from_secs(100));
        state.apply(&observation(&profile, "ACTIVE", &[], 200));
        let group = ResourceKey::new(
            Kind::NODEGROUP,
            "111122223333",
            "us-east-1",
            "prod",
            format!("ng-{i:04}"),
        );
        state.discovered(&group, labels.clone(), Timestamp::from_secs(100));
        state.apply(&observed(
            &group,
            "ACTIVE",
            &[],
            &[("desired_size", 2)],
            &[],
            200,
        ));
        let addon = ResourceKey::new(
            Kind::ADDON,
            "111122223333",
            "us-east-1",
            "prod",
            format!("addon-{i:04}"),
        );
        state.discovered(&addon, labels.clone(), Timestamp::from_secs(100));
        state.apply(&observed(&addon, "ACTIVE", &[], &[], &[], 200));
    }
    let snapshot = state.snapshot();
    let mut page = Page::new(snapshot, Timestamp::from_secs(260), None);
    let mut chunks = 0;
    let mut text = String::new();
    while let Some(chunk) = page.next_chunk().unwrap() {
        chunks += 1;
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(chunks > 10, "{chunks}");
    let mut seen: Vec<&str> = Vec::new();
    for line in text.lines() {
        let family = family_of(line);
        if seen.last() != Some(&family) {
            assert!(!seen.contains(&family), "{family} is split");
            assert!(line.starts_with("# HELP "), "{family} starts with {line}");
            seen.push(family);
        }
    }
    for name in ["eks_fargate_profile_up", "eks_nodegroup_up", "eks_addon_up"] {
        assert_eq!(samples(&text, name, &[]).len(), 600, "{name}");
    }
    assert_eq!(samples(&text, "eks_nodegroup_desired_size", &[]).len(), 600);
    assert_eq!(
        samples(&text, "fargate_health_monitor_resources", &[]),
        [
            "fargate_health_monitor_resources{kind=\"addon\"} 600",
            "fargate_health_monitor_resources{kind=\"capability\"} 0",
            "fargate_health_monitor_resources{kind=\"cluster\"} 0",
            "fargate_health_monitor_resources{kind=\"fargate_profile\"} 600",
            "fargate_health_monitor_resources{kind=\"nodegroup\"} 600",
        ]
    );
}

#[test]
fn a_resource_that_disappears_leaves_no_series() {
    let state = state_with_every_kind();
    for key in [nodegroup(), cluster()] {
        state.apply(&Input::Gone(crate::model::Gone {
            key,
            observed_at: Timestamp::from_secs(300),
        }));
    }
    let text = render_snapshot(&state.snapshot(), Timestamp::from_secs(360));
    for name in ["ng-general", "eks_nodegroup_desired_size{"] {
        assert!(!text.contains(name), "{name} is still there");
    }
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("eks_nodegroup") || l.starts_with("eks_cluster_")),
        "{text}"
    );
    // The others stay.
    assert_eq!(samples(&text, "eks_addon_up", &[]).len(), 1);
    assert_eq!(samples(&text, "eks_fargate_profile_up", &[]).len(), 1);
}

/// `promtool` on `PATH`, or a skip with a notice (under `CI` a missing promtool fails).
fn promtool() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing; CI installs it (.ci/run)"
        );
        eprintln!("skipped: needs promtool; install the Debian package prometheus");
    }
    found
}

#[test]
fn promtool_accepts_a_scrape_of_every_kind() {
    let Some(promtool) = promtool() else {
        return;
    };
    let state = Arc::new(state_with_every_kind());
    let metrics = Metrics::new(state, Clock::fixed(Timestamp::from_secs(260)));
    let text = metrics.render();
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool check metrics: {said}");
    assert!(said.trim().is_empty(), "promtool complained: {said}");
}

#[test]
fn every_label_of_every_kind_is_one_a_static_label_may_not_take() {
    for kind in Kind::ALL.iter().copied() {
        let extras = Extras::of(kind);
        let names = kind
            .spec()
            .name_label
            .into_iter()
            .chain(extras.info.iter().copied());
        for name in names {
            assert!(
                crate::config::OWN_LABELS.contains(&name),
                "{}: label {name} is not reserved",
                kind.name()
            );
        }
    }
}
