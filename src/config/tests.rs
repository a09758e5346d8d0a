//! Config tests: every key's happy path and errors, problems collected with positions,
//! `${VAR}`, `_file`, and secrets kept out of every message.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// Environment variables and files for one test.
#[derive(Default)]
struct FakeEnv {
    vars: BTreeMap<String, String>,
    files: BTreeMap<PathBuf, String>,
}

impl FakeEnv {
    fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }
    fn file(mut self, path: &str, content: &str) -> Self {
        self.files.insert(path.into(), content.into());
        self
    }
}

impl Environment for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }
}

const TARGET: &str = "[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n";

fn parse_with(text: &str, env: &FakeEnv) -> Result<Loaded, ConfigError> {
    parse(text, Path::new("/etc/fhm/config.toml"), env)
}

fn ok(text: &str) -> Config {
    ok_with(text, &FakeEnv::default())
}

fn ok_with(text: &str, env: &FakeEnv) -> Config {
    match parse_with(text, env) {
        Ok(loaded) => loaded.config,
        Err(err) => panic!("expected a valid config, got: {err}"),
    }
}

fn problems(text: &str) -> Vec<String> {
    problems_with(text, &FakeEnv::default())
}

/// Every problem as `line:column: message`.
fn problems_with(text: &str, env: &FakeEnv) -> Vec<String> {
    match parse_with(text, env) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(err) => err
            .problems
            .iter()
            .map(|p| {
                assert_eq!(p.file, Path::new("/etc/fhm/config.toml"));
                format!("{}:{}: {}", p.line, p.column, p.message)
            })
            .collect(),
    }
}

/// Asserts exactly one problem, at `line`, whose message contains `needle`.
fn one_problem(text: &str, line: usize, needle: &str) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("{line}:")) && found[0].contains(needle),
        "wanted line {line} and {needle:?}, got {found:#?}"
    );
}

#[test]
fn a_minimal_config_takes_every_default() {
    let config = ok(TARGET);
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:9877");
    assert_eq!(config.server.external_url, None);
    assert_eq!(config.poll.interval, Duration::from_secs(60));
    assert_eq!(config.poll.discovery_interval, Duration::from_secs(600));
    assert_eq!(config.poll.timeout, Duration::from_secs(10));
    assert_eq!(config.poll.concurrency, 16);
    assert_eq!(config.poll.max_requests_per_second, 10.0);
    assert_eq!(config.state.path, Path::new(defaults::STATE_PATH));
    assert_eq!(config.alerts.resolve_after, Duration::ZERO);
    assert!(config.sinks.is_empty());
    let target = &config.targets[0];
    assert_eq!(target.region, "us-east-1");
    assert_eq!(target.cluster.as_str(), "prod");
    assert!(!target.cluster.is_glob());
    assert_eq!(target.profiles.len(), 1);
    assert!(target.profiles[0].matches("anything"));
    assert!(target.labels.is_empty());
    assert_eq!(target.account_id, None);
}

#[test]
fn every_section_key_is_read() {
    let config = ok(r#"
[server]
listen = "0.0.0.0:9900"
external_url = "https://fhm.example.com"

[poll]
interval = "2m"
discovery_interval = "15m"
timeout = "5s"
concurrency = 4
max_requests_per_second = 2.5

[state]
path = "/tmp/state.json"

[alerts]
resolve_after = "3m"

[[targets]]
region = "eu-west-1"
cluster = "prod-*"
profiles = ["default", "kube-*"]
labels = { env = "prod", team = "platform" }
account_id = "111122223333"
profile = "prod-readonly"
role_arn = "arn:aws:iam::111122223333:role/fargate-health-reader"
external_id = "abc-123"
endpoint_url = "https://eks.eu-west-1.amazonaws.com"
sts_endpoint_url = "https://sts.eu-west-1.amazonaws.com"

[[targets]]
region = "us-gov-west-1"
cluster = "*"
profiles = "default"
endpoint_url = "http://127.0.0.1:4566"
"#);
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:9900");
    assert_eq!(
        config.server.external_url.as_ref().map(|u| u.as_str()),
        Some("https://fhm.example.com/")
    );
    assert_eq!(config.poll.interval, Duration::from_secs(120));
    assert_eq!(config.poll.discovery_interval, Duration::from_secs(900));
    assert_eq!(config.poll.timeout, Duration::from_secs(5));
    assert_eq!(config.poll.concurrency, 4);
    assert_eq!(config.poll.max_requests_per_second, 2.5);
    assert_eq!(config.state.path, Path::new("/tmp/state.json"));
    assert_eq!(config.alerts.resolve_after, Duration::from_secs(180));

    let t = &config.targets[0];
    assert!(t.cluster.is_glob() && t.cluster.matches("prod-eu") && !t.cluster.matches("dev"));
    assert!(t.profiles[1].matches("kube-system") && !t.profiles[0].matches("defaults"));
    assert_eq!(t.labels["env"], "prod");
    assert_eq!(t.labels["team"], "platform");
    assert_eq!(t.account_id.as_deref(), Some("111122223333"));
    assert_eq!(t.aws_profile.as_deref(), Some("prod-readonly"));
    assert_eq!(t.external_id.as_deref(), Some("abc-123"));
    assert!(t.role_arn.is_some() && t.endpoint_url.is_some() && t.sts_endpoint_url.is_some());

    let t = &config.targets[1];
    assert_eq!(t.region, "us-gov-west-1");
    assert!(t.cluster.matches("anything"));
    assert_eq!(t.profiles.len(), 1);
    assert_eq!(t.profiles[0].as_str(), "default");
}

#[test]
fn several_problems_are_reported_at_once_with_lines_and_columns() {
    let text = r#"
[poll]
intervall = "60s"
concurrency = 0

[[targets]]
region = "us-east-1"
cluster = "prod"
endpoint_url = "not a url"

[[sinks]]
type = "webhook"
url = "https://hooks.example.com/x"
events = ["issue_opened", "issue_closed"]
"#;
    let found = problems(text);
    assert_eq!(
        found,
        [
            "3:1: unknown key `intervall` in [poll] (did you mean `interval`?)",
            "4:15: `concurrency` must be between 1 and 1024, not 0",
            "9:16: `endpoint_url`: \"not a url\" is not an http:// or https:// URL",
            "14:27: unknown event kind \"issue_closed\"; use any of issue_opened, issue_updated, issue_resolved, status_changed, resource_deleted",
        ]
    );
}

#[test]
fn syntax_errors_are_located() {
    let found = problems("[poll]\ninterval = \"60s\nconcurrency = 2\n");
    assert!(found[0].starts_with("2:"), "{found:?}");
    assert!(found[0].contains("invalid TOML"), "{found:?}");
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let found = problems(&format!("{TARGET}region = \"us-west-2\"\n"));
    assert!(
        found[0].starts_with("4:") && found[0].contains("invalid TOML"),
        "{found:?}"
    );
}

#[test]
fn unknown_keys_everywhere_are_reported() {
    let text = format!(
        "colour = 1\n[server]\nlisten_addr = \"x\"\n[state]\npth = \"/x\"\n[alerts]\nresolve = \"1s\"\n{TARGET}clusters = \"x\"\n"
    );
    let found = problems(&text);
    assert_eq!(found.len(), 5, "{found:#?}");
    assert!(found[0].starts_with("1:1: unknown key `colour` in the top level"));
    assert!(found[1].contains("`listen_addr` in [server] (did you mean `listen`?)"));
    assert!(found[2].contains("`pth` in [state] (did you mean `path`?)"));
    assert!(found[3].contains("`resolve` in [alerts]"));
    assert!(found[4].starts_with("11:1:") && found[4].contains("did you mean `cluster`?"));
}

#[test]
fn wrong_types_are_named() {
    one_problem(
        &format!("[poll]\ninterval = 60\n{TARGET}"),
        2,
        "must be a duration string",
    );
    one_problem(
        &format!("[poll]\nconcurrency = \"4\"\n{TARGET}"),
        2,
        "must be an integer, not a string",
    );
    one_problem(
        &format!("[poll]\nmax_requests_per_second = true\n{TARGET}"),
        2,
        "must be a number",
    );
    one_problem(&format!("poll = 3\n{TARGET}"), 1, "`poll` must be a table");
    one_problem("targets = 1\n", 1, "must be an array of tables");
    one_problem(
        &format!("{TARGET}labels = [\"a\"]\n"),
        4,
        "`labels` must be a table",
    );
}

#[test]
fn durations_must_parse() {
    one_problem(
        &format!("[poll]\ninterval = \"sixty\"\n{TARGET}"),
        2,
        "`interval`: \"sixty\" is not a duration; write a number and a unit, such as \"30s\"",
    );
    one_problem(
        &format!("[poll]\ninterval = \"60\"\n{TARGET}"),
        2,
        "`interval`: \"60\" has no unit; write \"60s\" for seconds or \"60m\" for minutes",
    );
    one_problem(
        &format!("[poll]\ninterval = \"0s\"\n{TARGET}"),
        2,
        "`interval` must be greater than 0s",
    );
    one_problem(
        &format!("[poll]\ndiscovery_interval = \"0s\"\n{TARGET}"),
        2,
        "`discovery_interval` must be greater than 0s",
    );
    let config = ok(&format!("[alerts]\nresolve_after = \"1h 30m\"\n{TARGET}"));
    assert_eq!(config.alerts.resolve_after, Duration::from_secs(5400));
}

#[test]
fn resolve_after_must_be_a_duration() {
    one_problem(
        &format!("[alerts]\nresolve_after = \"soon\"\n{TARGET}"),
        2,
        "`resolve_after`: \"soon\" is not a duration",
    );
    one_problem(
        &format!("[alerts]\nresolve_after = 300\n{TARGET}"),
        2,
        "must be a duration string",
    );
}

#[test]
fn the_timeout_must_be_shorter_than_the_interval() {
    one_problem(
        &format!("[poll]\ninterval = \"30s\"\ntimeout = \"30s\"\n{TARGET}"),
        3,
        "`timeout` (30s) must be shorter than `interval` (30s)",
    );
    one_problem(
        &format!("[poll]\ntimeout = \"0s\"\n{TARGET}"),
        2,
        "greater than 0s",
    );
    one_problem(
        &format!("[poll]\ninterval = \"5s\"\n{TARGET}"),
        2,
        "default `timeout`",
    );
    let config = ok(&format!(
        "[poll]\ninterval = \"5s\"\ntimeout = \"2s\"\n{TARGET}"
    ));
    assert_eq!(config.poll.timeout, Duration::from_secs(2));
}

#[test]
fn concurrency_and_rate_ranges() {
    one_problem(
        &format!("[poll]\nconcurrency = -1\n{TARGET}"),
        2,
        "between 1 and 1024",
    );
    one_problem(
        &format!("[poll]\nconcurrency = 5000\n{TARGET}"),
        2,
        "between 1 and 1024",
    );
    one_problem(
        &format!("[poll]\nmax_requests_per_second = 0\n{TARGET}"),
        2,
        "between 0.01 and 10000, not 0",
    );
    one_problem(
        &format!("[poll]\nmax_requests_per_second = -2.5\n{TARGET}"),
        2,
        "between 0.01 and 10000, not -2.5",
    );
    one_problem(
        &format!("[poll]\nmax_requests_per_second = nan\n{TARGET}"),
        2,
        "finite",
    );
    assert_eq!(
        ok(&format!("[poll]\nconcurrency = 1\n{TARGET}"))
            .poll
            .concurrency,
        1
    );
    assert_eq!(
        ok(&format!("[poll]\nmax_requests_per_second = 1\n{TARGET}"))
            .poll
            .max_requests_per_second,
        1.0
    );
}

#[test]
fn server_keys_are_checked() {
    one_problem(
        &format!("[server]\nlisten = \"localhost\"\n{TARGET}"),
        2,
        "not an address with a port",
    );
    one_problem(
        &format!("[server]\nexternal_url = \"ftp://x\"\n{TARGET}"),
        2,
        "not an http:// or https:// URL",
    );
    for tail in ["?tok=hunter2", "/x#frag"] {
        let text = format!("[server]\nexternal_url = \"https://fhm.example.com{tail}\"\n{TARGET}");
        one_problem(&text, 2, "must not have a query or a fragment");
    }
    for userinfo in ["u:hunter2@", "u@", ":hunter2@"] {
        let text =
            format!("[server]\nexternal_url = \"https://{userinfo}fhm.example.com\"\n{TARGET}");
        one_problem(&text, 2, "must not carry a user or password");
        let err = parse_with(&text, &FakeEnv::default())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
    assert_eq!(
        ok(&format!("[server]\nlisten = \"[::]:80\"\n{TARGET}"))
            .server
            .listen
            .port(),
        80
    );
}

#[test]
fn the_state_path_must_not_be_empty() {
    one_problem(
        &format!("[state]\npath = \"\"\n{TARGET}"),
        2,
        "must not be empty",
    );
}

#[test]
fn targets_are_required_with_region_and_cluster() {
    one_problem("", 1, "no [[targets]]");
    one_problem(
        "targets = []\n[poll]\ninterval = \"1m\"\n",
        1,
        "no [[targets]]",
    );
    let found = problems("[[targets]]\nprofiles = [\"x\"]\n");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().any(|p| p.contains("missing the key `region`")));
    assert!(
        found
            .iter()
            .any(|p| p.contains("missing the key `cluster`"))
    );
    assert!(
        found[0].starts_with("1:"),
        "points at the [[targets]] header: {found:?}"
    );
}

#[test]
fn target_values_are_checked() {
    let target = |extra: &str| format!("{TARGET}{extra}\n");
    one_problem(
        "[[targets]]\nregion = \"US East\"\ncluster = \"prod\"\n",
        2,
        "not an AWS region",
    );
    one_problem(
        "[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod cluster\"\n",
        3,
        "neither a glob nor a valid EKS name",
    );
    one_problem(
        "[[targets]]\nregion = \"us-east-1\"\ncluster = \"[a-\"\n",
        3,
        "invalid glob",
    );
    one_problem(&target("profiles = []"), 4, "must not be empty");
    one_problem(
        &target("profiles = [\"ok\", 3]"),
        4,
        "must be a string, not an integer",
    );
    one_problem(
        &target("account_id = \"12345\""),
        4,
        "not a 12-digit AWS account id",
    );
    one_problem(&target("account_id = 111122223333"), 4, "must be a string");
    one_problem(&target("profile = \"\""), 4, "must not be empty");
    one_problem(
        &target("role_arn = \"arn:aws:iam::111122223333:user/x\""),
        4,
        "not an IAM role ARN",
    );
    one_problem(&target("external_id = \"abc\""), 4, "needs `role_arn`");
    one_problem(
        &target("role_arn = \"arn:aws:iam::111122223333:role/r\"\nexternal_id = \"a b\""),
        5,
        "2 to 1224 characters",
    );
    one_problem(
        &target("endpoint_url = \"http://eks.example.com\""),
        4,
        "must use https://",
    );
    one_problem(
        &target("sts_endpoint_url = \"http://10.0.0.1:443\""),
        4,
        "must use https://",
    );
    // Loopback may be plain http: the simulator and local test stacks.
    for url in [
        "http://127.0.0.1:4566",
        "http://localhost:1",
        "http://[::1]:8080",
    ] {
        let config = ok(&target(&format!(
            "endpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\""
        )));
        assert!(config.targets[0].endpoint_url.is_some());
    }
    let config = ok(&target(
        "role_arn = \"arn:aws-cn:iam::111122223333:role/path/r\"",
    ));
    assert!(config.targets[0].role_arn.is_some());
}

#[test]
fn label_names_must_be_valid_and_free() {
    let target = |labels: &str| format!("{TARGET}labels = {{ {labels} }}\n");
    one_problem(
        &target("\"1env\" = \"x\""),
        4,
        "not a valid Prometheus label name",
    );
    one_problem(
        &target("\"a-b\" = \"x\""),
        4,
        "not a valid Prometheus label name",
    );
    one_problem(&target("__meta = \"x\""), 4, "reserved");
    one_problem(&target("job = \"x\""), 4, "reserved");
    one_problem(&target("instance = \"x\""), 4, "reserved");
    for own in [
        "aws_account_id",
        "aws_region",
        "eks_cluster",
        "fargate_profile",
        "code",
        "status",
    ] {
        one_problem(&target(&format!("{own} = \"x\"")), 4, "already used");
    }
    one_problem(&target("env = \"\""), 4, "empty value");
    one_problem(&target("env = 1"), 4, "must be a string");
    // Prometheus uses `region`/`cluster` itself often; ours avoid them, so users may set them.
    let config = ok(&target(
        "region = \"us\", cluster = \"c\", _private = \"y\"",
    ));
    assert_eq!(config.targets[0].labels.len(), 3);
}

#[test]
fn several_target_problems_come_together() {
    let found = problems(
        "[[targets]]\nregion = \"nowhere\"\ncluster = \"a b\"\nlabels = { job = \"x\" }\naccount_id = \"1\"\n",
    );
    let lines: Vec<&str> = found.iter().map(|p| &p[..2]).collect();
    assert_eq!(lines, ["2:", "3:", "4:", "5:"], "{found:#?}");
}

const SLACK: &str =
    "[[sinks]]\ntype = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/SEKRIT\"\n";

#[test]
fn sink_defaults() {
    let config = ok(&format!("{TARGET}{SLACK}[[sinks]]\ntype = \"log\"\n"));
    assert_eq!(config.sinks[0].name, "slack-0");
    assert_eq!(config.sinks[1].name, "log-1");
    let SinkKind::Slack {
        delivery,
        group_wait,
        ..
    } = &config.sinks[0].kind
    else {
        panic!("not slack")
    };
    assert_eq!(*group_wait, Duration::from_secs(30));
    assert_eq!(delivery.timeout, Duration::from_secs(10));
    assert_eq!(delivery.max_age, Duration::from_secs(86_400));
    assert_eq!(delivery.max_queue, 10_000);
    assert!(!delivery.events.contains(&EventKind::IssueUpdated));
    assert_eq!(delivery.events.len(), 4);
    assert_eq!(
        delivery.statuses,
        [
            "CREATE_FAILED",
            "DELETE_FAILED",
            "DEGRADED",
            "UPDATE_FAILED",
            "FAILED"
        ]
        .into_iter()
        .map(Status::from_wire)
        .collect()
    );
}

#[test]
fn every_sink_key_is_read() {
    let env = FakeEnv::default()
        .var("TOKEN", "tok")
        .file("/etc/fhm/hook-secret", "old-key\n")
        .file(
            "/etc/fhm/slack-url",
            "https://hooks.slack.com/services/T0/B0/X\n",
        )
        .file("/run/creds/am-auth", "Basic abc");
    let config = ok_with(
        &format!(
            r#"{TARGET}
[[sinks]]
name = "oncall-slack"
type = "slack"
url_file = "/etc/fhm/slack-url"
group_wait = "10s"
events = "issue_opened"
statuses = []
timeout = "3s"
max_age = "1h"
max_queue = 50

[[sinks]]
type = "webhook"
url = "https://hooks.example.com/fargate"
secret = ["new-key", "${{TOKEN}}"]
headers = {{ Authorization = "Bearer ${{TOKEN}}", "X-Team" = "platform" }}
events = ["issue_opened", "issue_updated", "issue_resolved", "status_changed", "resource_deleted"]
statuses = ["CREATE_FAILED", "DELETING"]

[[sinks]]
type = "alertmanager"
url = ["http://127.0.0.1:9093", "https://am2.example.com"]
headers_file = {{ Authorization = "/run/creds/am-auth" }}
resend_interval = "30s"
timeout = "4s"
runbook_url = "https://wiki.example.com/fargate"

[[sinks]]
type = "webhook"
url = "https://hooks.example.com/other"
secret_file = "hook-secret"
"#
        ),
        &env,
    );
    let SinkKind::Slack {
        url,
        delivery,
        group_wait,
    } = &config.sinks[0].kind
    else {
        panic!()
    };
    assert_eq!(config.sinks[0].name, "oncall-slack");
    assert_eq!(
        url.expose().as_str(),
        "https://hooks.slack.com/services/T0/B0/X",
        "url_file read, newline dropped"
    );
    assert_eq!(*group_wait, Duration::from_secs(10));
    assert_eq!(
        delivery.events,
        [EventKind::IssueOpened].into_iter().collect()
    );
    assert!(delivery.statuses.is_empty());
    assert_eq!(delivery.timeout, Duration::from_secs(3));
    assert_eq!(delivery.max_age, Duration::from_secs(3600));
    assert_eq!(delivery.max_queue, 50);

    let SinkKind::Webhook {
        url,
        secrets,
        headers,
        delivery,
    } = &config.sinks[1].kind
    else {
        panic!()
    };
    assert_eq!(config.sinks[1].name, "webhook-1");
    assert_eq!(url.expose().as_str(), "https://hooks.example.com/fargate");
    let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
    assert_eq!(secrets, ["new-key", "tok"]);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose()))
        .collect();
    assert_eq!(
        headers,
        [("Authorization", "Bearer tok"), ("X-Team", "platform")]
    );
    assert_eq!(delivery.events.len(), 5);
    assert!(delivery.statuses.contains(&Status::from_wire("DELETING")));

    let SinkKind::Alertmanager {
        urls,
        headers,
        resend_interval,
        timeout,
        runbook_url,
    } = &config.sinks[2].kind
    else {
        panic!()
    };
    assert_eq!(urls.len(), 2);
    assert_eq!(headers[0].1.expose(), "Basic abc");
    assert_eq!(*resend_interval, Duration::from_secs(30));
    assert_eq!(*timeout, Duration::from_secs(4));
    assert!(runbook_url.is_some());

    let SinkKind::Webhook { secrets, .. } = &config.sinks[3].kind else {
        panic!()
    };
    assert_eq!(
        secrets[0].expose(),
        "old-key",
        "relative _file paths start at the config's directory"
    );
}

#[test]
fn sink_problems() {
    let sink = |body: &str| format!("{TARGET}[[sinks]]\n{body}\n");
    one_problem(&sink("url = \"https://x\""), 4, "missing the key `type`");
    one_problem(&sink("type = \"email\""), 5, "unknown sink type \"email\"");
    one_problem(&sink("type = \"slack\""), 4, "missing the key `url`");
    one_problem(
        &sink("type = \"webhook\"\nurl = \"ftp://x/y\""),
        6,
        "http:// or https://",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nsecret = []"),
        7,
        "empty list",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nsecret = \"\""),
        7,
        "must not be empty",
    );
    one_problem(
        &sink("type = \"slack\"\nurl = [\"https://a\", \"https://b\"]"),
        6,
        "single URL",
    );
    one_problem(&sink("type = \"alertmanager\"\nurl = []"), 6, "empty list");
    one_problem(
        &sink("type = \"log\"\nurl = \"https://x\""),
        6,
        "unknown key `url` in [[sinks]] of type log",
    );
    one_problem(
        &sink("type = \"slack\"\nurl = \"https://x\"\nsecret = \"s\""),
        7,
        "unknown key `secret` in [[sinks]] of type slack",
    );
    one_problem(
        &sink("type = \"alertmanager\"\nurl = \"http://a\"\nevents = [\"issue_opened\"]"),
        7,
        "unknown key `events`",
    );
    one_problem(&sink("type = \"log\"\nevents = []"), 6, "must not be empty");
    one_problem(
        &sink("type = \"log\"\nstatuses = 3"),
        6,
        "must be a string or an array of strings",
    );
    one_problem(
        &sink("type = \"slack\"\nurl = \"https://x\"\ngroup_wait = \"later\""),
        7,
        "`group_wait`: \"later\" is not a duration",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nheaders_file = { A = \"/missing\" }"),
        7,
        "`headers_file`: cannot read /missing",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nheaders_file = \"/a\""),
        7,
        "`headers_file` must be a table",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nsecret = \"a\"\nsecret_file = \"/a\""),
        8,
        "not both",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\ntimeout = \"0s\""),
        7,
        "greater than 0s",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nmax_age = \"0s\""),
        7,
        "greater than 0s",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nmax_queue = 0"),
        7,
        "between 1 and",
    );
    one_problem(
        &sink("type = \"alertmanager\"\nurl = \"http://a\"\nresend_interval = \"0s\""),
        7,
        "greater than 0s",
    );
    one_problem(
        &sink("type = \"alertmanager\"\nurl = \"http://a\"\nrunbook_url = \"wiki\""),
        7,
        "not an http",
    );
    one_problem(&sink("type = \"log\"\nname = \"\""), 6, "must not be empty");
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nheaders = { \"Bad Header\" = \"v\" }"),
        7,
        "not a valid HTTP header name",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nheaders = { \"Content-Type\" = \"v\" }"),
        7,
        "cannot be configured",
    );
    one_problem(
        &sink(
            "type = \"webhook\"\nurl = \"https://x\"\nheaders = { \"webhook-signature\" = \"v\" }",
        ),
        7,
        "cannot be configured",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nheaders = { A = \"1\", a = \"2\" }"),
        7,
        "set twice",
    );
    one_problem(
        &sink("type = \"webhook\"\nurl = \"https://x\"\nheaders = { A = \"1\\n2\" }"),
        7,
        "line break",
    );
}

#[test]
fn sink_names_must_be_unique() {
    let text = format!(
        "{TARGET}[[sinks]]\nname = \"pager\"\ntype = \"log\"\n[[sinks]]\nname = \"pager\"\ntype = \"log\"\n"
    );
    one_problem(
        &text,
        8,
        "sink name `pager` is used twice (first on line 5)",
    );
    // A default name can collide with an explicit one too.
    let text =
        format!("{TARGET}[[sinks]]\ntype = \"log\"\n[[sinks]]\nname = \"log-0\"\ntype = \"log\"\n");
    one_problem(&text, 7, "used twice");
}

#[test]
fn unknown_statuses_are_warned_about_not_rejected() {
    let loaded = parse_with(
        &format!("{TARGET}[[sinks]]\ntype = \"log\"\nstatuses = [\"UPGRADE_FAILED\"]\n"),
        &FakeEnv::default(),
    )
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].line, 6);
    assert!(loaded.warnings[0].message.contains("UPGRADE_FAILED"));
}

#[test]
fn env_vars_are_expanded_in_string_values() {
    let env = FakeEnv::default()
        .var("REGION", "ap-south-1")
        .var("CLUSTER", "payments");
    let config = ok_with(
        "[[targets]]\nregion = \"${REGION}\"\ncluster = \"${CLUSTER}\"\nlabels = { note = \"$${NOT_EXPANDED} costs $5\" }\n",
        &env,
    );
    assert_eq!(config.targets[0].region, "ap-south-1");
    assert_eq!(config.targets[0].cluster.as_str(), "payments");
    assert_eq!(config.targets[0].labels["note"], "${NOT_EXPANDED} costs $5");
}

#[test]
fn a_missing_env_var_is_named_at_its_place() {
    let found = problems(&format!(
        "{TARGET}[[sinks]]\ntype = \"slack\"\nurl = \"${{SLACK_WEBHOOK_URL}}\"\n[[sinks]]\ntype = \"webhook\"\nurl = \"https://x\"\nsecret = \"${{WEBHOOK_SECRET}}\"\n"
    ));
    assert_eq!(
        found,
        [
            "6:7: `url`: environment variable `SLACK_WEBHOOK_URL` is not set",
            "10:10: `secret`: environment variable `WEBHOOK_SECRET` is not set",
        ]
    );
}

#[test]
fn env_vars_are_not_expanded_in_keys() {
    let env = FakeEnv::default().var("K", "env");
    one_problem_with(
        &format!("{TARGET}labels = {{ \"${{K}}\" = \"x\" }}\n"),
        &env,
        "not a valid Prometheus label name",
    );
}

fn one_problem_with(text: &str, env: &FakeEnv, needle: &str) {
    let found = problems_with(text, env);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains(needle), "{found:#?}");
}

#[test]
fn file_variants_are_exclusive_and_must_be_readable() {
    let sink = |body: &str| format!("{TARGET}[[sinks]]\ntype = \"webhook\"\n{body}\n");
    one_problem(
        &sink("url = \"https://x\"\nurl_file = \"/u\""),
        7,
        "set `url` or `url_file`, not both",
    );
    one_problem(&sink("url_file = \"/nope\""), 6, "cannot read /nope");
    one_problem(
        &sink("url = \"https://x\"\nsecret_file = \"rel/s\""),
        7,
        "cannot read /etc/fhm/rel/s",
    );
    let found = problems(&sink(
        "url = \"https://x\"\nsecret_file = [\"/gone-1\", \"/gone-2\"]",
    ));
    assert_eq!(
        found.len(),
        2,
        "every unreadable file is reported: {found:#?}"
    );
    assert!(
        found[0].contains("/gone-1") && found[1].contains("/gone-2"),
        "{found:#?}"
    );
    let env = FakeEnv::default().file("/empty", "\n");
    one_problem_with(
        &sink("url = \"https://x\"\nsecret_file = \"/empty\""),
        &env,
        "is empty",
    );
    let env = FakeEnv::default()
        .file("/a", "k1")
        .file("/b", "k2\r\n")
        .file("/u", "https://hooks.example.com/x\n");
    let config = ok_with(
        &sink("url_file = \"/u\"\nsecret_file = [\"/a\", \"/b\"]"),
        &env,
    );
    let SinkKind::Webhook { url, secrets, .. } = &config.sinks[0].kind else {
        panic!()
    };
    assert_eq!(url.expose().as_str(), "https://hooks.example.com/x");
    assert_eq!(
        secrets.iter().map(Secret::expose).collect::<Vec<_>>(),
        ["k1", "k2"]
    );
}

#[test]
fn secrets_never_appear_in_problems_or_warnings() {
    const SECRET: &str = "s3cr3t-VALUE";
    let env = FakeEnv::default()
        .var("SECRET", SECRET)
        .file("/secret-url", &format!("not a url {SECRET}"));
    let text = format!(
        r#"{TARGET}
[[sinks]]
type = "slack"
url = "http://hooks.example.com/{SECRET}"
[[sinks]]
type = "webhook"
url = "mailto:{SECRET}@example.com"
secret = "${{SECRET}}"
headers = {{ Authorization = "Bearer {SECRET}", "Bad Name" = "{SECRET}" }}
[[sinks]]
type = "webhook"
url_file = "/secret-url"
[[sinks]]
type = "webhook"
url = "https://{SECRET}:{SECRET}@[bad"
[[sinks]]
type = "alertmanager"
url = "http://user:{SECRET}@am.example.com:9093"
headers = {{ Authorization = "Basic {SECRET}" }}
[[sinks]]
type = "webhook"
url = "https://hooks.example.com/x"
secret = "${{{SECRET}}}"
[[sinks]]
type = "webhook"
url = "http://hooks.example.com/ok"
secret = "{SECRET}"
[[sinks]]
type = "slack"
url = "https://hooks.slack.com/{SECRET}"
url_file = "/x"
"#
    );
    let err = parse_with(&text, &env).unwrap_err();
    assert!(err.problems.len() >= 5, "{err}");
    let everything = format!("{err}\n{err:?}");
    assert!(!everything.contains(SECRET), "{everything}");

    // Warnings of a valid config keep secrets out too.
    let text = format!(
        "{TARGET}[[sinks]]\ntype = \"slack\"\nurl = \"http://hooks.example.com/{SECRET}\"\n[[sinks]]\ntype = \"webhook\"\nurl = \"http://hooks.example.com/x\"\nsecret = \"{SECRET}\"\n[[sinks]]\ntype = \"alertmanager\"\nurl = \"http://user:{SECRET}@am.example.com:9093\"\n"
    );
    let loaded = parse_with(&text, &env).unwrap();
    assert_eq!(loaded.warnings.len(), 3, "{:#?}", loaded.warnings);
    let everything = format!("{:?} {:?}", loaded.warnings, loaded.config);
    assert!(!everything.contains(SECRET), "{everything}");

    // A syntax error on a line holding a secret does not quote the line.
    let err = parse_with(
        &format!("{TARGET}[[sinks]]\nurl = \"{SECRET}\" junk\n"),
        &env,
    )
    .unwrap_err();
    assert!(!format!("{err}").contains(SECRET), "{err}");
}

#[test]
fn plain_http_sinks_warn_only_when_a_secret_would_cross() {
    let warnings = |body: &str| {
        parse_with(&format!("{TARGET}[[sinks]]\n{body}\n"), &FakeEnv::default())
            .unwrap()
            .warnings
    };
    assert!(warnings("type = \"webhook\"\nurl = \"http://hooks.example.com\"").is_empty());
    assert!(
        warnings("type = \"webhook\"\nurl = \"http://127.0.0.1:8080\"\nsecret = \"x\"").is_empty()
    );
    assert!(warnings("type = \"alertmanager\"\nurl = \"http://am:9093\"").is_empty());
    let found = warnings(
        "type = \"webhook\"\nurl = \"http://hooks.example.com\"\nheaders = { authorization = \"x\" }",
    );
    assert_eq!(found.len(), 1);
    assert!(
        found[0].message.contains("`Authorization` header"),
        "{found:?}"
    );
    assert!(warnings("type = \"slack\"\nurl = \"https://hooks.slack.com/x\"").is_empty());
    let found = warnings("type = \"webhook\"\nurl = \"http://hooks.example.com\"\nsecret = \"k\"");
    assert!(
        found[0].message.contains("signed with `secret`"),
        "{found:?}"
    );
    let found = warnings("type = \"alertmanager\"\nurl = \"http://u:p@am.example.com:9093\"");
    assert!(
        found[0].message.contains("credentials in the URL"),
        "{found:?}"
    );
    let found = warnings("type = \"slack\"\nurl = \"http://hooks.example.com/x\"");
    assert!(
        found[0]
            .message
            .contains("Slack webhook URL is a credential"),
        "{found:?}"
    );
}

#[test]
fn problems_display_with_file_line_and_column() {
    let err = parse_with("[poll]\nintervall = \"1s\"\n", &FakeEnv::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("2 problems in the configuration\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  /etc/fhm/config.toml:2:1: unknown key `intervall`"),
        "{text}"
    );
}

#[test]
fn a_missing_file_is_one_problem() {
    let err = load(Path::new("/nonexistent/config.toml"), &ProcessEnvironment).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(
        err.problems[0]
            .message
            .contains("cannot read the config file")
    );
}

#[test]
fn patterns_match_names_and_globs() {
    let exact = Pattern::parse("prod").unwrap();
    assert!(exact.matches("prod") && !exact.matches("prod-2") && !exact.is_glob());
    let glob = Pattern::parse("prod-{eu,us}-*").unwrap();
    assert!(glob.matches("prod-eu-1") && glob.matches("prod-us-x") && !glob.matches("prod-ap-1"));
    let class = Pattern::parse("fp-[0-9]").unwrap();
    assert!(class.matches("fp-3") && !class.matches("fp-a"));
    assert!(Pattern::parse("a[").is_err());
}

#[test]
fn glob_bombs_are_problems_at_their_place_not_panics() {
    let nested = format!("{}a{}", "{a,".repeat(60), "}".repeat(60));
    let found = problems(&format!(
        "[[targets]]\nregion = \"us-east-1\"\ncluster = \"{nested}\"\n"
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("3:11: `cluster`: invalid glob"),
        "{found:#?}"
    );
    assert!(found[0].contains("nested more than 4 deep"), "{found:#?}");

    let many = format!("{{{}}}", ["a"; 65].join(","));
    let long = format!("*{}", "x".repeat(MAX_GLOB_CHARS));
    for (glob, why) in [
        (many.as_str(), "more than 64 alternatives"),
        (long.as_str(), "longer than 256 characters"),
        ("{a,{b,{c,{d,{e}}}}}", "nested more than 4 deep"),
        ("[z-a]", "invalid range"),
    ] {
        let found = problems(&format!(
            "[[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\nprofiles = [\"web\", \"{glob}\"]\n"
        ));
        assert_eq!(found.len(), 1, "{glob}: {found:#?}");
        assert!(
            found[0].starts_with("4:20: `profiles`: invalid glob") && found[0].contains(why),
            "{glob}: {found:#?}"
        );
    }
    // Four levels are fine.
    let pattern = Pattern::parse("{a,{b,{c,{d,e}}}}-*").unwrap();
    assert!(pattern.matches("d-1") && !pattern.matches("f-1"));
}

#[test]
fn every_duration_and_rate_has_a_range() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[poll]\ninterval = \"25h\"\n",
            "interval",
            "between 1s and 24h",
        ),
        (
            "[poll]\ninterval = \"500ms\"\n",
            "interval",
            "between 1s and 24h",
        ),
        (
            "[poll]\ndiscovery_interval = \"500000000y\"\n",
            "discovery_interval",
            "between 1s and 168h",
        ),
        (
            "[poll]\ntimeout = \"10ms\"\n",
            "timeout",
            "between 100ms and 10m",
        ),
        (
            "[poll]\nmax_requests_per_second = 1e-30\n",
            "max_requests_per_second",
            "between 0.01 and 10000, not 0.000000000000000000000000000001",
        ),
        (
            "[poll]\nmax_requests_per_second = 10001\n",
            "max_requests_per_second",
            "between 0.01 and 10000",
        ),
        (
            "[poll]\nconcurrency = 0\n",
            "concurrency",
            "between 1 and 1024",
        ),
        (
            "[alerts]\nresolve_after = \"8d\"\n",
            "resolve_after",
            "at most 168h",
        ),
    ];
    for (section, key, needle) in cases {
        let found = problems(&format!("{section}{TARGET}"));
        assert_eq!(found.len(), 1, "{section}: {found:#?}");
        assert!(
            found[0].starts_with("2:") && found[0].contains(&format!("`{key}`")),
            "{found:#?}"
        );
        assert!(found[0].contains(needle), "{section}: {found:#?}");
    }

    let sink = |body: &str| format!("{TARGET}[[sinks]]\n{body}\n");
    let cases: &[(&str, &str)] = &[
        (
            "type = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"\nresend_interval = \"500000000y\"",
            "`resend_interval` must be between 1s and 24h",
        ),
        (
            "type = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"\ntimeout = \"11m\"",
            "`timeout` must be between 100ms and 10m",
        ),
        (
            "type = \"webhook\"\nurl = \"https://x\"\nmax_age = \"31d\"",
            "`max_age` must be between 1s and 720h",
        ),
        (
            "type = \"webhook\"\nurl = \"https://x\"\nretry_initial = \"1ms\"",
            "`retry_initial` must be between 10ms and 1h",
        ),
        (
            "type = \"webhook\"\nurl = \"https://x\"\nretry_max = \"2d\"",
            "`retry_max` must be between 10ms and 24h",
        ),
        (
            "type = \"webhook\"\nurl = \"https://x\"\nretry_initial = \"2s\"\nretry_max = \"1s\"",
            "`retry_max` (1s) must not be shorter than `retry_initial` (2s)",
        ),
        (
            "type = \"webhook\"\nurl = \"https://x\"\nmax_queue = 1000001",
            "`max_queue` must be between 1 and 1000000",
        ),
        (
            "type = \"slack\"\nurl = \"https://x\"\ngroup_wait = \"2h\"",
            "`group_wait` must be at most 1h",
        ),
    ];
    for (body, needle) in cases {
        let found = problems(&sink(body));
        assert_eq!(found.len(), 1, "{body}: {found:#?}");
        assert!(found[0].contains(needle), "{body}: {found:#?}");
    }
    // The bounds themselves are valid.
    let config = ok(&format!(
        "[poll]\ninterval = \"24h\"\ntimeout = \"10m\"\ndiscovery_interval = \"1s\"\nmax_requests_per_second = 0.01\n[alerts]\nresolve_after = \"7d\"\n{TARGET}[[sinks]]\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"\nresend_interval = \"1s\"\ntimeout = \"100ms\"\n"
    ));
    assert_eq!(config.poll.interval, Duration::from_secs(86_400));
    assert_eq!(config.poll.max_requests_per_second, 0.01);
}

/// A fake environment that holds the test TLS fixtures under `/tls/`.
fn tls_env() -> FakeEnv {
    FakeEnv::default()
        .file(
            "/tls/cert.pem",
            include_str!("../../tests/fixtures/tls/cert.pem"),
        )
        .file(
            "/tls/key.pem",
            include_str!("../../tests/fixtures/tls/key.pem"),
        )
        .file(
            "/tls/other-key.pem",
            include_str!("../../tests/fixtures/tls/other-key.pem"),
        )
        .file(
            "/tls/garbage.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .file("/tls/text", "not a pem file\n")
}

#[test]
fn tls_files_are_parsed_and_the_key_must_match() {
    let tls = |cert: &str, key: &str| {
        format!("[server.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n{TARGET}")
    };
    let config = ok_with(&tls("/tls/cert.pem", "/tls/key.pem"), &tls_env());
    assert_eq!(
        config.server.tls.unwrap().key_file,
        Path::new("/tls/key.pem")
    );
    let cases = [
        (
            tls("/tls/cert.pem", "/tls/other-key.pem"),
            "3:12: `key_file`: the key in /tls/other-key.pem is not the key of the certificate in /tls/cert.pem",
        ),
        (
            tls("/tls/garbage.pem", "/tls/key.pem"),
            "2:13: `cert_file`: /tls/garbage.pem holds no valid PEM certificate",
        ),
        (
            tls("/tls/text", "/tls/key.pem"),
            "2:13: `cert_file`: /tls/text holds no valid PEM certificate",
        ),
        (
            tls("/tls/cert.pem", "/tls/cert.pem"),
            "3:12: `key_file`: /tls/cert.pem holds no valid PEM private key",
        ),
        (
            tls("/tls/cert.pem", "/tls/missing.pem"),
            "3:12: `key_file`: cannot read /tls/missing.pem",
        ),
    ];
    for (text, expected) in cases {
        let found = problems_with(&text, &tls_env());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with(expected), "{found:#?}");
    }
    // A key never appears in a message.
    let key = include_str!("../../tests/fixtures/tls/other-key.pem");
    let body = key.lines().nth(1).unwrap();
    let found = problems_with(&tls("/tls/cert.pem", "/tls/other-key.pem"), &tls_env());
    assert!(!found.concat().contains(body));
}

#[test]
fn basic_auth_users_and_bcrypt_costs_are_checked() {
    let users = |users: &str| format!("[server.basic_auth]\nusers = {{ {users} }}\n{TARGET}");
    let hash = |cost: u32| format!("$2b${cost:02}${}", "a".repeat(53));
    let config = ok(&users(&format!("prometheus = \"{}\"", hash(14))));
    assert_eq!(config.server.basic_auth.len(), 1);
    for cost in [31, 15, 3] {
        let found = problems(&users(&format!("prometheus = \"{}\"", hash(cost))));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("2:24: the bcrypt cost of user `prometheus`'s hash is")
                && found[0].contains(&format!("is {cost}; use 4 to 14")),
            "{found:#?}"
        );
    }
    let found = problems(&users(&format!("\"a:b\" = \"{}\"", hash(10))));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("2:11: user name `a:b` must not be empty or contain `:`"),
        "{found:#?}"
    );
    let found = problems(&users(&format!("\"\" = \"{}\"", hash(10))));
    assert!(found[0].contains("must not be empty"), "{found:#?}");
    let found = problems(&users(&format!("\"a\\tb\" = \"{}\"", hash(10))));
    assert!(found[0].contains("control characters"), "{found:#?}");
    // Not bcrypt's alphabet, or a cost that is not two digits.
    for bad in [
        format!("$2b$10${}", "!".repeat(53)),
        format!("$2b$1a${}", "a".repeat(53)),
    ] {
        let found = problems(&users(&format!("prometheus = \"{bad}\"")));
        assert!(found[0].contains("must be a bcrypt hash"), "{found:#?}");
    }
}

/// An environment that says what is at a path, like the real one.
struct StatePathEnv(&'static str);

impl Environment for StatePathEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
    fn read_file(&self, _: &Path) -> io::Result<String> {
        Err(io::Error::from(io::ErrorKind::NotFound))
    }
    fn non_regular_file(&self, path: &Path) -> Option<&'static str> {
        (path == Path::new(self.0)).then_some("a directory")
    }
}

#[test]
fn a_state_path_that_is_not_a_regular_file_is_a_warning() {
    let text = format!("[state]\npath = \"/var/lib/fhm\"\n{TARGET}");
    let loaded = parse(&text, Path::new("/c.toml"), &StatePathEnv("/var/lib/fhm")).unwrap();
    assert_eq!(
        loaded.warnings[0].to_string(),
        "/c.toml:2:8: `path`: /var/lib/fhm is a directory; the state file must be a regular file or not exist yet (until then the daemon alerts from memory and keeps nothing across a restart)"
    );
    // The default path is checked too.
    let loaded = parse(
        TARGET,
        Path::new("/c.toml"),
        &StatePathEnv(defaults::STATE_PATH),
    )
    .unwrap();
    assert!(
        loaded.warnings[0].message.contains("is a directory"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn values_that_may_hold_secrets_are_never_quoted() {
    const SECRET: &str = "hunter2";
    let cases = [
        format!("{TARGET}[[sinks]]\ntype = \"https://user:{SECRET}@x\"\n"),
        format!("{TARGET}[[sinks]]\ntype = \"log\"\nevents = [\"{SECRET}@x\"]\n"),
        format!(
            "{TARGET}[[sinks]]\ntype = \"log\"\nname = \"a\"\n[[sinks]]\ntype = \"log\"\nname = \"a\"\n\"https://u:{SECRET}@h\" = 1\n"
        ),
        format!(
            "[server]\nlisten = \"https://u:{SECRET}@h\"\nexternal_url = \"ftp://u:{SECRET}@h\"\n{TARGET}"
        ),
        format!("[poll]\nshard = \"{SECRET}@1/0\"\ninterval = \"x:{SECRET}@y\"\n{TARGET}"),
        format!(
            "[[targets]]\nregion = \"{SECRET}@us\"\ncluster = \"a@{SECRET}\"\naccount_id = \"{SECRET}@\"\nlabels = {{ \"x@{SECRET}\" = \"v\" }}\n"
        ),
        format!(
            "{TARGET}[[sinks]]\ntype = \"webhook\"\nurl = \"https://x\"\nheaders = {{ \"a@{SECRET}\" = \"v\" }}\n"
        ),
        format!("{TARGET}[[sinks]]\ntype = \"log\"\nstatuses = [\"{SECRET}@x\"]\nevents = []\n"),
        format!("[server.basic_auth]\nusers = {{ \"u@{SECRET}:\" = \"x\" }}\n{TARGET}"),
    ];
    for text in &cases {
        let err = parse_with(text, &FakeEnv::default()).unwrap_err();
        let everything = format!("{err}\n{err:?}");
        assert!(!everything.contains(SECRET), "{everything}");
        assert!(
            everything.contains("not shown as it may hold a secret"),
            "{everything}"
        );
    }
    // A long token-like value or a URL is not quoted either; a short plain one is.
    let token = "ghp_0123456789abcdefghijABCDEFGHIJ";
    let err = parse_with(
        &format!("{TARGET}[[sinks]]\ntype = \"{token}\"\n"),
        &FakeEnv::default(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains(token), "{err}");
    let err = parse_with(
        &format!("{TARGET}[[sinks]]\ntype = \"https://hooks.slack.com/T0/B0/XYZ\"\n"),
        &FakeEnv::default(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("XYZ"), "{err}");
    one_problem(
        &format!("{TARGET}[[sinks]]\ntype = \"pagerduty\"\n"),
        5,
        "unknown sink type \"pagerduty\"; use one of",
    );
}

#[test]
fn parse_bytes_reports_non_utf8_at_its_place() {
    let mut bytes = TARGET.as_bytes().to_vec();
    bytes.extend_from_slice(b"# caf\xe9\n");
    let err = parse_bytes(&bytes, Path::new("/c.toml"), &FakeEnv::default()).unwrap_err();
    assert_eq!(
        err.problems[0].to_string(),
        "/c.toml:4:6: the config is not UTF-8 text"
    );
    let config = parse_bytes(TARGET.as_bytes(), Path::new("/c.toml"), &FakeEnv::default());
    assert!(config.is_ok());
}

mod fuzz {
    //! Arbitrary text and TOML-ish fragments through [`parse_bytes`]: problems, never a panic.

    use super::*;
    use proptest::prelude::*;

    /// Pieces of config that reach deep into the reader when combined.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n".to_owned()),
            Just("[[sinks]]\ntype = \"webhook\"\nurl = \"https://x\"\n".to_owned()),
            Just(
                "[[sinks]]\ntype = \"alertmanager\"\nurl = [\"http://127.0.0.1:9093\"]\n"
                    .to_owned()
            ),
            Just("[[sinks]]\ntype = \"slack\"\nurl_file = \"/s\"\n".to_owned()),
            Just(
                "[server.tls]\ncert_file = \"/tls/cert.pem\"\nkey_file = \"/tls/key.pem\"\n"
                    .to_owned()
            ),
            Just("[server.basic_auth]\nusers = { a = \"$2b$99$\" }\n".to_owned()),
            Just("[poll]\n".to_owned()),
            Just("[state]\npath = \"\"\n".to_owned()),
            Just("secret_file = [\"/s\", \"/missing\"]\n".to_owned()),
            Just("headers = { A = \"${X}\", \"\" = \"\" }\n".to_owned()),
            "(interval|timeout|max_age|retry_max|resend_interval|group_wait|resolve_after) = \"[0-9]{1,30}(ns|ms|s|m|h|d|y|)\"\n",
            "(concurrency|max_queue|max_requests_per_second) = -?[0-9]{1,25}(\\.[0-9]{0,5})?(e-?[0-9]{1,3})?\n",
            "(cluster|profiles|region|type|name|shard|events|statuses) = \"[{}\\[\\]*?,a-z!\\\\^-]{0,40}\"\n",
            "[a-z_\\[\\]{}\"'=.,$ \n]{0,40}",
            any::<String>(),
        ]
    }

    fn env() -> FakeEnv {
        tls_env()
            .var("X", "x\r\n")
            .file("/s", "https://user:pw@h/\n")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_bytes(&bytes, Path::new("/c.toml"), &env());
        }

        #[test]
        fn arbitrary_fragments_never_panic(parts in proptest::collection::vec(fragment(), 0..12)) {
            let text = parts.concat();
            match parse_bytes(text.as_bytes(), Path::new("/c.toml"), &env()) {
                Ok(loaded) => {
                    // What is accepted is in range.
                    let poll = &loaded.config.poll;
                    prop_assert!(ranges::INTERVAL.contains(&poll.interval));
                    prop_assert!(ranges::MAX_REQUESTS_PER_SECOND.contains(&poll.max_requests_per_second));
                }
                Err(err) => {
                    for problem in &err.problems {
                        prop_assert!(!problem.message.contains("pw@"), "{}", problem);
                        prop_assert!(problem.line <= text.lines().count() + 1);
                    }
                }
            }
        }
    }
}

#[test]
fn values_from_the_environment_are_described_not_quoted() {
    let env = FakeEnv::default()
        .var("REGION", "nowhere-1")
        .var("PART", "x");
    let text = "[[targets]]\nregion = \"${REGION}\"\ncluster = \"prod\"\n[[sinks]]\ntype = \"sl${PART}ck\"\n";
    let found = problems_with(text, &env);
    assert!(
        found
            .iter()
            .any(|p| p.contains("`region`: (a value from the environment or a file, 9 characters")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .all(|p| !p.contains("nowhere") && !p.contains("slxck")),
        "{found:#?}"
    );
    // Without `${…}` the same values are quoted.
    let found = problems("[[targets]]\nregion = \"nowhere-1\"\ncluster = \"prod\"\n");
    assert!(found[0].contains("\"nowhere-1\""), "{found:#?}");
}

#[test]
fn token_like_values_are_not_shown() {
    use super::reader::is_safe_to_show;
    for token in [
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "xoxb-1234-5678-abcdEFGHijkl",
        "ghp_abc",
        "AKIAIOSFODNN7",
        "sk-abc",
        "abcd1234-efgh5678",
    ] {
        assert!(!is_safe_to_show(token), "{token}");
    }
    for plain in [
        "us-east-1",
        "prod",
        "0.0.0.0:9090",
        "/var/lib/fhm/state.json",
        "30s",
    ] {
        assert!(is_safe_to_show(plain), "{plain}");
    }
}

#[test]
fn a_target_watches_every_kind_unless_it_names_some_with_globs_per_kind() {
    let every = ok("[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n");
    let target = &every.targets[0];
    assert_eq!(target.kinds, Kind::ALL);
    for kind in Kind::ALL {
        assert!(target.selects(*kind, "anything"));
    }
    let some = ok(concat!(
        "[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n",
        "kinds = [\"fargate_profile\"]\nprofiles = [\"web-*\"]\n",
        "nodegroups = [\"general\"]\naddons = [\"vpc-cni\", \"core*\"]\n",
    ));
    let target = &some.targets[0];
    assert_eq!(target.kinds, [Kind::FARGATE_PROFILE]);
    assert!(target.selects(Kind::FARGATE_PROFILE, "web-1"));
    assert!(!target.selects(Kind::FARGATE_PROFILE, "jobs"));
    assert!(!target.selects(Kind::NODEGROUP, "general"));
    assert_eq!(target.patterns(Kind::ADDON).unwrap().len(), 2);
    assert!(target.patterns(Kind::CLUSTER).is_none());
    assert!(target.patterns(Kind::NODEGROUP).unwrap()[0].matches("general"));
}

#[test]
fn kinds_and_name_globs_that_cannot_work_are_refused() {
    let base = "[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n";
    one_problem(
        &format!("{base}kinds = []\n"),
        4,
        "`kinds` must not be empty",
    );
    one_problem(
        &format!("{base}kinds = [\"widget\"]\n"),
        4,
        "is not a kind; the kinds are fargate_profile",
    );
    one_problem(
        &format!("{base}kinds = [\"fargate_profile\", \"fargate_profile\"]\n"),
        4,
        "is named twice",
    );
    one_problem(
        &format!("{base}nodegroups = []\n"),
        4,
        "`nodegroups` must not be empty",
    );
    one_problem(&format!("{base}addons = [\"a b\"]\n"), 4, "`addons`:");
}

#[test]
fn a_new_target_is_what_a_config_with_only_region_and_cluster_gives() {
    let parsed = &ok("[[targets]]\nregion = \"us-east-1\"\ncluster = \"prod\"\n").targets[0];
    let made = Target::new("us-east-1", Pattern::parse("prod").unwrap());
    assert_eq!(format!("{made:?}"), format!("{parsed:?}"));
}

#[test]
fn names_given_twice_and_names_of_kinds_not_watched_are_warned_about() {
    let text = format!(
        "{TARGET}kinds = [\"fargate_profile\", \"cluster\"]\nprofiles = [\"web\", \"jobs\", \"web\"]\nnodegroups = [\"ng-1\"]\n"
    );
    let loaded = parse_with(&text, &FakeEnv::default()).unwrap();
    let said: Vec<(usize, &str)> = loaded
        .warnings
        .iter()
        .map(|w| (w.line, w.message.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            (5, "`profiles`: \"web\" is named twice"),
            (
                6,
                "`nodegroups` has no effect: `kinds` does not watch nodegroup"
            ),
        ]
    );
    // The budget counts the cluster and the two profiles.
    let lanes = super::budget::lanes(&loaded.config);
    assert_eq!(lanes[0].named, 3, "{lanes:?}");
}
