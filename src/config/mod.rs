//! The configuration: a TOML file read into a spanned document and walked by hand, so that every
//! problem is reported at once with its file, line and column (serde's `deny_unknown_fields`
//! would stop at the first). `${VAR}` is expanded in string values after parsing; keys that hold
//! secrets also accept `<key>_file`. Secrets never appear in messages.

pub mod budget;
mod duration;
pub mod files;
mod reader;
mod sections;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use url::Url;

use crate::model::{EventKind, Kind, Shard, Status};
use crate::secret::{Secret, SecretUrl};
pub use sections::OWN_LABELS;

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

/// Which resources of which clusters, in one region, with which credentials.
#[derive(Clone, Debug)]
pub struct Target {
    pub region: String,
    pub cluster: Pattern,
    /// The kinds it watches, in [`Kind::ALL`] order (default: all of them).
    pub kinds: Vec<Kind>,
    /// Fargate profile names (default `["*"]`).
    pub profiles: Vec<Pattern>,
    /// Node group names (default `["*"]`).
    pub nodegroups: Vec<Pattern>,
    /// Add-on names (default `["*"]`).
    pub addons: Vec<Pattern>,
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

impl Target {
    /// A target of every resource of `cluster` in `region`, as a config with only those two
    /// keys gives it: every kind, every name, no labels, the default credentials.
    pub fn new(region: impl Into<String>, cluster: Pattern) -> Self {
        let every = || Pattern::parse("*").map(|p| vec![p]).unwrap_or_default();
        Self {
            region: region.into(),
            cluster,
            kinds: Kind::ALL.to_vec(),
            profiles: every(),
            nodegroups: every(),
            addons: every(),
            labels: BTreeMap::new(),
            account_id: None,
            aws_profile: None,
            role_arn: None,
            external_id: None,
            endpoint_url: None,
            sts_endpoint_url: None,
        }
    }

    /// The name globs of `kind`: every capability, and the cluster itself, are selected.
    pub fn patterns(&self, kind: Kind) -> Option<&[Pattern]> {
        match kind.name() {
            "nodegroup" => Some(&self.nodegroups),
            "addon" => Some(&self.addons),
            "fargate_profile" => Some(&self.profiles),
            _ => None,
        }
    }

    /// Whether it watches `kind` and selects a resource of that kind called `name`.
    pub fn selects(&self, kind: Kind, name: &str) -> bool {
        self.kinds.contains(&kind)
            && self
                .patterns(kind)
                .is_none_or(|patterns| patterns.iter().any(|p| p.matches(name)))
    }

    /// The config key of `kind`'s name globs.
    pub fn patterns_key(kind: Kind) -> Option<&'static str> {
        match kind.name() {
            "nodegroup" => Some("nodegroups"),
            "addon" => Some("addons"),
            "fargate_profile" => Some("profiles"),
            _ => None,
        }
    }
}

/// A cluster or resource name, or a glob over names.
#[derive(Clone, Debug)]
pub struct Pattern {
    text: String,
    matcher: Option<GlobSet>,
}

/// A glob longer than this many characters is rejected before it is compiled.
pub const MAX_GLOB_CHARS: usize = 256;
/// Braces nested deeper than this (`{a,{b,{c,d}}}` is 3) are rejected.
pub const MAX_GLOB_NESTING: usize = 4;
/// More `{…}` alternatives than this in one glob are rejected.
pub const MAX_GLOB_ALTERNATIVES: usize = 64;

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
    ///
    /// A glob too long or too complex to be a name pattern is an error, found before globset
    /// sees it ([`MAX_GLOB_CHARS`], [`MAX_GLOB_NESTING`], [`MAX_GLOB_ALTERNATIVES`]); what
    /// globset still cannot compile is an error too, never a panic. The messages never quote
    /// the glob.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.contains(['*', '?', '[', '{']) {
            return Ok(Self {
                text: text.to_owned(),
                matcher: None,
            });
        }
        glob_complexity(text)?;
        let glob = GlobBuilder::new(text)
            .literal_separator(false)
            .build()
            .map_err(|err| err.kind().to_string())?;
        // A set of one: its build returns globset's regex errors, where `compile_matcher`
        // would panic on them.
        let matcher = GlobSetBuilder::new()
            .add(glob)
            .build()
            .map_err(|_| "too complex to compile".to_owned())?;
        Ok(Self {
            text: text.to_owned(),
            matcher: Some(matcher),
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

/// Rejects a glob longer or more deeply nested than a name pattern needs. Counts
/// conservatively: braces inside `[...]` count too.
fn glob_complexity(text: &str) -> Result<(), String> {
    if text.chars().count() > MAX_GLOB_CHARS {
        return Err(format!("longer than {MAX_GLOB_CHARS} characters"));
    }
    let (mut depth, mut alternatives) = (0usize, 0usize);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '{' => {
                depth += 1;
                alternatives += 1;
                if depth > MAX_GLOB_NESTING {
                    return Err(format!("braces nested more than {MAX_GLOB_NESTING} deep"));
                }
            }
            '}' => depth = depth.saturating_sub(1),
            ',' if depth > 0 => alternatives += 1,
            _ => {}
        }
        if alternatives > MAX_GLOB_ALTERNATIVES {
            return Err(format!(
                "more than {MAX_GLOB_ALTERNATIVES} alternatives in braces"
            ));
        }
    }
    Ok(())
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
}

/// The range every duration and number key accepts (inclusive), checked by `check`, at start
/// and on reload. Outside them a value is a problem at its line and column: the daemon never
/// gets a rate, interval or timeout it cannot schedule with.
pub mod ranges {
    use std::ops::RangeInclusive;
    use std::time::Duration;

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;

    /// `[poll] interval`.
    pub const INTERVAL: RangeInclusive<Duration> = secs(1)..=secs(DAY);
    /// `[poll] discovery_interval`.
    pub const DISCOVERY_INTERVAL: RangeInclusive<Duration> = secs(1)..=secs(7 * DAY);
    /// `[poll] timeout` (and shorter than `interval`).
    pub const POLL_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(100)..=secs(600);
    /// `[poll] concurrency`.
    pub const CONCURRENCY: RangeInclusive<i64> = 1..=1024;
    /// `[poll] max_requests_per_second`.
    pub const MAX_REQUESTS_PER_SECOND: RangeInclusive<f64> = 0.01..=10_000.0;
    /// `[alerts] resolve_after`.
    pub const RESOLVE_AFTER: RangeInclusive<Duration> = secs(0)..=secs(7 * DAY);
    /// A sink's `timeout`.
    pub const SINK_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(100)..=secs(600);
    /// A sink's `max_age`.
    pub const MAX_AGE: RangeInclusive<Duration> = secs(1)..=secs(30 * DAY);
    /// A sink's `max_queue`.
    pub const MAX_QUEUE: RangeInclusive<i64> = 1..=1_000_000;
    /// A sink's `retry_initial`.
    pub const RETRY_INITIAL: RangeInclusive<Duration> = Duration::from_millis(10)..=secs(HOUR);
    /// A sink's `retry_max` (and at least `retry_initial`).
    pub const RETRY_MAX: RangeInclusive<Duration> = Duration::from_millis(10)..=secs(DAY);
    /// Slack's `group_wait`.
    pub const GROUP_WAIT: RangeInclusive<Duration> = secs(0)..=secs(HOUR);
    /// Alertmanager's `resend_interval`.
    pub const RESEND_INTERVAL: RangeInclusive<Duration> = secs(1)..=secs(DAY);
    /// The bcrypt cost of a `[server.basic_auth]` hash: bcrypt allows up to 31, but each step
    /// doubles the time of a check (14 takes about a second).
    pub const BCRYPT_COST: RangeInclusive<u32> = 4..=14;
}

/// Where the config reads environment variables and `_file` secrets from; tests pass a map.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;

    /// Reads a whole file named by a `_file` key.
    fn read_file(&self, path: &Path) -> io::Result<String>;

    /// Reads a file named by the config (a `_file` secret, a TLS file) of at most `limit`
    /// bytes. The default reads with [`Environment::read_file`] and checks the length after;
    /// the process environment reads only regular files and checks before it opens one.
    fn read_file_limited(&self, path: &Path, limit: u64) -> io::Result<String> {
        let text = self.read_file(path)?;
        if u64::try_from(text.len()).unwrap_or(u64::MAX) > limit {
            return Err(files::too_large(limit));
        }
        Ok(text)
    }

    /// What is at `path` when it exists and is not a regular file (`"a directory"`,
    /// `"a FIFO"`, `"a symbolic link"`, …), for paths the daemon will write. The default sees nothing there.
    fn non_regular_file(&self, path: &Path) -> Option<&'static str> {
        let _ = path;
        None
    }
}

/// The process environment and the real file system: only regular files are read, up to
/// their cap ([`files`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        files::read_regular(path, files::SECRET_MAX_BYTES)
    }

    fn read_file_limited(&self, path: &Path, limit: u64) -> io::Result<String> {
        files::read_regular(path, limit)
    }

    fn non_regular_file(&self, path: &Path) -> Option<&'static str> {
        // The store does not follow a link at the state path, so neither does this.
        files::non_regular_no_follow(path)
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

/// Reads and validates the config file at `path`: a regular file of at most
/// [`files::CONFIG_MAX_BYTES`].
pub fn load(path: &Path, env: &dyn Environment) -> Result<Loaded, ConfigError> {
    let text = files::read_regular(path, files::CONFIG_MAX_BYTES).map_err(|err| ConfigError {
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
/// Pure but for `env`: it reads environment variables and the files that `_file` keys and
/// `[server.tls]` name through it, and asks it what is at `[state] path`. It never panics,
/// whatever the text.
pub fn parse(text: &str, path: &Path, env: &dyn Environment) -> Result<Loaded, ConfigError> {
    sections::parse(text, path, env)
}

/// [`parse`] for bytes that may not be UTF-8 (the fuzz target's entry point): text that is
/// not UTF-8 or longer than [`files::CONFIG_MAX_BYTES`] is one problem.
pub fn parse_bytes(
    bytes: &[u8],
    path: &Path,
    env: &dyn Environment,
) -> Result<Loaded, ConfigError> {
    let whole_file = |message: String| ConfigError {
        problems: vec![Problem {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message,
        }],
        warnings: Vec::new(),
    };
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > files::CONFIG_MAX_BYTES {
        return Err(whole_file(format!(
            "cannot read the config file: {}",
            files::too_large(files::CONFIG_MAX_BYTES)
        )));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text, path, env),
        Err(err) => {
            let valid = String::from_utf8_lossy(&bytes[..err.valid_up_to()]);
            let (line, column) = reader::line_column(&valid, valid.len());
            Err(ConfigError {
                problems: vec![Problem {
                    file: path.to_path_buf(),
                    line,
                    column,
                    message: "the config is not UTF-8 text".into(),
                }],
                warnings: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests;
