//! The log of the real binary: every text line a scenario logs (debug included) is strict
//! logfmt that re-encodes to itself, hostile names and messages included, and keeps the long
//! tail out; the JSON lines of the same scenario carry every field.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fargate_health_monitor::model::ResourceKey;
use fargate_health_monitor::simulator::{
    self, Command as SimCommand, FaultKind, Health, IssueSpec, Scope, Simulator,
};
use serde_json::Value;

use crate::receiver::Receiver;
use crate::support::{aws_env, binary, eventually, free_port};

/// One `key=value` pair of a line.
type Pair = (String, String);

/// Splits a logfmt line strictly: pairs separated by one space; a key is one or more
/// characters other than space, `=`, `"` and control characters; a value is bare (one or more
/// characters other than whitespace, `=`, `"`, `\` and control characters) or in double quotes
/// with the escapes `\"`, `\\`, `\n`, `\r`, `\t` and `\uXXXX` and no raw control character.
fn parse(line: &str) -> Result<Vec<Pair>, String> {
    let mut pairs = Vec::new();
    let mut rest = line;
    loop {
        let eq = rest
            .find('=')
            .ok_or(format!("a key without a value: {rest:?}"))?;
        let key = &rest[..eq];
        if key.is_empty() || key.chars().any(|c| c <= ' ' || c == '"' || c.is_control()) {
            return Err(format!("bad key {key:?}"));
        }
        rest = &rest[eq + 1..];
        let value = match rest.strip_prefix('"') {
            Some(quoted) => {
                let (value, used) = unquote(quoted)?;
                rest = &quoted[used..];
                value
            }
            None => {
                let end = rest.find(' ').unwrap_or(rest.len());
                let bare = &rest[..end];
                let bad = |c: char| {
                    c == '=' || c == '"' || c == '\\' || c.is_whitespace() || c.is_control()
                };
                if bare.is_empty() || bare.chars().any(bad) {
                    return Err(format!("bad bare value {bare:?} of {key}"));
                }
                rest = &rest[end..];
                bare.to_owned()
            }
        };
        pairs.push((key.to_owned(), value));
        if rest.is_empty() {
            return Ok(pairs);
        }
        rest = rest
            .strip_prefix(' ')
            .filter(|r| !r.is_empty() && !r.starts_with(' '))
            .ok_or(format!("not one space before {rest:?}"))?;
    }
}

/// The value of a quoted string after its opening quote, and the bytes it took with the
/// closing quote.
fn unquote(quoted: &str) -> Result<(String, usize), String> {
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, at + 1)),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('"') => value.push('"'),
                Some('\\') => value.push('\\'),
                Some('n') => value.push('\n'),
                Some('r') => value.push('\r'),
                Some('t') => value.push('\t'),
                Some('u') => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    let code = u32::from_str_radix(&hex, 16).map_err(|_| format!("\\u{hex}"))?;
                    value.push(char::from_u32(code).ok_or(format!("\\u{hex}"))?);
                }
                other => return Err(format!("unknown escape \\{other:?}")),
            },
            c if c.is_control() => return Err(format!("a raw control character {c:?}")),
            c => value.push(c),
        }
    }
    Err("a quoted value without its closing quote".to_owned())
}

/// The canonical line of these pairs: what the daemon must have written.
fn encode(pairs: &[Pair]) -> String {
    let mut line = Vec::new();
    for (key, value) in pairs {
        let bare = !value.is_empty()
            && !value
                .chars()
                .any(|c| c == '=' || c == '"' || c == '\\' || c.is_whitespace() || c.is_control());
        if bare {
            line.push(format!("{key}={value}"));
            continue;
        }
        let mut quoted = String::from("\"");
        for c in value.chars() {
            match c {
                '"' => quoted.push_str("\\\""),
                '\\' => quoted.push_str("\\\\"),
                '\n' => quoted.push_str("\\n"),
                '\r' => quoted.push_str("\\r"),
                '\t' => quoted.push_str("\\t"),
                c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                    quoted.push_str(&format!("\\u{:04x}", u32::from(c)));
                }
                c => quoted.push(c),
            }
        }
        quoted.push('"');
        line.push(format!("{key}={quoted}"));
    }
    line.join(" ")
}

#[test]
fn the_test_parser_is_strict_and_round_trips() {
    let line = r#"ts=2026-12-02T04:38:10.123Z level=info msg="a \"b\" = c\n\u001b" x="" y=1.5"#;
    let pairs = parse(line).unwrap();
    assert_eq!(pairs[2], ("msg".into(), "a \"b\" = c\n\u{1b}".into()));
    assert_eq!(pairs[3], ("x".into(), String::new()));
    assert_eq!(encode(&pairs), line);
    for bad in [
        "msg=two words",
        "msg=\"unterminated",
        "msg=\"raw\ttab\"",
        "a=1  b=2",
        "a=1 ",
        "a=",
        "=1",
        "a=x\"y",
        "a=\"\\q\"",
        "a b=1",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

/// A profile of the simulator's default account in `us-east-1/prod`.
fn key(profile: &str) -> ResourceKey {
    ResourceKey::fargate_profile(simulator::DEFAULT_ACCOUNT, "us-east-1", "prod", profile)
}

/// A profile name with a space, quotes, `=` and a backslash.
const ODD_NAME: &str = r#"odd name "q"=1\x"#;
/// An issue message with everything a log line must escape.
const ODD_MESSAGE: &str =
    "line one\nline two\r\tkey=value \"quoted\" back\\slash \u{1b}[31mred\u{1b}[0m \u{7} 日本語 🦀";
const ODD_CODE: &str = "Odd\u{7}Code with space";

/// A running daemon, killed if the test ends early.
struct Running {
    child: Option<Child>,
    log: PathBuf,
}

impl Running {
    fn start(dir: &Path, config: &Path, format: &str) -> Self {
        let log = dir.join(format!("{format}.log"));
        let child = aws_env(
            binary()
                .args(["--log-format", format, "run", "--config"])
                .arg(config),
        )
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
        Self {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = tokio::task::spawn_blocking(move || child.wait().unwrap().code())
            .await
            .unwrap();
        let log = self.log();
        assert_eq!(code, Some(0), "{log}");
        log
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn config(dir: &Path, simulator: &Simulator, receiver: &Receiver, name: &str) -> PathBuf {
    let url = simulator.endpoint_url();
    let text = format!(
        r#"[server]
listen = "{listen}"
[state]
path = "{state}"
[poll]
interval = "2s"
discovery_interval = "2s"
timeout = "1s"
max_requests_per_second = 50

[[targets]]
region = "us-east-1"
cluster = "*"
labels = {{ env = "a b\"c=d" }}
endpoint_url = "{url}"
sts_endpoint_url = "{url}"

[[targets]]
region = "us-east-1"
cluster = "decommissioned"
endpoint_url = "{url}"
sts_endpoint_url = "{url}"

[[sinks]]
type = "log"
events = ["issue_opened", "issue_updated", "issue_resolved", "status_changed", "resource_deleted"]

[[sinks]]
name = "hook"
type = "webhook"
url = "http://{receiver}/hook"
retry_initial = "100ms"
retry_max = "200ms"
"#,
        listen = free_port(),
        state = dir.join(format!("{name}.state.json")).display(),
        receiver = receiver.addr,
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Whether some line of `log` has every one of `needles`.
fn logged(log: &str, needles: &[&str]) -> bool {
    log.lines().any(|l| needles.iter().all(|n| l.contains(n)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_a_scenario_logs_is_logfmt_and_json_lines_keep_every_field() {
    let simulator = Simulator::start().await.unwrap();
    // The first events fail a few times: retries, then delivery again.
    let (text_receiver, json_receiver) = (Receiver::start().await, Receiver::start().await);
    text_receiver.answer(&[500; 4]);
    json_receiver.answer(&[500; 4]);
    let odd = Health::Issues(vec![IssueSpec::new(
        ODD_CODE,
        ODD_MESSAGE,
        &["eni-1 x", "r=2"],
    )]);
    simulator.add_profile(&key(ODD_NAME), "ACT\nIVE \"x\"", odd);
    simulator.add_profile(
        &key("web"),
        "ACTIVE",
        crate::receiver::issue("AccessDenied"),
    );
    simulator.add_profile(&key("flaky"), "ACTIVE", Health::Absent);
    simulator.add_profile(&key("doomed"), "ACTIVE", Health::Absent);
    simulator.add_fault(Scope::profile(&key("flaky")), FaultKind::ServerError, None);
    let dir = tempfile::tempdir().unwrap();
    let text = Running::start(
        dir.path(),
        &config(dir.path(), &simulator, &text_receiver, "text"),
        "text",
    );
    let json = Running::start(
        dir.path(),
        &config(dir.path(), &simulator, &json_receiver, "json"),
        "json",
    );

    eventually(30, "the odd issue opened in both logs", || async {
        let opened = logged(&text.log(), &["msg=\"issue opened\"", "Odd\\u0007Code"])
            && logged(&json.log(), &["\"issue opened\"", "Odd\\u0007Code"]);
        opened.then_some(())
    })
    .await;
    // Throttled for a while: the lane's WARN and its end.
    let account = Scope {
        account_id: Some(simulator::DEFAULT_ACCOUNT.to_owned()),
        ..Scope::all()
    };
    simulator.add_fault(account, FaultKind::Throttle, None);
    eventually(30, "throttled in both logs", || async {
        let said = "AWS throttles this account and region";
        (logged(&text.log(), &[said]) && logged(&json.log(), &[said])).then_some(())
    })
    .await;
    // Every fault ends: the flaky profile works again too.
    simulator.apply(SimCommand::ClearFaults).unwrap();
    eventually(30, "throttling over", || async {
        logged(&text.log(), &["no longer throttled"]).then_some(())
    })
    .await;
    // Then the other kinds of event.
    simulator
        .apply(SimCommand::SetStatus {
            key: key("web"),
            status: "CREATE_FAILED".into(),
        })
        .unwrap();
    simulator
        .apply(SimCommand::SetHealth {
            key: key(ODD_NAME),
            health: Health::Absent,
        })
        .unwrap();
    simulator
        .apply(SimCommand::DeleteProfile { key: key("doomed") })
        .unwrap();
    eventually(30, "the other events in both logs", || async {
        let all = |log: &str, quote: &str| {
            ["issue resolved", "status changed", "resource deleted"]
                .iter()
                .all(|msg| log.contains(&format!("{quote}{msg}\"")))
        };
        (all(&text.log(), "msg=\"") && all(&json.log(), "\"message\":\"")).then_some(())
    })
    .await;
    let text = text.stop().await;
    let json = json.stop().await;

    // Every text line: strict logfmt, canonical, ts, level, target and msg first, keys unique.
    let mut lines = Vec::new();
    for line in text.lines() {
        let pairs = parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(encode(&pairs), line, "not canonical");
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys[..4], ["ts", "level", "target", "msg"], "{line}");
        let unique: std::collections::BTreeSet<&str> = keys.iter().copied().collect();
        assert_eq!(unique.len(), keys.len(), "a key twice: {line}");
        assert!(humantime::parse_rfc3339(&pairs[0].1).is_ok(), "{line}");
        let levels = ["error", "warn", "info", "debug", "trace"];
        assert!(levels.contains(&pairs[1].1.as_str()), "{line}");
        // The long tail is for JSON lines.
        assert!(!keys.contains(&"issue_message"), "{line}");
        lines.push(pairs);
    }
    let field =
        |pairs: &[Pair], key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let with = |msg: &str| -> Vec<&Vec<Pair>> {
        lines
            .iter()
            .filter(|p| field(p, "msg").as_deref() == Some(msg))
            .collect()
    };
    for msg in [
        "issue opened",
        "issue resolved",
        "status changed",
        "resource deleted",
        "delivery failed; will retry",
        "delivering again",
        "AWS throttles this account and region; backing off and lowering the rate",
        "no longer throttled; the rate climbs back",
        "describe failed",
        "describe works again",
        "target needs attention",
    ] {
        assert!(!with(msg).is_empty(), "no {msg:?} in\n{text}");
    }
    assert!(lines.iter().any(|p| p[1].1 == "debug"), "debug lines too");
    // A hostile value comes back exactly, in one field.
    let odd_profile = format!("{}/us-east-1/prod/{ODD_NAME}", simulator::DEFAULT_ACCOUNT);
    let opened = with("issue opened");
    let odd = opened
        .iter()
        .find(|p| field(p, "code").as_deref() == Some(ODD_CODE))
        .expect("the odd issue opened");
    assert_eq!(field(odd, "profile"), Some(odd_profile.clone()));
    assert_eq!(field(odd, "resource_count").as_deref(), Some("2"));
    // The common line stays short.
    for line in text.lines().filter(|l| l.contains("target=sinks::log ")) {
        if !line.contains("odd name") {
            assert!(line.len() < 200, "{} characters: {line}", line.len());
        }
    }
    // Numbers for reading: no float with more than three decimals.
    for pairs in &lines {
        if let Some(rate) = field(pairs, "rate") {
            let decimals = rate.split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 3, "rate={rate}");
        }
    }
    // A retry WARN at most once a minute per sink.
    let retries: Vec<_> = with("delivery failed; will retry")
        .into_iter()
        .filter(|p| field(p, "sink").as_deref() == Some("hook"))
        .collect();
    assert_eq!(retries.len(), 1, "{text}");

    // JSON lines: each a JSON object; the log sink's lines carry every field.
    let mut events = Vec::new();
    for line in json.lines() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["timestamp"].is_string() && value["level"].is_string(),
            "{line}"
        );
        // Floats keep their full value.
        if value["lane"].is_string() && !value["rate"].is_null() {
            assert!(value["rate"].is_number(), "{line}");
        }
        if value["target"] == "fargate_health_monitor::sinks::log" {
            events.push(value);
        }
    }
    let odd = events
        .iter()
        .find(|e| e["event"] == "issue_opened" && e["code"] == ODD_CODE)
        .expect("the odd issue opened");
    assert_eq!(odd["issue_message"], ODD_MESSAGE);
    assert_eq!(odd["resource_ids"], "eni-1 x,r=2");
    assert_eq!(odd["kind"], "fargate_profile");
    assert_eq!(odd["name"], ODD_NAME);
    assert!(odd.get("fargate_profile").is_none(), "{odd}");
    assert_eq!(odd["labels"], "env=a b\"c=d");
    for name in [
        "sink",
        "id",
        "sequence",
        "account_id",
        "region",
        "cluster",
        "resource_count",
        "episode_id",
        "since",
        "message",
    ] {
        assert!(!odd[name].is_null(), "{name} missing: {odd}");
    }
    let deleted = events
        .iter()
        .find(|e| e["event"] == "resource_deleted")
        .expect("resource deleted");
    assert!(deleted["arn"].as_str().unwrap().starts_with("arn:aws:eks:"));
}
