//! The rules of each section: which keys exist, their types, defaults and ranges.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use url::Url;

use std::ops::RangeInclusive;

use super::reader::{
    At, Reader, Span, Table, first_duplicate, is_safe_to_show, named, shown, type_name,
};
use super::tls::{TlsProblem, check_pair};
use super::{
    Alerts, Config, ConfigError, Delivery, Environment, Loaded, Pattern, Poll, Server, Sink,
    SinkKind, State, Target, Tls, defaults, files, ranges,
};
use crate::model::{EventKind, Kind, Shard, Status};
use crate::secret::{Secret, SecretUrl, is_loopback};

const TOP_KEYS: &[&str] = &["server", "poll", "state", "alerts", "targets", "sinks"];
const SERVER_KEYS: &[&str] = &["listen", "external_url", "tls", "basic_auth"];
const TLS_KEYS: &[&str] = &["cert_file", "key_file"];
const BASIC_AUTH_KEYS: &[&str] = &["users"];
const POLL_KEYS: &[&str] = &[
    "shard",
    "interval",
    "discovery_interval",
    "timeout",
    "concurrency",
    "max_requests_per_second",
];
const STATE_KEYS: &[&str] = &["path"];
const ALERTS_KEYS: &[&str] = &["resolve_after"];
const TARGET_KEYS: &[&str] = &[
    "region",
    "cluster",
    "kinds",
    "profiles",
    "nodegroups",
    "addons",
    "labels",
    "account_id",
    "profile",
    "role_arn",
    "external_id",
    "endpoint_url",
    "sts_endpoint_url",
];
const SINK_TYPES: &[&str] = &["slack", "webhook", "alertmanager", "log"];
const SLACK_KEYS: &[&str] = &[
    "name",
    "type",
    "url",
    "url_file",
    "events",
    "statuses",
    "timeout",
    "max_age",
    "max_queue",
    "retry_initial",
    "retry_max",
    "group_wait",
];
const WEBHOOK_KEYS: &[&str] = &[
    "name",
    "type",
    "url",
    "url_file",
    "secret",
    "secret_file",
    "headers",
    "headers_file",
    "events",
    "statuses",
    "timeout",
    "max_age",
    "max_queue",
    "retry_initial",
    "retry_max",
];
const ALERTMANAGER_KEYS: &[&str] = &[
    "name",
    "type",
    "url",
    "url_file",
    "headers",
    "headers_file",
    "resend_interval",
    "timeout",
    "runbook_url",
];
const LOG_KEYS: &[&str] = &["name", "type", "events", "statuses"];

/// Label names the domain series and alerts already use.
pub const OWN_LABELS: &[&str] = &[
    "aws_account_id",
    "aws_region",
    "eks_cluster",
    "fargate_profile",
    "eks_nodegroup",
    "eks_addon",
    "eks_capability",
    "arn",
    "pod_execution_role_arn",
    "node_role_arn",
    "capacity_type",
    "release_version",
    "addon_version",
    "version",
    "platform_version",
    "role_arn",
    "status",
    "code",
    "alertname",
    "severity",
];

/// Headers the webhook sink sets itself.
const OWN_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "x-fargate-health-event-id",
    "x-fargate-health-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

pub(super) fn parse(text: &str, path: &Path, env: &dyn Environment) -> Result<Loaded, ConfigError> {
    let mut r = Reader::new(text, path, env);
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for err in syntax_errors {
            // The message only: the error's Display quotes the line, which may hold a secret.
            let span = err.span().unwrap_or(0..0);
            r.error(&span, format!("invalid TOML: {}", err.message().trim()));
        }
        let (problems, warnings) = r.finish();
        return Err(ConfigError { problems, warnings });
    }
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let root_span = document.span();
    let root = Table {
        map: document.get_ref(),
        span: &root_span,
        name: "the top level",
    };
    r.check_keys(root, TOP_KEYS);

    let server = section(&mut r, root, "server", |r, t| server(r, t, &base_dir));
    let poll = section(&mut r, root, "poll", poll);
    let state = section(&mut r, root, "state", state);
    let alerts = section(&mut r, root, "alerts", alerts);
    let targets = targets(&mut r, root);
    let sinks = sinks(&mut r, root, &base_dir);

    let (problems, warnings) = r.finish();
    if !problems.is_empty() {
        return Err(ConfigError { problems, warnings });
    }
    Ok(Loaded {
        config: Config {
            server,
            poll,
            state,
            alerts,
            targets,
            sinks,
        },
        warnings,
    })
}

/// Reads an optional `[name]` table; a missing one reads as an empty table (all defaults).
fn section<T>(
    r: &mut Reader<'_>,
    root: Table<'_, '_>,
    key: &str,
    read: impl FnOnce(&mut Reader<'_>, Table<'_, '_>) -> T,
) -> T {
    let empty = DeTable::new();
    let name = format!("[{key}]");
    match r.table(root, key) {
        Some((map, value)) => {
            let span = value.span();
            read(
                r,
                Table {
                    map,
                    span: &span,
                    name: &name,
                },
            )
        }
        None => read(
            r,
            Table {
                map: &empty,
                span: root.span,
                name: &name,
            },
        ),
    }
}

fn server(r: &mut Reader<'_>, t: Table<'_, '_>, base_dir: &Path) -> Server {
    r.check_keys(t, SERVER_KEYS);
    let default_listen: SocketAddr = defaults::LISTEN.parse().expect("valid default address");
    let listen = r
        .string(t, "listen")
        .and_then(|s| match s.value.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                r.error(
                    &s.span,
                    format!(
                        "`listen`: {} is not an address with a port, such as \"127.0.0.1:9877\" or \"[::]:9877\"",
                        shown(&s.value)
                    ),
                );
                None
            }
        })
        .unwrap_or(default_listen);
    let external_url = r.string(t, "external_url").and_then(|s| {
        let url = http_url(r, &s, "external_url")?;
        if url.query().is_some() || url.fragment().is_some() {
            r.error(
                &s.span,
                "`external_url` must not have a query or a fragment: links are made below its path",
            );
            return None;
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Links in alerts and on the page carry it: a password would reach every receiver.
            r.error(
                &s.span,
                "`external_url` must not carry a user or password: every alert's link and the status page show it",
            );
            return None;
        }
        Some(url)
    });
    let tls = r.table(t, "tls").and_then(|(map, value)| {
        let span = value.span();
        let tls = Table {
            map,
            span: &span,
            name: "[server.tls]",
        };
        r.check_keys(tls, TLS_KEYS);
        r.require(tls, "cert_file");
        r.require(tls, "key_file");
        let cert_file = r.string(tls, "cert_file");
        let key_file = r.string(tls, "key_file");
        let (cert_file, key_file) = (cert_file?, key_file?);
        let cert = r.read_named_file(&cert_file, "cert_file", base_dir, files::PEM_MAX_BYTES);
        let key = r.read_named_file(&key_file, "key_file", base_dir, files::PEM_MAX_BYTES);
        let ((cert_path, cert_pem), (key_path, key_pem)) = (cert?, key?);
        let problem = match check_pair(&cert_pem, &key_pem) {
            Ok(()) => None,
            Err(TlsProblem::NoCertificate) => Some((
                &cert_file.span,
                format!(
                    "`cert_file`: {} holds no valid PEM certificate",
                    cert_path.display()
                ),
            )),
            Err(TlsProblem::NoKey) => Some((
                &key_file.span,
                format!(
                    "`key_file`: {} holds no valid PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    key_path.display()
                ),
            )),
            Err(TlsProblem::Mismatch) => Some((
                &key_file.span,
                format!(
                    "`key_file`: the key in {} is not the key of the certificate in {}",
                    key_path.display(),
                    cert_path.display()
                ),
            )),
        };
        if let Some((span, message)) = problem {
            r.error(span, message);
            return None;
        }
        Some(Tls {
            cert_file: cert_path,
            key_file: key_path,
        })
    });
    let mut basic_auth = BTreeMap::new();
    if let Some((map, value)) = r.table(t, "basic_auth") {
        let span = value.span();
        let auth = Table {
            map,
            span: &span,
            name: "[server.basic_auth]",
        };
        r.check_keys(auth, BASIC_AUTH_KEYS);
        r.require(auth, "users");
        if let Some(users) = r.string_map(auth, "users") {
            for (user, hash) in users {
                if user.value.is_empty()
                    || user.value.contains(':')
                    || user.value.chars().any(char::is_control)
                {
                    r.error(
                        &user.span,
                        format!(
                            "user name {} must not be empty or contain `:` or control characters",
                            named(&user.value)
                        ),
                    );
                    continue;
                }
                let user = user.value;
                let Some(cost) = bcrypt_cost(hash.value.as_bytes()) else {
                    let example = if is_safe_to_show(&user) {
                        user.as_str()
                    } else {
                        "NAME"
                    };
                    r.error(
                        &hash.span,
                        format!("the password of user {} must be a bcrypt hash (\"$2b$...\", 60 characters), as `htpasswd -nBC 10 {example}` prints", named(&user)),
                    );
                    continue;
                };
                if !ranges::BCRYPT_COST.contains(&cost) {
                    r.error(
                        &hash.span,
                        format!(
                            "the bcrypt cost of user {}'s hash is {cost}; use {} to {} (each step doubles the time of every check)",
                            named(&user),
                            ranges::BCRYPT_COST.start(),
                            ranges::BCRYPT_COST.end()
                        ),
                    );
                    continue;
                }
                basic_auth.insert(user, Secret::new(hash.value));
            }
        }
    }
    Server {
        listen,
        tls,
        basic_auth,
        external_url,
    }
}

fn poll(r: &mut Reader<'_>, t: Table<'_, '_>) -> Poll {
    r.check_keys(t, POLL_KEYS);
    let interval =
        ranged_duration(r, t, "interval", ranges::INTERVAL).unwrap_or(defaults::INTERVAL);
    let discovery_interval =
        ranged_duration(r, t, "discovery_interval", ranges::DISCOVERY_INTERVAL)
            .unwrap_or(defaults::DISCOVERY_INTERVAL);
    let timeout = match r.duration(t, "timeout") {
        Some(At { value, span }) if !ranges::POLL_TIMEOUT.contains(&value) => {
            out_of_range(r, &span, "timeout", value, &ranges::POLL_TIMEOUT);
            defaults::TIMEOUT
        }
        Some(At { value, span }) if value >= interval => {
            r.error(
                &span,
                format!(
                    "`timeout` ({}) must be shorter than `interval` ({})",
                    humantime::format_duration(value),
                    humantime::format_duration(interval)
                ),
            );
            value
        }
        Some(At { value, .. }) => value,
        None => {
            if defaults::TIMEOUT >= interval && !t.has("timeout") {
                r.error(
                    &t.key_span("interval"),
                    format!(
                        "`interval` ({}) must be longer than the default `timeout` (10s); set `timeout` too",
                        humantime::format_duration(interval)
                    ),
                );
            }
            defaults::TIMEOUT
        }
    };
    let concurrency = match r.integer(t, "concurrency") {
        Some(At { value, span }) if !ranges::CONCURRENCY.contains(&value) => {
            r.error(
                &span,
                format!(
                    "`concurrency` must be between {} and {}, not {value}",
                    ranges::CONCURRENCY.start(),
                    ranges::CONCURRENCY.end()
                ),
            );
            defaults::CONCURRENCY
        }
        Some(At { value, .. }) => usize::try_from(value).unwrap_or(defaults::CONCURRENCY),
        None => defaults::CONCURRENCY,
    };
    let max_requests_per_second = match r.number(t, "max_requests_per_second") {
        Some(At { value, span }) if !ranges::MAX_REQUESTS_PER_SECOND.contains(&value) => {
            r.error(
                &span,
                format!(
                    "`max_requests_per_second` must be between {} and {}, not {value}",
                    ranges::MAX_REQUESTS_PER_SECOND.start(),
                    ranges::MAX_REQUESTS_PER_SECOND.end()
                ),
            );
            defaults::MAX_REQUESTS_PER_SECOND
        }
        Some(At { value, .. }) => value,
        None => defaults::MAX_REQUESTS_PER_SECOND,
    };
    let shard = r
        .string(t, "shard")
        .and_then(|s| match Shard::parse(&s.value) {
            Ok(shard) => Some(shard),
            Err(_) => {
                r.error(
                    &s.span,
                    format!(
                        "`shard`: {} is not a shard: write I/N with 0 <= I < N, such as 0/3",
                        shown(&s.value)
                    ),
                );
                None
            }
        })
        .unwrap_or(Shard::ALL);
    Poll {
        interval,
        discovery_interval,
        timeout,
        concurrency,
        max_requests_per_second,
        shard,
    }
}

fn state(r: &mut Reader<'_>, t: Table<'_, '_>) -> State {
    r.check_keys(t, STATE_KEYS);
    let path = match r.string(t, "path") {
        Some(s) if s.value.trim().is_empty() => {
            r.error(&s.span, "`path` must not be empty");
            None
        }
        Some(s) => Some(At {
            value: PathBuf::from(s.value),
            span: s.span,
        }),
        None => None,
    };
    let path = path.unwrap_or_else(|| At {
        value: PathBuf::from(defaults::STATE_PATH),
        span: t.span.clone(),
    });
    // The store reads, replaces and sets aside only a regular file. Anything else there is
    // left alone: the daemon then alerts from memory (and says so), so this warns instead of
    // refusing to start, which would make a restart loop of a full or broken disk.
    if let Some(kind) = r.non_regular_file(&path.value) {
        r.warn(
            &path.span,
            format!(
                "`path`: {} is {kind}; the state file must be a regular file or not exist yet \
                 (until then the daemon alerts from memory and keeps nothing across a restart)",
                path.value.display()
            ),
        );
    }
    State { path: path.value }
}

fn alerts(r: &mut Reader<'_>, t: Table<'_, '_>) -> Alerts {
    r.check_keys(t, ALERTS_KEYS);
    Alerts {
        resolve_after: ranged_duration(r, t, "resolve_after", ranges::RESOLVE_AFTER)
            .unwrap_or(defaults::RESOLVE_AFTER),
    }
}

/// An array of tables under `key`, each with its span.
fn array_of_tables<'a, 'i>(
    r: &mut Reader<'_>,
    root: Table<'a, 'i>,
    key: &str,
) -> Vec<(&'a DeTable<'i>, Span)> {
    let Some(value) = root.get(key) else {
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        r.error(
            &value.span(),
            format!(
                "`{key}` must be an array of tables ([[{key}]]), not {}",
                type_name(value.get_ref())
            ),
        );
        return Vec::new();
    };
    let mut tables = Vec::new();
    for item in items.iter() {
        match item.get_ref() {
            DeValue::Table(map) => tables.push((map, item.span())),
            other => r.error(
                &item.span(),
                format!("each of `{key}` must be a table, not {}", type_name(other)),
            ),
        }
    }
    tables
}

fn targets(r: &mut Reader<'_>, root: Table<'_, '_>) -> Vec<Target> {
    let tables = array_of_tables(r, root, "targets");
    let none_given = match root.get("targets") {
        None => Some(root.span.clone()),
        Some(v) if matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()) => Some(v.span()),
        Some(_) => None,
    };
    if let Some(span) = none_given {
        r.error(
            &span,
            "no [[targets]]: add at least one, e.g. [[targets]] region = \"us-east-1\" cluster = \"*\"",
        );
    }
    tables
        .into_iter()
        .filter_map(|(map, span)| {
            let t = Table {
                map,
                span: &span,
                name: "[[targets]]",
            };
            target(r, t)
        })
        .collect()
}

fn target(r: &mut Reader<'_>, t: Table<'_, '_>) -> Option<Target> {
    r.check_keys(t, TARGET_KEYS);
    r.require(t, "region");
    r.require(t, "cluster");

    let region = r.string(t, "region").and_then(|s| {
        if is_region(&s.value) {
            Some(s.value)
        } else {
            r.error(
                &s.span,
                format!(
                    "`region`: {} is not an AWS region name such as \"us-east-1\"",
                    shown(&s.value)
                ),
            );
            None
        }
    });
    let cluster = r
        .string(t, "cluster")
        .and_then(|s| pattern(r, &s, "cluster"));
    let profiles = name_globs(r, t, "profiles");
    let nodegroups = name_globs(r, t, "nodegroups");
    let addons = name_globs(r, t, "addons");
    let kinds = kinds(r, t);
    if let Some(kinds) = &kinds {
        for kind in Kind::ALL.iter().filter(|k| !kinds.contains(k)) {
            if let Some(key) = Target::patterns_key(*kind).filter(|key| t.has(key)) {
                r.warn(
                    &t.key_span(key),
                    format!(
                        "`{key}` has no effect: `kinds` does not watch {}",
                        kind.name()
                    ),
                );
            }
        }
    }
    let labels = labels(r, t);
    let account_id = r.string(t, "account_id").and_then(|s| {
        if s.value.len() == 12 && s.value.bytes().all(|b| b.is_ascii_digit()) {
            Some(s.value)
        } else {
            r.error(
                &s.span,
                format!(
                    "`account_id`: {} is not a 12-digit AWS account id",
                    shown(&s.value)
                ),
            );
            None
        }
    });
    let aws_profile = r.string(t, "profile").and_then(|s| {
        if s.value.trim().is_empty() {
            r.error(&s.span, "`profile` must not be empty");
            None
        } else {
            Some(s.value)
        }
    });
    let role_arn = r.string(t, "role_arn").and_then(|s| {
        if is_role_arn(&s.value) {
            Some(s.value)
        } else {
            r.error(
                &s.span,
                format!(
                    "`role_arn`: {} is not an IAM role ARN such as \"arn:aws:iam::111122223333:role/name\"",
                    shown(&s.value)
                ),
            );
            None
        }
    });
    let external_id = r.string(t, "external_id").and_then(|s| {
        if !t.has("role_arn") {
            r.error(&s.span, "`external_id` needs `role_arn`");
            return None;
        }
        let valid_chars = s
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c));
        if (2..=1224).contains(&s.value.len()) && valid_chars {
            Some(s.value)
        } else {
            r.error(
                &s.span,
                "`external_id` must be 2 to 1224 characters of letters, digits and +=,.@:/-_",
            );
            None
        }
    });
    let endpoint_url = r
        .string(t, "endpoint_url")
        .and_then(|s| aws_endpoint(r, &s, "endpoint_url"));
    let sts_endpoint_url = r
        .string(t, "sts_endpoint_url")
        .and_then(|s| aws_endpoint(r, &s, "sts_endpoint_url"));

    Some(Target {
        region: region?,
        cluster: cluster?,
        kinds: kinds?,
        profiles: profiles?,
        nodegroups: nodegroups?,
        addons: addons?,
        labels: labels?,
        account_id: given(t, "account_id", account_id)?,
        aws_profile: given(t, "profile", aws_profile)?,
        role_arn: given(t, "role_arn", role_arn)?,
        external_id: given(t, "external_id", external_id)?,
        endpoint_url: given(t, "endpoint_url", endpoint_url)?,
        sts_endpoint_url: given(t, "sts_endpoint_url", sts_endpoint_url)?,
    })
}

/// A target's name globs under `key`: not empty; `["*"]` when absent. A name given twice is a
/// warning (it is one resource, described once).
fn name_globs(r: &mut Reader<'_>, t: Table<'_, '_>, key: &str) -> Option<Vec<Pattern>> {
    match r.strings(t, key) {
        Some(list) if list.value.is_empty() => {
            r.error(
                &list.span,
                format!("`{key}` must not be empty; use [\"*\"] for every name"),
            );
            None
        }
        Some(list) => {
            for (at, name) in list.value.iter().enumerate() {
                if list.value[..at]
                    .iter()
                    .any(|earlier| earlier.value == name.value)
                {
                    r.warn(
                        &name.span,
                        format!("`{key}`: {} is named twice", shown(&name.value)),
                    );
                }
            }
            list.value
                .iter()
                .map(|s| pattern(r, s, key))
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Option<Vec<_>>>()
        }
        None if t.has(key) => None,
        None => Pattern::parse("*").ok().map(|p| vec![p]),
    }
}

/// A target's `kinds`: known kind names, at least one, without repeats; every kind when
/// absent. Kept in [`Kind::ALL`] order.
fn kinds(r: &mut Reader<'_>, t: Table<'_, '_>) -> Option<Vec<Kind>> {
    let Some(list) = r.strings(t, "kinds") else {
        return (!t.has("kinds")).then(|| Kind::ALL.to_vec());
    };
    if list.value.is_empty() {
        r.error(
            &list.span,
            "`kinds` must not be empty; leave it out for every kind",
        );
        return None;
    }
    let mut ok = true;
    let mut named = Vec::new();
    for name in &list.value {
        match Kind::from_name(&name.value) {
            Some(kind) if named.contains(&kind) => {
                r.error(
                    &name.span,
                    format!("`kinds`: {} is named twice", shown(&name.value)),
                );
                ok = false;
            }
            Some(kind) => named.push(kind),
            None => {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                r.error(
                    &name.span,
                    format!(
                        "`kinds`: {} is not a kind; the kinds are {}",
                        shown(&name.value),
                        known.join(", ")
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then(|| {
        Kind::ALL
            .iter()
            .copied()
            .filter(|k| named.contains(k))
            .collect()
    })
}

fn labels(r: &mut Reader<'_>, t: Table<'_, '_>) -> Option<BTreeMap<String, String>> {
    if !t.has("labels") {
        return Some(BTreeMap::new());
    }
    let entries = r.string_map(t, "labels")?;
    let mut labels = BTreeMap::new();
    let mut ok = true;
    for (name, value) in entries {
        let problem = if !is_label_name(&name.value) {
            Some(format!(
                "label name {} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                named(&name.value)
            ))
        } else if name.value.starts_with("__") {
            Some(format!(
                "label name {} is reserved: names starting with `__` belong to Prometheus",
                named(&name.value)
            ))
        } else if name.value == "job" || name.value == "instance" {
            Some(format!(
                "label name {} is reserved: Prometheus sets it on every scrape",
                named(&name.value)
            ))
        } else if OWN_LABELS.contains(&name.value.as_str()) {
            Some(format!(
                "label name {} is already used by fargate-health-monitor's own series",
                named(&name.value)
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            r.error(&name.span, problem);
            ok = false;
        } else if value.value.is_empty() {
            r.error(
                &value.span,
                format!(
                    "label {} has an empty value, which Prometheus treats as no label",
                    named(&name.value)
                ),
            );
            ok = false;
        } else {
            labels.insert(name.value, value.value);
        }
    }
    ok.then_some(labels)
}

fn sinks(r: &mut Reader<'_>, root: Table<'_, '_>, base_dir: &Path) -> Vec<Sink> {
    let tables = array_of_tables(r, root, "sinks");
    let mut sinks = Vec::new();
    let mut names: Vec<(String, Span)> = Vec::new();
    for (index, (map, span)) in tables.into_iter().enumerate() {
        let t = Table {
            map,
            span: &span,
            name: "[[sinks]]",
        };
        let Some(type_name) = sink_type(r, t) else {
            continue;
        };
        let name = match r.string(t, "name") {
            Some(s) if s.value.trim().is_empty() || s.value.chars().any(char::is_control) => {
                r.error(
                    &s.span,
                    "`name` must not be empty or contain control characters",
                );
                None
            }
            Some(s) => Some(s),
            None if t.has("name") => None,
            None => Some(At {
                value: format!("{type_name}-{index}"),
                span: span.clone(),
            }),
        };
        if let Some(name) = &name {
            if let Some((_, first)) = names.iter().find(|(n, _)| *n == name.value) {
                let line = r.line_of(first);
                r.error(
                    &name.span,
                    format!(
                        "sink name {} is used twice (first on line {line}); names must be unique",
                        named(&name.value)
                    ),
                );
            }
            names.push((name.value.clone(), name.span.clone()));
        }
        let kind = match type_name {
            "slack" => slack(r, t, base_dir),
            "webhook" => webhook(r, t, base_dir),
            "alertmanager" => alertmanager(r, t, base_dir),
            _ => log(r, t),
        };
        if let (Some(name), Some(kind)) = (name, kind) {
            sinks.push(Sink {
                name: name.value,
                kind,
            });
        }
    }
    sinks
}

fn sink_type(r: &mut Reader<'_>, t: Table<'_, '_>) -> Option<&'static str> {
    let Some(s) = r.string(t, "type") else {
        if !t.has("type") {
            r.error(
                t.span,
                format!(
                    "[[sinks]] is missing the key `type` (one of {})",
                    SINK_TYPES.join(", ")
                ),
            );
        }
        return None;
    };
    match SINK_TYPES.iter().find(|known| **known == s.value) {
        Some(known) => Some(known),
        None => {
            r.error(
                &s.span,
                format!(
                    "unknown sink type {}; use one of {}",
                    shown(&s.value),
                    SINK_TYPES.join(", ")
                ),
            );
            None
        }
    }
}

fn slack(r: &mut Reader<'_>, t: Table<'_, '_>, base_dir: &Path) -> Option<SinkKind> {
    r.check_keys(with_type(t, "slack"), SLACK_KEYS);
    let url = one_sink_url(r, t, base_dir);
    if let Some(url) = &url
        && url.expose().scheme() == "http"
        && !url.is_loopback()
    {
        r.warn(
            &t.key_span("url"),
            "the Slack webhook URL is a credential and would cross a non-loopback http:// link",
        );
    }
    let delivery = delivery(r, t);
    let group_wait = ranged_duration(r, t, "group_wait", ranges::GROUP_WAIT);
    Some(SinkKind::Slack {
        url: url?,
        delivery: delivery?,
        group_wait: given(t, "group_wait", group_wait)?.unwrap_or(defaults::GROUP_WAIT),
    })
}

fn webhook(r: &mut Reader<'_>, t: Table<'_, '_>, base_dir: &Path) -> Option<SinkKind> {
    r.check_keys(with_type(t, "webhook"), WEBHOOK_KEYS);
    let url = one_sink_url(r, t, base_dir);
    let secrets = match r.secrets(t, "secret", base_dir) {
        Some(list) if list.value.is_empty() => {
            r.error(&list.span, "`secret` must not be an empty list");
            None
        }
        Some(list) => {
            let empty = list.value.iter().find(|s| s.value.expose().is_empty());
            if let Some(empty) = empty {
                r.error(&empty.span, "`secret` must not be empty");
                None
            } else {
                Some(list.value.into_iter().map(|s| s.value).collect())
            }
        }
        None if t.has("secret") || t.has("secret_file") => None,
        None => Some(Vec::new()),
    };
    let headers = headers(r, t, base_dir);
    if let (Some(url), Some(secrets), Some(headers)) = (&url, &secrets, &headers) {
        warn_plain_http(r, t, url, !secrets.is_empty(), headers);
    }
    let delivery = delivery(r, t);
    Some(SinkKind::Webhook {
        url: url?,
        secrets: secrets?,
        headers: headers?,
        delivery: delivery?,
    })
}

fn alertmanager(r: &mut Reader<'_>, t: Table<'_, '_>, base_dir: &Path) -> Option<SinkKind> {
    r.check_keys(with_type(t, "alertmanager"), ALERTMANAGER_KEYS);
    let urls = sink_urls(r, t, base_dir);
    let headers = headers(r, t, base_dir);
    if let (Some(urls), Some(headers)) = (&urls, &headers) {
        for url in urls {
            warn_plain_http(r, t, url, false, headers);
        }
    }
    let resend_interval = ranged_duration(r, t, "resend_interval", ranges::RESEND_INTERVAL);
    let timeout = ranged_duration(r, t, "timeout", ranges::SINK_TIMEOUT);
    let runbook_url = r
        .string(t, "runbook_url")
        .and_then(|s| http_url(r, &s, "runbook_url"));
    Some(SinkKind::Alertmanager {
        urls: urls?,
        headers: headers?,
        resend_interval: given(t, "resend_interval", resend_interval)?
            .unwrap_or(defaults::RESEND_INTERVAL),
        timeout: given(t, "timeout", timeout)?.unwrap_or(defaults::SINK_TIMEOUT),
        runbook_url: given(t, "runbook_url", runbook_url)?,
    })
}

/// `None` when `key` was given but its value was invalid (already reported); otherwise the
/// value, if any.
fn given<T>(t: Table<'_, '_>, key: &str, value: Option<T>) -> Option<Option<T>> {
    match value {
        None if t.has(key) => None,
        value => Some(value),
    }
}

fn log(r: &mut Reader<'_>, t: Table<'_, '_>) -> Option<SinkKind> {
    r.check_keys(with_type(t, "log"), LOG_KEYS);
    let events = events(r, t);
    let statuses = statuses(r, t);
    Some(SinkKind::Log {
        events: events?,
        statuses: statuses?,
    })
}

/// The table under a name that says its sink type, for messages about its keys.
fn with_type<'a, 'i>(t: Table<'a, 'i>, type_name: &'static str) -> Table<'a, 'i> {
    let name: &'static str = match type_name {
        "slack" => "[[sinks]] of type slack",
        "webhook" => "[[sinks]] of type webhook",
        "alertmanager" => "[[sinks]] of type alertmanager",
        _ => "[[sinks]] of type log",
    };
    Table { name, ..t }
}

/// The keys shared by sinks that the outbox feeds.
fn delivery(r: &mut Reader<'_>, t: Table<'_, '_>) -> Option<Delivery> {
    let events = events(r, t);
    let statuses = statuses(r, t);
    let timeout = ranged_duration(r, t, "timeout", ranges::SINK_TIMEOUT);
    let max_age = ranged_duration(r, t, "max_age", ranges::MAX_AGE);
    let retry_initial = ranged_duration(r, t, "retry_initial", ranges::RETRY_INITIAL);
    let mut retry_max = ranged_duration(r, t, "retry_max", ranges::RETRY_MAX);
    if let Some(max) = retry_max {
        let initial = retry_initial.unwrap_or(defaults::RETRY_INITIAL);
        if max < initial {
            r.error(
                &t.key_span("retry_max"),
                format!(
                    "`retry_max` ({}) must not be shorter than `retry_initial` ({})",
                    humantime::format_duration(max),
                    humantime::format_duration(initial)
                ),
            );
            retry_max = None;
        }
    }
    let max_queue = match r.integer(t, "max_queue") {
        Some(At { value, span }) if !ranges::MAX_QUEUE.contains(&value) => {
            r.error(
                &span,
                format!(
                    "`max_queue` must be between {} and {}, not {value}",
                    ranges::MAX_QUEUE.start(),
                    ranges::MAX_QUEUE.end()
                ),
            );
            None
        }
        Some(At { value, .. }) => usize::try_from(value).ok(),
        None if t.has("max_queue") => None,
        None => Some(defaults::MAX_QUEUE),
    };
    Some(Delivery {
        events: events?,
        statuses: statuses?,
        timeout: given(t, "timeout", timeout)?.unwrap_or(defaults::SINK_TIMEOUT),
        max_age: given(t, "max_age", max_age)?.unwrap_or(defaults::MAX_AGE),
        max_queue: max_queue?,
        retry_initial: given(t, "retry_initial", retry_initial)?.unwrap_or(defaults::RETRY_INITIAL),
        retry_max: given(t, "retry_max", retry_max)?.unwrap_or(defaults::RETRY_MAX),
    })
}

fn events(r: &mut Reader<'_>, t: Table<'_, '_>) -> Option<BTreeSet<EventKind>> {
    let Some(list) = r.strings(t, "events") else {
        if t.has("events") {
            return None;
        }
        return Some(
            EventKind::ALL
                .into_iter()
                .filter(|k| *k != EventKind::IssueUpdated)
                .collect(),
        );
    };
    if list.value.is_empty() {
        r.error(
            &list.span,
            "`events` must not be empty (remove the sink to send nothing)",
        );
        return None;
    }
    let mut kinds = BTreeSet::new();
    let mut ok = true;
    for item in &list.value {
        match EventKind::from_name(&item.value) {
            Some(kind) => {
                kinds.insert(kind);
            }
            None => {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                r.error(
                    &item.span,
                    format!(
                        "unknown event kind {}; use any of {}",
                        shown(&item.value),
                        known.join(", ")
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(kinds)
}

fn statuses(r: &mut Reader<'_>, t: Table<'_, '_>) -> Option<BTreeSet<Status>> {
    let Some(list) = r.strings(t, "statuses") else {
        if t.has("statuses") {
            return None;
        }
        return Some(Kind::alert_worthy_of_all().into_iter().collect());
    };
    let mut statuses = BTreeSet::new();
    for item in &list.value {
        let status = Status::from_wire(&item.value);
        if !Kind::ALL.iter().any(|kind| kind.knows_status(&status)) {
            let known: BTreeSet<&str> = Kind::ALL
                .iter()
                .flat_map(|kind| kind.spec().statuses.iter().copied())
                .collect();
            let known: Vec<&str> = known.into_iter().collect();
            r.warn(
                &item.span,
                format!(
                    "status {} is not one this version knows ({}); it matches only if EKS reports it",
                    shown(&item.value),
                    known.join(", ")
                ),
            );
        }
        statuses.insert(status);
    }
    Some(statuses)
}

fn headers(r: &mut Reader<'_>, t: Table<'_, '_>, base_dir: &Path) -> Option<Vec<(String, Secret)>> {
    let mut headers: Vec<(At<String>, Secret)> = Vec::new();
    let mut ok = true;
    if t.has("headers") {
        match r.string_map(t, "headers") {
            Some(entries) => {
                headers.extend(entries.into_iter().map(|(n, v)| (n, Secret::new(v.value))))
            }
            None => ok = false,
        }
    }
    if t.has("headers_file") {
        match r.string_map(t, "headers_file") {
            Some(entries) => {
                for (name, path) in entries {
                    match r.read_secret_file(&path, "headers_file", base_dir) {
                        Some(secret) => headers.push((name, secret.value)),
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    for (name, value) in &headers {
        let lower = name.value.to_ascii_lowercase();
        if !is_header_name(&name.value) {
            r.error(
                &name.span,
                format!("{} is not a valid HTTP header name", named(&name.value)),
            );
            ok = false;
        } else if OWN_HEADERS.contains(&lower.as_str()) {
            r.error(
                &name.span,
                format!(
                    "header {} is set by fargate-health-monitor and cannot be configured",
                    named(&name.value)
                ),
            );
            ok = false;
        } else if http::HeaderValue::from_str(value.expose()).is_err() {
            // The sinks build each request's headers this way; a value it refuses would
            // drop every alert. The value is not quoted: it may be a credential.
            r.error(
                &name.span,
                format!(
                    "the value of header {} is not a valid HTTP header value (it holds a \
                     line break, a control character or a character outside visible ASCII)",
                    named(&name.value)
                ),
            );
            ok = false;
        }
    }
    let lower: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.value.to_ascii_lowercase())
        .collect();
    if let Some(dup) = first_duplicate(lower.iter().map(String::as_str)) {
        let span = headers
            .iter()
            .rev()
            .find(|(n, _)| n.value.eq_ignore_ascii_case(dup))
            .map(|(n, _)| n.span.clone())
            .unwrap_or_else(|| t.span.clone());
        r.error(
            &span,
            format!(
                "header {} is set twice (header names ignore case)",
                named(dup)
            ),
        );
        ok = false;
    }
    ok.then(|| headers.into_iter().map(|(n, v)| (n.value, v)).collect())
}

fn warn_plain_http(
    r: &mut Reader<'_>,
    t: Table<'_, '_>,
    url: &SecretUrl,
    has_secret: bool,
    headers: &[(String, Secret)],
) {
    let exposed = url.expose();
    if exposed.scheme() != "http" || url.is_loopback() {
        return;
    }
    let authorization = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    let credentials = !exposed.username().is_empty() || exposed.password().is_some();
    let what = match (authorization, credentials, has_secret) {
        (true, _, _) => "the `Authorization` header would cross",
        (_, true, _) => "the credentials in the URL would cross",
        (_, _, true) => "payloads signed with `secret` would travel, readable and replayable, over",
        _ => return,
    };
    r.warn(
        &t.key_span("url"),
        format!("{what} a non-loopback http:// link to {url}; use https://"),
    );
}

/// Exactly one sink URL from `url` or `url_file`.
fn one_sink_url(r: &mut Reader<'_>, t: Table<'_, '_>, base_dir: &Path) -> Option<SecretUrl> {
    let urls = sink_urls(r, t, base_dir)?;
    if urls.len() == 1 {
        urls.into_iter().next()
    } else {
        r.error(
            &t.key_span("url"),
            "`url` must be a single URL for this sink type",
        );
        None
    }
}

/// One or more sink URLs from `url` or `url_file`; the messages never quote them.
fn sink_urls(r: &mut Reader<'_>, t: Table<'_, '_>, base_dir: &Path) -> Option<Vec<SecretUrl>> {
    if !t.has("url") && !t.has("url_file") {
        r.error(t.span, format!("{} is missing the key `url`", t.name));
        return None;
    }
    let list = r.secrets(t, "url", base_dir)?;
    if list.value.is_empty() {
        r.error(&list.span, "`url` must not be an empty list");
        return None;
    }
    let mut urls = Vec::new();
    let mut ok = true;
    for item in list.value {
        match Url::parse(item.value.expose().trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                urls.push(SecretUrl::new(url));
            }
            Ok(url) => {
                r.error(
                    &item.span,
                    format!(
                        "`url` must be an http:// or https:// URL with a host, not {}://…",
                        url.scheme()
                    ),
                );
                ok = false;
            }
            Err(err) => {
                r.error(&item.span, format!("`url` is not a valid URL ({err})"));
                ok = false;
            }
        }
    }
    ok.then_some(urls)
}

/// A duration within `range`; outside it a problem and `None`.
fn ranged_duration(
    r: &mut Reader<'_>,
    t: Table<'_, '_>,
    key: &str,
    range: RangeInclusive<Duration>,
) -> Option<Duration> {
    let duration = r.duration(t, key)?;
    if !range.contains(&duration.value) {
        out_of_range(r, &duration.span, key, duration.value, &range);
        return None;
    }
    Some(duration.value)
}

fn out_of_range(
    r: &mut Reader<'_>,
    span: &Span,
    key: &str,
    value: Duration,
    range: &RangeInclusive<Duration>,
) {
    let message = if range.start().is_zero() {
        format!("`{key}` must be at most {}", short(*range.end()))
    } else if value.is_zero() {
        format!(
            "`{key}` must be greater than 0s (between {} and {})",
            short(*range.start()),
            short(*range.end())
        )
    } else {
        format!(
            "`{key}` must be between {} and {}",
            short(*range.start()),
            short(*range.end())
        )
    };
    r.error(
        span,
        format!("{message}, not {}", humantime::format_duration(value)),
    );
}

/// A range bound in its largest whole unit: `100ms`, `1s`, `10m`, `24h`.
fn short(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The cost of a bcrypt hash (`$2b$NN$` and 53 characters of bcrypt's base64), or `None`
/// when it is not one.
fn bcrypt_cost(hash: &[u8]) -> Option<u32> {
    let [b'$', b'2', variant, b'$', tens, ones, b'$', rest @ ..] = hash else {
        return None;
    };
    let valid = matches!(variant, b'a' | b'b' | b'y')
        && tens.is_ascii_digit()
        && ones.is_ascii_digit()
        && rest.len() == 53
        && rest
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/'));
    valid.then(|| u32::from(tens - b'0') * 10 + u32::from(ones - b'0'))
}

/// An http(s) URL that is not a secret and may be quoted in messages.
fn http_url(r: &mut Reader<'_>, s: &At<String>, key: &str) -> Option<Url> {
    match Url::parse(&s.value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
        _ => {
            r.error(
                &s.span,
                format!(
                    "`{key}`: {} is not an http:// or https:// URL",
                    shown(&s.value)
                ),
            );
            None
        }
    }
}

/// An AWS endpoint: https, unless it points at loopback (SigV4 sends the session token in a
/// header).
fn aws_endpoint(r: &mut Reader<'_>, s: &At<String>, key: &str) -> Option<Url> {
    let url = http_url(r, s, key)?;
    if url.scheme() == "http" && !is_loopback(&url) {
        r.error(
            &s.span,
            format!(
                "`{key}` must use https:// unless it points at loopback: requests carry signed credentials"
            ),
        );
        return None;
    }
    Some(url)
}

fn pattern(r: &mut Reader<'_>, s: &At<String>, key: &str) -> Option<Pattern> {
    let pattern = match Pattern::parse(&s.value) {
        Ok(pattern) => pattern,
        Err(err) => {
            r.error(
                &s.span,
                format!("`{key}`: invalid glob {}: {err}", shown(&s.value)),
            );
            return None;
        }
    };
    if !pattern.is_glob() && !is_eks_name(&s.value) {
        r.error(
            &s.span,
            format!(
                "`{key}`: {} is neither a glob nor a valid EKS name (letters, digits, - and _, starting with a letter or digit, at most 100)",
                shown(&s.value)
            ),
        );
        return None;
    }
    Some(pattern)
}

fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() >= 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_role_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    matches!(parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
            && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty()))
}

fn is_eks_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 100
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && http::HeaderName::from_bytes(s.as_bytes()).is_ok()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}
