//! The configuration: a TOML file read into a spanned document and walked by hand, so that every
//! problem is reported at once with its file, line and column (serde's `deny_unknown_fields`
//! would stop at the first). `${VAR}` is expanded in string values after parsing; keys that hold
//! secrets also accept `<key>_file`. Secrets never appear in messages.

mod reader;
mod sections;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};
use url::Url;

use crate::model::{EventKind, Shard, Status};
use crate::secret::{Secret, SecretUrl};

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: Server,
    pub poll: Poll,
    pub state: State,
    pub alerts: Alerts,
    pub targets: Vec<Target>,
    pub sinks: Vec<Sink>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub listen: SocketAddr,
    /// `[server.tls]`: serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<Tls>,
    /// `[server.basic_auth] users`: user name to bcrypt hash; empty for no authentication.
    pub basic_auth: BTreeMap<String, Secret>,
    /// Base URL for links in alerts (`generatorURL`).
    pub external_url: Option<Url>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Poll {
    pub interval: Duration,
    pub discovery_interval: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
    /// Per (account, region).
    pub max_requests_per_second: f64,
    /// The part of the fleet this instance polls.
    pub shard: Shard,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub path: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alerts {
    pub resolve_after: Duration,
}

/// Which profiles of which clusters, in one region, with which credentials.
#[derive(Clone, Debug)]
pub struct Target {
    pub region: String,
    pub cluster: Pattern,
    pub profiles: Vec<Pattern>,
    /// Static labels added to every series and event of this target.
    pub labels: BTreeMap<String, String>,
    pub account_id: Option<String>,
    /// A named profile from the AWS config files.
    pub aws_profile: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub endpoint_url: Option<Url>,
    pub sts_endpoint_url: Option<Url>,
}

/// A cluster or profile name, or a glob over names.
#[derive(Clone, Debug)]
pub struct Pattern {
    text: String,
    matcher: Option<GlobMatcher>,
}

impl Pattern {
    /// Parses a name or a glob (`*`, `?`, `[...]`, `{a,b}`).
    ///
    /// ```
    /// use fargate_health_monitor::config::Pattern;
    ///
    /// let clusters = Pattern::parse("prod-{eu,us}-*").unwrap();
    /// assert!(clusters.is_glob());
    /// assert!(clusters.matches("prod-eu-1") && !clusters.matches("stage-eu-1"));
    /// assert!(!Pattern::parse("prod").unwrap().is_glob());
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.contains(['*', '?', '[', '{']) {
            return Ok(Self {
                text: text.to_owned(),
                matcher: None,
            });
        }
        let glob = GlobBuilder::new(text)
            .literal_separator(false)
            .build()
            .map_err(|err| err.kind().to_string())?;
        Ok(Self {
            text: text.to_owned(),
            matcher: Some(glob.compile_matcher()),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a glob (listing is needed) rather than one exact name.
    pub fn is_glob(&self) -> bool {
        self.matcher.is_some()
    }

    pub fn matches(&self, name: &str) -> bool {
        match &self.matcher {
            Some(matcher) => matcher.is_match(name),
            None => self.text == name,
        }
    }
}

/// Where events go.
#[derive(Clone, Debug)]
pub struct Sink {
    /// The `sink` label of the notification metrics.
    pub name: String,
    pub kind: SinkKind,
}

/// What a sink that is fed from the outbox receives, and how long it may try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub events: BTreeSet<EventKind>,
    /// For `status_changed`: only transitions into one of these.
    pub statuses: BTreeSet<Status>,
    pub timeout: Duration,
    pub max_age: Duration,
    pub max_queue: usize,
    /// The first retry's delay; each next one doubles, up to `retry_max`, with jitter.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

#[derive(Clone, Debug)]
pub enum SinkKind {
    Slack {
        url: SecretUrl,
        delivery: Delivery,
        group_wait: Duration,
    },
    Webhook {
        url: SecretUrl,
        /// Signing keys, newest first.
        secrets: Vec<Secret>,
        headers: Vec<(String, Secret)>,
        delivery: Delivery,
    },
    Alertmanager {
        urls: Vec<SecretUrl>,
        headers: Vec<(String, Secret)>,
        resend_interval: Duration,
        timeout: Duration,
        runbook_url: Option<Url>,
    },
    Log {
        events: BTreeSet<EventKind>,
        statuses: BTreeSet<Status>,
    },
}

impl SinkKind {
    /// The `type` as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Slack { .. } => "slack",
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Alertmanager { .. } => "alertmanager",
            SinkKind::Log { .. } => "log",
        }
    }
}

/// Defaults for keys that may be left out.
pub mod defaults {
    use std::time::Duration;

    pub const LISTEN: &str = "127.0.0.1:9877";
    pub const INTERVAL: Duration = Duration::from_secs(60);
    pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(600);
    pub const TIMEOUT: Duration = Duration::from_secs(10);
    pub const CONCURRENCY: usize = 16;
    pub const MAX_REQUESTS_PER_SECOND: f64 = 10.0;
    pub const STATE_PATH: &str = "/var/lib/fargate-health-monitor/state.json";
    pub const RESOLVE_AFTER: Duration = Duration::ZERO;
    pub const SINK_TIMEOUT: Duration = Duration::from_secs(10);
    pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
    pub const MAX_QUEUE: usize = 10_000;
    pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
    pub const RETRY_MAX: Duration = Duration::from_secs(300);
    pub const GROUP_WAIT: Duration = Duration::from_secs(30);
    pub const RESEND_INTERVAL: Duration = Duration::from_secs(60);
    pub const STATUSES: [&str; 2] = ["CREATE_FAILED", "DELETE_FAILED"];
}

/// Where the config reads environment variables and `_file` secrets from; tests pass a map.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> io::Result<String>;
}

/// The process environment and the real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// One problem (or warning) in a config file, at a 1-based line and column (0 for the whole
/// file).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    /// `file:line:column: message`, or `file: message` for a problem with the whole file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Everything wrong with a config file, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
    /// Warnings found on the way, so that one run shows everything.
    pub warnings: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "{count} problem{} in the configuration",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// A valid config and what deserves a warning in it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path, env: &dyn Environment) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        problems: vec![Problem {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the config file: {err}"),
        }],
        warnings: Vec::new(),
    })?;
    parse(&text, path, env)
}

/// Validates config text; `path` names it in messages and anchors relative `_file` paths.
pub fn parse(text: &str, path: &Path, env: &dyn Environment) -> Result<Loaded, ConfigError> {
    sections::parse(text, path, env)
}

#[cfg(test)]
mod tests;
