//! The project's own vocabulary: resource kinds and identity, incarnations, statuses, issue
//! codes, what a poll yields, error kinds and event kinds.
//!
//! SDK types stop at the AWS adapter; everything past it speaks these types. Values the API may
//! grow (statuses, issue codes) are strings kept verbatim, and each [`Kind`] says which of them
//! this build knows, so a new code from AWS is reported with its own label value and never
//! dropped (DESIGN.md invariant 6).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

mod kinds;

/// A point in time as whole milliseconds since the Unix epoch.
///
/// The diff never reads a clock: every input carries its own time in this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest time the monitor represents: the Unix epoch.
    pub const MIN: Timestamp = Timestamp(0);
    /// The latest time the monitor represents, `9999-12-31T23:59:59.999Z`: RFC 3339 has four
    /// digits for the year.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// A timestamp from milliseconds since the Unix epoch, clamped into [`Self::MIN`] ..=
    /// [`Self::MAX`]: what the API sends (a `createdAt` in the year 31688, or before 1970) is
    /// kept as the nearest time the monitor can represent.
    pub const fn clamped(millis: i64) -> Self {
        if millis < Self::MIN.0 {
            Self::MIN
        } else if millis > Self::MAX.0 {
            Self::MAX
        } else {
            Self(millis)
        }
    }

    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// A timestamp from whole seconds since the Unix epoch.
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// Converts a wall-clock time; times before the epoch clamp to it.
    pub fn from_system_time(time: SystemTime) -> Self {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Seconds since the Unix epoch, as Prometheus exports timestamps.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// The time elapsed from `earlier` to `self`; zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        let millis = self.0.saturating_sub(earlier.0).max(0);
        Duration::from_millis(u64::try_from(millis).unwrap_or(0))
    }

    /// The wall-clock time this timestamp stands for.
    /// Clamped into [`Self::MIN`] ..= [`Self::MAX`], so it never overflows.
    pub fn to_system_time(self) -> SystemTime {
        let millis = u64::try_from(Self::clamped(self.0).0).unwrap_or(0);
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    /// RFC 3339 in UTC with second precision (`2026-11-23T10:04:00Z`). A time outside
    /// [`Self::MIN`] ..= [`Self::MAX`] (only the state file or a clock could hold one) is
    /// formatted as the nearest bound, never a panic.
    pub fn to_rfc3339(self) -> String {
        humantime::format_rfc3339_seconds(self.to_system_time()).to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The longest status or issue code kept from the API, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest ARN or resource id kept from the API, in bytes.
pub const MAX_ID_BYTES: usize = 2048;
/// The longest issue message kept from the API, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The most `health.issues` entries kept from one answer.
pub const MAX_ISSUES: usize = 1000;
/// The most resource ids kept from one `health.issues` entry.
pub const MAX_RESOURCE_IDS: usize = 10_000;

/// `text` cut to at most `max_bytes` bytes at a character boundary; a cut text ends with `…`
/// (within the limit). Text from the API passes through this before it enters the model.
pub fn bounded(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    const MARK: &str = "…";
    let mut end = max_bytes.saturating_sub(MARK.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + MARK.len());
    out.push_str(&text[..end]);
    if max_bytes >= MARK.len() {
        out.push_str(MARK);
    }
    out
}

/// The most errors of one source chain that are looked at: chains are short, but a source
/// that points back at itself must not hang the walk.
pub const MAX_CHAIN: usize = 32;

/// An error and its sources, at most [`MAX_CHAIN`] of them.
pub fn error_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(
        Some(error),
        |err: &&'a (dyn std::error::Error + 'static)| (*err).source(),
    )
    .take(MAX_CHAIN)
}

/// `text` for a terminal or a log line: control characters (newlines, escapes, `DEL`, the C1
/// range) escaped as `\n`, `\u{1b}` …, at most `max_chars` characters of the text kept, a cut
/// marked with `…`. Never splits a character.
pub fn for_display(text: &str, max_chars: usize) -> Cow<'_, str> {
    let plain = text.chars().count() <= max_chars && !text.chars().any(char::is_control);
    if plain {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// What a kind of EKS resource that carries `health.issues[]` is called and what its values are
/// (DESIGN.md "Resource kinds"). The core works on any kind; an adapter and a family of series
/// make a kind watched.
#[derive(Debug)]
pub struct KindSpec {
    /// The wire name: the `kind` of payloads, the API, the state file and the `kind` label.
    pub name: &'static str,
    /// For people: "Fargate profile".
    pub title: &'static str,
    /// The `<Kind>` of Alertmanager's alert names: `EKS<Kind>HealthIssue`, `EKS<Kind>Failed`.
    pub alert_name: &'static str,
    /// The prefix of the kind's metric families, e.g. `eks_fargate_profile`.
    pub metric_prefix: &'static str,
    /// The label that carries the resource's name; `None` when the name is the cluster's.
    pub name_label: Option<&'static str>,
    /// The call that lists the kind's resources of a cluster (for clusters: of a region).
    pub list: Operation,
    /// The call that describes one.
    pub describe: Operation,
    /// The statuses this build knows, in the order of the SDK's documentation.
    pub statuses: &'static [&'static str],
    /// The statuses an operator must act on (alerted by default).
    pub alert_worthy: &'static [&'static str],
    /// The issue codes this build knows, as the SDK's enum has them.
    pub codes: &'static [&'static str],
    /// One resource in a sentence, lowercase: "profile".
    pub noun: &'static str,
    /// Several of them: "profiles".
    pub plural: &'static str,
    /// The part after `#/clusters/{cluster}/` of the AWS console page that lists the kind
    /// (`fargate-profiles`; the page of one is `…/{path}/{name}`); `None` for a kind whose
    /// resource is the cluster, whose page is the cluster's own.
    pub console_path: Option<&'static str>,
    /// A one-line hint per known code, for people: what to check first.
    pub hints: &'static [(&'static str, &'static str)],
    /// The hint for a code without one in [`Self::hints`] (one this build does not know).
    pub fallback_hint: &'static str,
}

/// A kind of resource. Compared, ordered and hashed by its wire name.
#[derive(Clone, Copy)]
pub struct Kind(&'static KindSpec);

impl Kind {
    /// An EKS Fargate profile.
    pub const FARGATE_PROFILE: Kind = Kind(&kinds::FARGATE_PROFILE);
    /// A managed node group.
    pub const NODEGROUP: Kind = Kind(&kinds::NODEGROUP);
    /// An add-on.
    pub const ADDON: Kind = Kind(&kinds::ADDON);
    /// A cluster (its name is the cluster's).
    pub const CLUSTER: Kind = Kind(&kinds::CLUSTER);
    /// A capability.
    pub const CAPABILITY: Kind = Kind(&kinds::CAPABILITY);

    /// Every kind this build watches.
    pub const ALL: &'static [Kind] = &[
        Kind::FARGATE_PROFILE,
        Kind::NODEGROUP,
        Kind::ADDON,
        Kind::CLUSTER,
        Kind::CAPABILITY,
    ];

    /// A kind described by `spec` (the built-in kinds are constants; tests define their own).
    pub const fn new(spec: &'static KindSpec) -> Self {
        Self(spec)
    }

    /// The built-in kind with this wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.name() == name)
    }

    pub const fn spec(self) -> &'static KindSpec {
        self.0
    }

    pub const fn name(self) -> &'static str {
        self.0.name
    }

    /// Whether this build knows `status` for this kind.
    pub fn knows_status(self, status: &Status) -> bool {
        self.0.statuses.contains(&status.as_str())
    }

    /// Whether this build knows `code` for this kind.
    pub fn knows_code(self, code: &IssueCode) -> bool {
        self.0.codes.contains(&code.as_str())
    }

    /// The one-line hint for `code`: the kind's own, or its fallback for a code without one.
    pub fn hint(self, code: &str) -> &'static str {
        self.0
            .hints
            .iter()
            .find_map(|(known, hint)| (*known == code).then_some(*hint))
            .unwrap_or(self.0.fallback_hint)
    }

    /// Whether `status` is one an operator must act on.
    pub fn is_alert_worthy(self, status: &Status) -> bool {
        self.0.alert_worthy.contains(&status.as_str())
    }

    /// The known statuses, as values.
    pub fn known_statuses(self) -> impl Iterator<Item = Status> {
        self.0.statuses.iter().map(|s| Status::from_wire(s))
    }

    /// The known codes, as values.
    pub fn known_codes(self) -> impl Iterator<Item = IssueCode> {
        self.0.codes.iter().map(|c| IssueCode::from_wire(c))
    }

    /// Every alert-worthy status of every built-in kind, without repeats: a sink's default.
    pub fn alert_worthy_of_all() -> Vec<Status> {
        let mut all: Vec<Status> = Vec::new();
        for kind in Self::ALL {
            for status in kind.0.alert_worthy {
                if !all.iter().any(|s| s.as_str() == *status) {
                    all.push(Status::from_wire(status));
                }
            }
        }
        all
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Kind {}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl std::hash::Hash for Kind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Cow::<str>::deserialize(deserializer)?;
        Kind::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown resource kind {name:?}")))
    }
}

/// The identity of a monitored resource (DESIGN.md "Identity", "Resource kinds"). For a
/// cluster, `name` is the cluster's name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceKey {
    pub kind: Kind,
    pub account_id: String,
    pub region: String,
    pub cluster: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(
        kind: Kind,
        account_id: impl Into<String>,
        region: impl Into<String>,
        cluster: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            account_id: account_id.into(),
            region: region.into(),
            cluster: cluster.into(),
            name: name.into(),
        }
    }

    /// A Fargate profile's key.
    pub fn fargate_profile(
        account_id: impl Into<String>,
        region: impl Into<String>,
        cluster: impl Into<String>,
        profile: impl Into<String>,
    ) -> Self {
        Self::new(Kind::FARGATE_PROFILE, account_id, region, cluster, profile)
    }
}

impl fmt::Display for ResourceKey {
    /// `111122223333/us-east-1/prod/default` for a Fargate profile, the form used in log lines
    /// and messages; other kinds put their kind first: `nodegroup 111122223333/us-east-1/prod/ng`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind != Kind::FARGATE_PROFILE {
            write!(f, "{} ", self.kind)?;
        }
        write!(
            f,
            "{}/{}/{}/{}",
            self.account_id, self.region, self.cluster, self.name
        )
    }
}

/// One life of a resource: a resource deleted and re-created with the same name (as Fargate
/// profiles, which are immutable, are replaced) has a new ARN or `createdAt`, so it is a new
/// incarnation (DESIGN.md invariant 3).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Incarnation {
    pub arn: String,
    pub created_at: Timestamp,
}

macro_rules! open_value {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        ///
        /// Any string the API sends is kept verbatim; which values are known depends on the
        /// resource's [`Kind`].
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The value as the API sent it.
            pub fn from_wire(value: &str) -> Self {
                Self(value.to_owned())
            }

            /// The wire value, also used verbatim as the Prometheus label value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

open_value! {
    /// A resource's `status`.
    Status
}

open_value! {
    /// The `code` of an entry in a resource's `health.issues`.
    IssueCode
}

/// One entry of `health.issues` as the API returned it, before merging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawIssue {
    pub code: IssueCode,
    pub message: String,
    pub resource_ids: Vec<String>,
}

/// An issue of a resource: all entries with one code, merged so that the API's order and
/// repetition change nothing (DESIGN.md "Identity").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub code: IssueCode,
    /// The distinct messages, sorted, joined with `"; "`.
    pub message: String,
    /// The sorted, de-duplicated union of the entries' resource ids.
    pub resource_ids: Vec<String>,
}

/// The issues of one observation, keyed and ordered by code.
pub type IssueSet = BTreeMap<IssueCode, Issue>;

/// The static labels of a target, attached to every series and event of its resources.
pub type Labels = BTreeMap<String, String>;

/// Merges raw entries into one [`Issue`] per code.
///
/// ```
/// use fargate_health_monitor::model::{merge_issues, IssueCode, RawIssue};
///
/// let raw = |message: &str, ids: &[&str]| RawIssue {
///     code: IssueCode::from_wire("AccessDenied"),
///     message: message.to_owned(),
///     resource_ids: ids.iter().map(|id| id.to_string()).collect(),
/// };
/// let issues = merge_issues(&[raw("role b", &["r2"]), raw("role a", &["r2", "r1"])]);
/// let issue = &issues[&IssueCode::from_wire("AccessDenied")];
/// assert_eq!(issue.message, "role a; role b");
/// assert_eq!(issue.resource_ids, ["r1", "r2"]);
/// ```
pub fn merge_issues<'a>(raw: impl IntoIterator<Item = &'a RawIssue>) -> IssueSet {
    let mut parts: BTreeMap<&IssueCode, (BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for issue in raw {
        let (messages, resources) = parts.entry(&issue.code).or_default();
        if !issue.message.is_empty() {
            messages.insert(&issue.message);
        }
        resources.extend(issue.resource_ids.iter().map(String::as_str));
    }
    parts
        .into_iter()
        .map(|(code, (messages, resources))| {
            let issue = Issue {
                code: code.clone(),
                message: messages.into_iter().collect::<Vec<_>>().join("; "),
                resource_ids: resources.into_iter().map(str::to_owned).collect(),
            };
            (code.clone(), issue)
        })
        .collect()
}

/// A successful describe of one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub key: ResourceKey,
    pub incarnation: Incarnation,
    pub status: Status,
    /// Extra labels for the resource's info series, named by the adapter (for a Fargate
    /// profile: `pod_execution_role_arn`), so the diff needs no resource-specific fields.
    pub info: BTreeMap<String, String>,
    /// The kind's own numbers, for its gauges (a node group's `desired_size`, `min_size`,
    /// `max_size`).
    pub values: BTreeMap<String, i64>,
    pub issues: Vec<RawIssue>,
    pub observed_at: Timestamp,
}

/// A describe that did not give an answer about the resource (DESIGN.md invariant 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollFailure {
    pub key: ResourceKey,
    pub kind: ErrorKind,
    pub observed_at: Timestamp,
}

/// A resource whose describe is overdue: due and not answered for a whole interval more (held
/// back by its lane's backoff or rate, or failing). It is not a poll: like a failure it changes
/// nothing but `up` (DESIGN.md invariant 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overdue {
    pub key: ResourceKey,
    pub observed_at: Timestamp,
}

/// A resource the API says no longer exists: not found on describe and confirmed by a list
/// (DESIGN.md invariant 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gone {
    pub key: ResourceKey,
    pub observed_at: Timestamp,
}

/// A resource that the configuration no longer selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmonitored {
    pub key: ResourceKey,
    pub observed_at: Timestamp,
}

/// Everything that can change what is known about a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Observed(Observation),
    Failed(PollFailure),
    Overdue(Overdue),
    Gone(Gone),
    Unmonitored(Unmonitored),
}

impl Input {
    /// The resource the input is about.
    pub fn key(&self) -> &ResourceKey {
        match self {
            Input::Observed(o) => &o.key,
            Input::Failed(f) => &f.key,
            Input::Overdue(o) => &o.key,
            Input::Gone(g) => &g.key,
            Input::Unmonitored(u) => &u.key,
        }
    }

    /// When the input was observed.
    pub fn observed_at(&self) -> Timestamp {
        match self {
            Input::Observed(o) => o.observed_at,
            Input::Failed(f) => f.observed_at,
            Input::Overdue(o) => o.observed_at,
            Input::Gone(g) => g.observed_at,
            Input::Unmonitored(u) => u.observed_at,
        }
    }
}

/// The AWS operations the monitor calls; the value of the `operation` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    ListClusters,
    ListFargateProfiles,
    DescribeFargateProfile,
    GetCallerIdentity,
    AssumeRole,
    DescribeCluster,
    ListNodegroups,
    DescribeNodegroup,
    ListAddons,
    DescribeAddon,
    ListCapabilities,
    DescribeCapability,
}

impl Operation {
    pub const ALL: [Operation; 12] = [
        Operation::ListClusters,
        Operation::ListFargateProfiles,
        Operation::DescribeFargateProfile,
        Operation::GetCallerIdentity,
        Operation::AssumeRole,
        Operation::DescribeCluster,
        Operation::ListNodegroups,
        Operation::DescribeNodegroup,
        Operation::ListAddons,
        Operation::DescribeAddon,
        Operation::ListCapabilities,
        Operation::DescribeCapability,
    ];

    /// The name AWS gives the operation.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::ListClusters => "ListClusters",
            Operation::ListFargateProfiles => "ListFargateProfiles",
            Operation::DescribeFargateProfile => "DescribeFargateProfile",
            Operation::GetCallerIdentity => "GetCallerIdentity",
            Operation::AssumeRole => "AssumeRole",
            Operation::DescribeCluster => "DescribeCluster",
            Operation::ListNodegroups => "ListNodegroups",
            Operation::DescribeNodegroup => "DescribeNodegroup",
            Operation::ListAddons => "ListAddons",
            Operation::DescribeAddon => "DescribeAddon",
            Operation::ListCapabilities => "ListCapabilities",
            Operation::DescribeCapability => "DescribeCapability",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an AWS call failed; the value of the `outcome` label (DESIGN.md "Errors").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Throttled,
    NotFound,
    AccessDenied,
    Timeout,
    Server,
    Malformed,
    Network,
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Throttled,
        ErrorKind::NotFound,
        ErrorKind::AccessDenied,
        ErrorKind::Timeout,
        ErrorKind::Server,
        ErrorKind::Malformed,
        ErrorKind::Network,
        ErrorKind::Other,
    ];

    /// The bounded label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Server => "server",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Network => "network",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of event the diff emits (DESIGN.md "Events").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    IssueOpened,
    IssueUpdated,
    IssueResolved,
    StatusChanged,
    ResourceDeleted,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::IssueOpened,
        EventKind::IssueUpdated,
        EventKind::IssueResolved,
        EventKind::StatusChanged,
        EventKind::ResourceDeleted,
    ];

    /// The wire name, used in payloads, config and the `kind` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::IssueOpened => "issue_opened",
            EventKind::IssueUpdated => "issue_updated",
            EventKind::IssueResolved => "issue_resolved",
            EventKind::StatusChanged => "status_changed",
            EventKind::ResourceDeleted => "resource_deleted",
        }
    }

    /// Parses a wire name.
    /// Parses a wire name; `profile_deleted`, its name before version 2, still means
    /// [`EventKind::ResourceDeleted`].
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "profile_deleted" {
            return Some(EventKind::ResourceDeleted);
        }
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an episode ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveReason {
    /// The code was absent long enough from successful polls.
    Cleared,
    /// The resource, or this incarnation of it, no longer exists.
    ResourceDeleted,
    /// The configuration no longer selects the resource.
    Unmonitored,
}

impl ResolveReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            ResolveReason::Cleared => "cleared",
            ResolveReason::ResourceDeleted => "resource_deleted",
            ResolveReason::Unmonitored => "unmonitored",
        }
    }
}

impl fmt::Display for ResolveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A second kind, for the tests only: the core must hold for a kind it has never heard of.
#[cfg(test)]
pub mod fake {
    use super::{Kind, KindSpec, Operation};

    static WIDGET_SPEC: KindSpec = KindSpec {
        name: "widget",
        title: "Widget",
        alert_name: "Widget",
        metric_prefix: "eks_widget",
        name_label: Some("eks_widget"),
        list: Operation::ListAddons,
        describe: Operation::DescribeAddon,
        statuses: &["BUILDING", "OK", "WOBBLING", "BROKEN"],
        alert_worthy: &["WOBBLING", "BROKEN"],
        codes: &["Wobbly", "Squeaky"],
        noun: "widget",
        plural: "widgets",
        console_path: Some("widgets"),
        hints: &[("Wobbly", "Tighten the widget's bolts.")],
        fallback_hint: "A widget code this version does not know.",
    };

    /// The fake kind: statuses BUILDING, OK, WOBBLING (degraded), BROKEN (failed).
    pub const WIDGET: Kind = Kind::new(&WIDGET_SPEC);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shard_hash_is_fnv_1a_64_and_fixed() {
        // FNV-1a 64 reference values: "" and "a" (no separators), then our layout.
        let raw = |bytes: &[u8]| {
            bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        };
        assert_eq!(raw(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(raw(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            super::fnv1a64(&["111122223333", "us-east-1", "prod"]),
            raw(b"111122223333\0us-east-1\0prod\0")
        );
        // Pinned, so a change of the function (which would move clusters) fails here.
        let shard = super::Shard { index: 0, count: 7 };
        assert_eq!(
            shard.of("111122223333", "us-east-1", "prod"),
            (raw(b"111122223333\0us-east-1\0prod\0") % 7) as u32
        );
    }

    #[test]
    fn shards_parse_and_partition_the_fleet_with_no_overlap_and_no_gap() {
        use super::Shard;
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "0/0", "1", "a/b", "-1/2", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let count = 4;
        let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
        let mut sizes = vec![0usize; count as usize];
        for account in ["111122223333", "222233330001"] {
            for region in ["us-east-1", "eu-west-1"] {
                for cluster in 0..500 {
                    let cluster = format!("cluster-{cluster:04}");
                    let owners: Vec<u32> = shards
                        .iter()
                        .filter(|s| s.owns(account, region, &cluster))
                        .map(|s| s.index)
                        .collect();
                    assert_eq!(owners.len(), 1, "{account}/{region}/{cluster}: {owners:?}");
                    sizes[owners[0] as usize] += 1;
                }
            }
        }
        // 2,000 clusters in 4 shards: each holds about a quarter.
        assert!(sizes.iter().all(|n| (400..=600).contains(n)), "{sizes:?}");
        assert!(Shard::ALL.owns("any", "where", "thing"));
    }

    use super::*;

    fn raw(code: &str, message: &str, ids: &[&str]) -> RawIssue {
        RawIssue {
            code: IssueCode::from_wire(code),
            message: message.to_owned(),
            resource_ids: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn unknown_values_are_kept_verbatim_and_each_kind_says_what_it_knows() {
        let kind = Kind::FARGATE_PROFILE;
        let code = IssueCode::from_wire("SubnetExhausted");
        assert_eq!(code.as_str(), "SubnetExhausted");
        assert!(!kind.knows_code(&code));
        assert!(kind.knows_code(&IssueCode::from_wire("AccessDenied")));
        assert_eq!(Status::from_wire("PAUSED").as_str(), "PAUSED");
        assert!(!kind.knows_status(&Status::from_wire("PAUSED")));
        assert!(kind.is_alert_worthy(&Status::from_wire("DELETE_FAILED")));
        assert!(!kind.is_alert_worthy(&Status::from_wire("DELETING")));
        assert_eq!(kind.known_codes().count(), 4);
        assert_eq!(kind.known_statuses().count(), 5);
    }

    #[test]
    fn values_and_keys_round_trip_through_json() {
        for status in Kind::FARGATE_PROFILE
            .known_statuses()
            .chain([Status::from_wire("X")])
        {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
        }
        let key = ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", "default");
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"fargate_profile","account_id":"111122223333","region":"us-east-1","cluster":"prod","name":"default"}"#
        );
        assert_eq!(serde_json::from_str::<ResourceKey>(&json).unwrap(), key);
        let unknown = json.replace("fargate_profile", "spaceship");
        let error = serde_json::from_str::<ResourceKey>(&unknown).unwrap_err();
        assert!(
            error.to_string().contains("unknown resource kind"),
            "{error}"
        );
        assert_eq!(key.to_string(), "111122223333/us-east-1/prod/default");
    }

    #[test]
    fn every_known_code_has_a_hint_and_every_hint_a_known_code() {
        let built_in = [
            Kind::FARGATE_PROFILE,
            Kind::NODEGROUP,
            Kind::ADDON,
            Kind::CLUSTER,
            Kind::CAPABILITY,
        ];
        let counts: Vec<usize> = built_in.iter().map(|k| k.spec().codes.len()).collect();
        assert_eq!(counts, [4, 36, 10, 19, 2], "the SDK enums' codes");
        for kind in built_in {
            let spec = kind.spec();
            let hinted: Vec<&str> = spec.hints.iter().map(|(code, _)| *code).collect();
            assert_eq!(hinted, spec.codes, "{kind}: one hint per code, in order");
            assert!(spec.alert_worthy.iter().all(|s| spec.statuses.contains(s)));
            assert!(
                spec.hints.iter().all(|(_, hint)| hint.len() <= 160),
                "{kind}"
            );
        }
        let kind = Kind::FARGATE_PROFILE;
        assert!(kind.hint("AccessDenied").contains("eks-fargate-pods"));
        assert_eq!(kind.hint("FromTheFuture"), kind.spec().fallback_hint);
        assert_eq!(
            fake::WIDGET.hint("Squeaky"),
            fake::WIDGET.spec().fallback_hint
        );
    }

    #[test]
    fn kinds_compare_by_name_and_defaults_cover_every_kind() {
        let other = fake::WIDGET;
        assert_ne!(other, Kind::FARGATE_PROFILE);
        assert_eq!(Kind::new(fake::WIDGET.spec()), other);
        assert!(other > Kind::FARGATE_PROFILE);
        assert_eq!(Kind::from_name("widget"), None);
        assert_eq!(
            Kind::from_name("fargate_profile"),
            Some(Kind::FARGATE_PROFILE)
        );
        let key = ResourceKey::new(other, "1", "r", "c", "w");
        assert_eq!(key.to_string(), "widget 1/r/c/w");
        let defaults: Vec<String> = Kind::alert_worthy_of_all()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            defaults,
            [
                "CREATE_FAILED",
                "DELETE_FAILED",
                "DEGRADED",
                "UPDATE_FAILED",
                "FAILED"
            ]
        );
        for name in ["nodegroup", "addon", "cluster", "capability"] {
            assert_eq!(Kind::from_name(name).map(Kind::name), Some(name));
        }
    }

    #[test]
    fn merging_unions_resources_and_joins_distinct_messages() {
        let merged = merge_issues(&[
            raw("AccessDenied", "role b denied", &["r2", "r1"]),
            raw("ClusterUnreachable", "", &[]),
            raw("AccessDenied", "role a denied", &["r1", "r3"]),
            raw("AccessDenied", "role b denied", &[]),
        ]);
        assert_eq!(merged.len(), 2);
        let denied = &merged[&IssueCode::from_wire("AccessDenied")];
        assert_eq!(denied.message, "role a denied; role b denied");
        assert_eq!(denied.resource_ids, ["r1", "r2", "r3"]);
        let unreachable = &merged[&IssueCode::from_wire("ClusterUnreachable")];
        assert_eq!(unreachable.message, "");
        assert!(unreachable.resource_ids.is_empty());
    }

    #[test]
    fn merging_ignores_order() {
        let a = [
            raw("A", "x", &["1", "2"]),
            raw("A", "y", &["3"]),
            raw("B", "z", &[]),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(merge_issues(&a), merge_issues(&b));
    }

    #[test]
    fn timestamps_format_as_rfc3339_and_measure_spans() {
        let t = Timestamp::from_secs(1_795_428_240);
        assert_eq!(t.to_rfc3339(), "2026-11-23T10:04:00Z");
        assert_eq!(
            Timestamp::from_secs(100).since(Timestamp::from_secs(40)),
            Duration::from_secs(60)
        );
        assert_eq!(
            Timestamp::from_secs(40).since(Timestamp::from_secs(100)),
            Duration::ZERO
        );
    }

    #[test]
    fn times_out_of_range_clamp_and_format() {
        // 1e12 seconds is in the year 31688; humantime cannot format past 9999.
        let huge = Timestamp::clamped(1_000_000_000_000_000);
        assert_eq!(huge, Timestamp::MAX);
        assert_eq!(huge.to_rfc3339(), "9999-12-31T23:59:59Z");
        assert_eq!(Timestamp::clamped(-5_000), Timestamp::MIN);
        assert_eq!(
            Timestamp::from_millis(i64::MAX).to_rfc3339(),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            Timestamp::from_millis(i64::MIN).to_rfc3339(),
            "1970-01-01T00:00:00Z"
        );
        let t = Timestamp::from_secs(1_795_428_240);
        assert_eq!(Timestamp::clamped(t.as_millis()), t);
    }

    #[test]
    fn text_is_bounded_and_displayed_on_character_boundaries() {
        assert_eq!(bounded("ACTIVE", 256), "ACTIVE");
        let cut = bounded(&"é".repeat(100), 11);
        assert!(cut.len() <= 11 && cut.ends_with('…'), "{cut}");
        assert_eq!(cut, "éééé…");
        assert_eq!(bounded("abcdef", 2), "");
        assert_eq!(for_display("plain", 10), "plain");
        assert_eq!(for_display("a\nb\u{1b}[31m", 20), "a\\nb\\u{1b}[31m");
        assert_eq!(for_display("日本語テキスト", 3), "日本語…");
        assert_eq!(for_display("<script>", 20), "<script>");
    }

    #[test]
    fn labels_are_static_names() {
        assert_eq!(ErrorKind::AccessDenied.as_str(), "access_denied");
        assert_eq!(
            EventKind::from_name("issue_resolved"),
            Some(EventKind::IssueResolved)
        );
        assert_eq!(EventKind::from_name("issue_closed"), None);
        assert_eq!(ResolveReason::ResourceDeleted.as_str(), "resource_deleted");
        assert_eq!(
            EventKind::from_name("profile_deleted"),
            Some(EventKind::ResourceDeleted)
        );
    }
}

/// One of N instances that split a fleet between them: an instance polls only the clusters
/// whose [`Shard::of`] is its index, so N instances cover every cluster exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// From 0 (a StatefulSet's ordinal) to `count - 1`.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole fleet.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with `0 <= I < N`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a shard: write I/N with 0 <= I < N, such as 0/3");
        let (index, count) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard a cluster belongs to: FNV-1a 64 of `account_id`, `region` and `cluster`, each
    /// followed by a 0 byte, modulo the count. Fixed: changing it would move clusters between
    /// running instances.
    pub fn of(&self, account_id: &str, region: &str, cluster: &str) -> u32 {
        (fnv1a64(&[account_id, region, cluster]) % u64::from(self.count)) as u32
    }

    /// Whether this instance polls the cluster.
    pub fn owns(&self, account_id: &str, region: &str, cluster: &str) -> bool {
        self.count <= 1 || self.of(account_id, region, cluster) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a, 64 bits, over the parts each followed by a 0 byte.
pub fn fnv1a64(parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}
