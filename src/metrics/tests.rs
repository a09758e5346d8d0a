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
        ["fargate_health_monitor_resources{kind=\"fargate_profile\"} 3"]
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
