//! The JSON API, `/api/v1/profiles`: the monitored profiles a query selects (all by default),
//! with summary counts and a staleness flag, compact unless `?pretty`. Encoded from a snapshot
//! a chunk at a time (at 10,000 profiles the document is megabytes); no I/O here.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;

use crate::metrics;
use crate::model::{ErrorKind, Kind, Timestamp};
use crate::state::{Entry, Snapshot};
use crate::status::{Health, Summary};

/// The two views of the API: `/api/v1/profiles`, the Fargate profiles (each with `profile`),
/// and `/api/v1/resources`, every kind (each with `kind` and `name`, `?kind=` to filter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum View {
    #[default]
    Profiles,
    Resources,
}

impl View {
    /// The key of the document's list.
    fn list(self) -> &'static str {
        match self {
            View::Profiles => "profiles",
            View::Resources => "resources",
        }
    }
}

/// The parameters of `/api/v1/resources`, in the order error messages list them.
pub const RESOURCE_PARAMETERS: [&str; 11] = [
    "unhealthy",
    "stale",
    "up",
    "kind",
    "account_id",
    "region",
    "cluster",
    "name",
    "status",
    "code",
    "pretty",
];

/// The parameters of `/api/v1/profiles`, in the order error messages list them.
pub const PARAMETERS: [&str; 10] = [
    "unhealthy",
    "stale",
    "up",
    "account_id",
    "region",
    "cluster",
    "profile",
    "status",
    "code",
    "pretty",
];

/// The longest query value accepted, in bytes (names are at most 256 bytes).
const MAX_VALUE_BYTES: usize = 512;

/// What `?unhealthy=true&cluster=prod&pretty` and the like select. Every filter must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// With an open issue or a failed status (`true`), or neither (`false`).
    pub unhealthy: Option<bool>,
    pub stale: Option<bool>,
    /// The last describe succeeded.
    pub up: Option<bool>,
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub cluster: Option<String>,
    /// The resource's name (`profile` in the profiles view, `name` in the resources view).
    pub profile: Option<String>,
    /// The resource's kind; the profiles view holds only Fargate profiles.
    pub kind: Option<Kind>,
    pub view: View,
    /// The status from the last successful describe, exactly as EKS spells it.
    pub status: Option<String>,
    /// An open issue with this code.
    pub code: Option<String>,
    /// Indented output for people; compact otherwise.
    pub pretty: bool,
}

impl Query {
    /// Parses a URL query (`None`: no `?`). An unknown or repeated parameter, a flag that is
    /// not `true` or `false`, or an overlong value is an error a person can act on.
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut parsed = Self::parse_in(query, &PARAMETERS)?;
        parsed.kind = Some(Kind::FARGATE_PROFILE);
        Ok(parsed)
    }

    /// Parses the query of `/api/v1/resources`: `name` instead of `profile`, and `kind`.
    pub fn parse_resources(query: Option<&str>) -> Result<Self, String> {
        let mut parsed = Self::parse_in(query, &RESOURCE_PARAMETERS)?;
        parsed.view = View::Resources;
        Ok(parsed)
    }

    fn parse_in(query: Option<&str>, parameters: &[&'static str]) -> Result<Self, String> {
        let mut parsed = Self::default();
        let mut seen = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let Some(&known) = parameters.iter().find(|p| **p == name) else {
                return Err(format!(
                    "unknown parameter \"{}\"; known: {}",
                    crate::model::for_display(&name, 64),
                    parameters.join(", ")
                ));
            };
            if seen.contains(&known) {
                return Err(format!("{known} is given more than once"));
            }
            seen.push(known);
            if value.len() > MAX_VALUE_BYTES {
                return Err(format!("{known} is longer than {MAX_VALUE_BYTES} bytes"));
            }
            if value.contains('\u{fffd}') {
                return Err(format!("{known} is not valid UTF-8 once decoded"));
            }
            let flag = || match value.as_ref() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(format!("{known} must be true or false")),
            };
            let text = || {
                if value.is_empty() {
                    Err(format!("{known} needs a value, as in {known}=prod"))
                } else {
                    Ok(Some(value.clone().into_owned()))
                }
            };
            match known {
                "unhealthy" => parsed.unhealthy = Some(flag()?),
                "stale" => parsed.stale = Some(flag()?),
                "up" => parsed.up = Some(flag()?),
                "account_id" => parsed.account_id = text()?,
                "region" => parsed.region = text()?,
                "cluster" => parsed.cluster = text()?,
                "profile" | "name" => parsed.profile = text()?,
                "kind" => {
                    let kind = Kind::from_name(&value).ok_or_else(|| {
                        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                        format!(
                            "kind \"{}\" is not one this build knows: {}",
                            crate::model::for_display(&value, 64),
                            kinds.join(", ")
                        )
                    })?;
                    parsed.kind = Some(kind);
                }
                "status" => parsed.status = text()?,
                "code" => parsed.code = text()?,
                // `?pretty` alone, or `?pretty=true`.
                _ => parsed.pretty = value.is_empty() || flag()?,
            }
        }
        Ok(parsed)
    }

    /// Whether `entry`, whose health is `health`, is selected.
    pub fn selects(&self, entry: &Entry, health: &Health) -> bool {
        let state = &entry.state;
        let key = &state.key;
        let known = state.known.as_ref();
        let same =
            |wanted: &Option<String>, actual: &str| wanted.as_deref().is_none_or(|w| w == actual);
        self.unhealthy.is_none_or(|u| u == health.is_unhealthy())
            && self.stale.is_none_or(|s| s == health.stale)
            && self.up.is_none_or(|u| u == state.up)
            && self.kind.is_none_or(|kind| kind == key.kind)
            && same(&self.account_id, &key.account_id)
            && same(&self.region, &key.region)
            && same(&self.cluster, &key.cluster)
            && same(&self.profile, &key.name)
            && self
                .status
                .as_deref()
                .is_none_or(|s| known.is_some_and(|k| k.status.as_str() == s))
            && self.code.as_deref().is_none_or(|c| {
                known.is_some_and(|k| k.episodes.keys().any(|code| code.as_str() == c))
            })
    }
}

/// The document's head: everything but the profiles.
#[derive(Debug, Serialize)]
struct Head {
    ready: bool,
    generated_at: String,
    /// A profile not attempted for this long is stale, in seconds.
    stale_after_seconds: u64,
    /// Counts over the selected profiles.
    summary: Summary,
}

/// The whole document, as [`ProfilesPage`] encodes it a piece at a time.
#[derive(Debug, Serialize)]
struct Document<'a> {
    #[serde(flatten)]
    head: Head,
    #[serde(skip_serializing_if = "Option::is_none")]
    profiles: Option<Vec<ProfileView<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<Vec<ProfileView<'a>>>,
}

impl<'a> Document<'a> {
    fn new(head: Head, view: View, list: Vec<ProfileView<'a>>) -> Self {
        let (profiles, resources) = match view {
            View::Profiles => (Some(list), None),
            View::Resources => (None, Some(list)),
        };
        Self {
            head,
            profiles,
            resources,
        }
    }
}

#[derive(Debug, Serialize)]
struct ProfileView<'a> {
    /// In the resources view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    account_id: &'a str,
    region: &'a str,
    cluster: &'a str,
    /// The name: `profile` in the profiles view, `name` in the resources view.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    labels: &'a BTreeMap<String, String>,
    up: bool,
    /// How the last describe failed, while `up` is false.
    error: Option<ErrorKind>,
    /// Not attempted for longer than `stale_after_seconds`.
    stale: bool,
    status: Option<&'a str>,
    arn: Option<&'a str>,
    created_at: Option<String>,
    last_success: Option<String>,
    last_attempt: Option<String>,
    issues: Vec<IssueView<'a>>,
}

#[derive(Debug, Serialize)]
struct IssueView<'a> {
    code: &'a str,
    message: &'a str,
    resource_ids: &'a [String],
    resource_count: usize,
    episode_id: &'a str,
    since: String,
}

fn profile_view<'a>(entry: &'a Entry, health: &Health, view: View) -> ProfileView<'a> {
    let state = &entry.state;
    let known = state.known.as_ref();
    let resources = view == View::Resources;
    ProfileView {
        kind: resources.then(|| state.key.kind.name()),
        account_id: &state.key.account_id,
        region: &state.key.region,
        cluster: &state.key.cluster,
        profile: (!resources).then_some(state.key.name.as_str()),
        name: resources.then_some(state.key.name.as_str()),
        labels: &entry.labels,
        up: state.up,
        error: state.last_error,
        stale: health.stale,
        status: known.map(|k| k.status.as_str()),
        arn: known.map(|k| k.incarnation.arn.as_str()),
        created_at: known.map(|k| k.incarnation.created_at.to_rfc3339()),
        last_success: state.last_success.map(|t| t.to_rfc3339()),
        last_attempt: state.last_attempt.map(|t| t.to_rfc3339()),
        issues: known
            .into_iter()
            .flat_map(|k| k.episodes.values())
            .map(|episode| IssueView {
                code: episode.issue.code.as_str(),
                message: &episode.issue.message,
                resource_ids: &episode.issue.resource_ids,
                resource_count: episode.issue.resource_ids.len(),
                episode_id: &episode.id,
                since: episode.since.to_rfc3339(),
            })
            .collect(),
    }
}

/// The document a chunk at a time: byte for byte what `serde_json` makes of the whole
/// (pretty-printed with `?pretty`), one selected profile after the other.
#[derive(Debug)]
pub struct ProfilesPage {
    snapshot: Snapshot,
    /// The selected profiles' indexes in the snapshot, with their health.
    selected: Vec<(usize, Health)>,
    head: Option<Head>,
    view: View,
    pretty: bool,
    /// The next of `selected` to encode.
    next: usize,
    done: bool,
}

/// Indentation of a profile inside the pretty document: two levels of the pretty printer.
const PROFILE_INDENT: &[u8] = b"    ";

impl ProfilesPage {
    pub fn new(snapshot: Snapshot, ready: bool, now: Timestamp, query: &Query) -> Self {
        let stale_after = snapshot.stale_after;
        let mut summary = Summary::default();
        let mut selected = Vec::new();
        for (index, entry) in snapshot.resources.iter().enumerate() {
            let health = Health::of(entry, now, stale_after);
            if query.selects(entry, &health) {
                summary.add(&health);
                selected.push((index, health));
            }
        }
        let head = Head {
            ready,
            generated_at: now.to_rfc3339(),
            stale_after_seconds: stale_after.as_secs(),
            summary,
        };
        Self {
            snapshot,
            selected,
            head: Some(head),
            view: query.view,
            pretty: query.pretty,
            next: 0,
            done: false,
        }
    }

    fn encode<T: Serialize>(&self, value: &T) -> io::Result<Vec<u8>> {
        if self.pretty {
            serde_json::to_vec_pretty(value)
        } else {
            serde_json::to_vec(value)
        }
        .map_err(io::Error::other)
    }

    /// The next chunk, `None` once the document is complete.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(metrics::CHUNK + 4096);
        if let Some(head) = self.head.take() {
            if self.selected.is_empty() {
                out = self.encode(&Document::new(head, self.view, Vec::new()))?;
                out.push(b'\n');
                self.done = true;
                return Ok(Some(out));
            }
            // The head as an object, its closing brace replaced by the profiles' opening.
            out = self.encode(&head)?;
            let close = if self.pretty { 2 } else { 1 };
            out.truncate(out.len().saturating_sub(close));
            let list = self.view.list();
            out.extend_from_slice(
                if self.pretty {
                    format!(",\n  \"{list}\": [\n")
                } else {
                    format!(",\"{list}\":[")
                }
                .as_bytes(),
            );
        }
        while let Some(&(index, health)) = self.selected.get(self.next) {
            if self.next > 0 {
                out.extend_from_slice(if self.pretty { b",\n" } else { b"," });
            }
            let entry = &self.snapshot.resources[index];
            let profile = self.encode(&profile_view(entry, &health, self.view))?;
            if self.pretty {
                // JSON strings escape line breaks, so every one here is the printer's.
                out.extend_from_slice(PROFILE_INDENT);
                for byte in profile {
                    out.push(byte);
                    if byte == b'\n' {
                        out.extend_from_slice(PROFILE_INDENT);
                    }
                }
            } else {
                out.extend_from_slice(&profile);
            }
            self.next += 1;
            if out.len() >= metrics::CHUNK {
                return Ok(Some(out));
            }
        }
        out.extend_from_slice(if self.pretty { b"\n  ]\n}\n" } else { b"]}\n" });
        self.done = true;
        Ok(Some(out))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::diff::Rules;
    use crate::model::{Incarnation, Input, IssueCode, Observation, RawIssue, ResourceKey, Status};
    use crate::state::{Labels, State};

    /// `n` profiles in two clusters; every third with an issue whose message needs escaping,
    /// the fifth `CREATE_FAILED`, the seventh never described.
    pub(crate) fn state_with(n: usize) -> Arc<State> {
        let state = Arc::new(State::new(Rules::default(), Vec::new()));
        state.set_stale_after(Duration::from_secs(60));
        let labels = Arc::new(Labels::from([("env".to_owned(), "te\"st\n".to_owned())]));
        for i in 0..n {
            let cluster = if i % 2 == 0 { "prod" } else { "stage" };
            let key = ResourceKey::fargate_profile(
                "111122223333",
                "us-east-1",
                cluster,
                format!("p-{i:05}"),
            );
            state.discovered(&key, labels.clone(), Timestamp::from_secs(100));
            if i == 7 {
                continue;
            }
            let issues = if i % 3 == 0 {
                vec![RawIssue {
                    code: IssueCode::from_wire("AccessDenied"),
                    message: "a \"quoted\"\nmessage".into(),
                    resource_ids: vec![format!("eni-{i}")],
                }]
            } else {
                Vec::new()
            };
            let status = if i == 5 { "CREATE_FAILED" } else { "ACTIVE" };
            state.apply(&Input::Observed(Observation {
                key: key.clone(),
                incarnation: Incarnation {
                    arn: format!(
                        "arn:aws:eks:us-east-1:111122223333:fargateprofile/{cluster}/{i}/1"
                    ),
                    created_at: Timestamp::from_secs(1_700_000_000),
                },
                status: Status::from_wire(status),
                info: BTreeMap::new(),
                values: Default::default(),
                issues,
                observed_at: Timestamp::from_secs(200),
            }));
        }
        state
    }

    fn chunks(page: &mut ProfilesPage) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = page.next_chunk().unwrap() {
            assert!(chunk.len() < metrics::CHUNK + 4096);
            out.extend(chunk);
        }
        out
    }

    /// What `serde_json` makes of the whole document the query selects.
    fn whole(state: &State, now: Timestamp, query: &Query) -> Vec<u8> {
        let snapshot = state.snapshot();
        let mut summary = Summary::default();
        let mut profiles = Vec::new();
        for entry in &snapshot.resources {
            let health = Health::of(entry, now, snapshot.stale_after);
            if query.selects(entry, &health) {
                summary.add(&health);
                profiles.push(profile_view(entry, &health, query.view));
            }
        }
        let head = Head {
            ready: state.is_ready(),
            generated_at: now.to_rfc3339(),
            stale_after_seconds: 60,
            summary,
        };
        let document = Document::new(head, query.view, profiles);
        let mut out = if query.pretty {
            serde_json::to_vec_pretty(&document).unwrap()
        } else {
            serde_json::to_vec(&document).unwrap()
        };
        out.push(b'\n');
        out
    }

    #[test]
    fn the_document_in_chunks_is_byte_for_byte_the_whole_compact_or_pretty() {
        let now = Timestamp::from_secs(230);
        for n in [0, 1, 3, 400] {
            let state = state_with(n);
            for query in [
                "",
                "pretty",
                "cluster=prod",
                "cluster=prod&pretty",
                "unhealthy=true&pretty",
                "code=Nope",
            ] {
                for (query, list) in [
                    (Query::parse(Some(query)).unwrap(), "profiles"),
                    (Query::parse_resources(Some(query)).unwrap(), "resources"),
                ] {
                    let mut page =
                        ProfilesPage::new(state.snapshot(), state.is_ready(), now, &query);
                    let encoded = chunks(&mut page);
                    assert_eq!(
                        String::from_utf8_lossy(&encoded),
                        String::from_utf8_lossy(&whole(&state, now, &query)),
                        "{n} profiles, {query:?}"
                    );
                    let parsed: serde_json::Value = serde_json::from_slice(&encoded).unwrap();
                    assert_eq!(
                        parsed["summary"]["monitored"],
                        parsed[list].as_array().unwrap().len()
                    );
                }
            }
        }
    }

    #[test]
    fn the_resources_view_holds_every_kind_with_kind_and_name_and_the_profiles_view_only_profiles()
    {
        use crate::model::fake::WIDGET;
        let now = Timestamp::from_secs(230);
        let state = state_with(3);
        let widget = ResourceKey::new(WIDGET, "111122223333", "us-east-1", "prod", "w1");
        state.discovered(&widget, Default::default(), Timestamp::from_secs(100));
        let document = |query: Query| -> serde_json::Value {
            let mut page = ProfilesPage::new(state.snapshot(), state.is_ready(), now, &query);
            serde_json::from_slice(&chunks(&mut page)).unwrap()
        };
        let all = document(Query::parse_resources(None).unwrap());
        let resources = all["resources"].as_array().unwrap();
        assert_eq!(resources.len(), 4);
        assert!(all.get("profiles").is_none());
        let w = resources.iter().find(|r| r["kind"] == "widget").unwrap();
        assert_eq!(w["name"], "w1");
        assert!(w.get("profile").is_none());
        assert!(
            resources
                .iter()
                .all(|r| r["kind"].is_string() && r["name"].is_string())
        );
        let kind = Query::parse_resources(Some("kind=fargate_profile&name=p-00001")).unwrap();
        let one = document(kind);
        assert_eq!(one["resources"].as_array().unwrap().len(), 1);
        assert_eq!(one["resources"][0]["name"], "p-00001");
        let profiles = document(Query::parse(None).unwrap());
        let profiles = profiles["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 3, "the widget is not a profile");
        assert!(
            profiles
                .iter()
                .all(|p| p.get("kind").is_none() && p["profile"].is_string())
        );
        let refused = Query::parse_resources(Some("kind=spaceship")).unwrap_err();
        assert!(refused.contains("fargate_profile"), "{refused}");
        assert!(Query::parse(Some("kind=fargate_profile")).is_err());
        assert!(Query::parse(Some("name=x")).is_err());
        assert!(Query::parse_resources(Some("profile=x")).is_err());
    }

    fn selected(state: &State, now: Timestamp, query: &str) -> (Vec<String>, serde_json::Value) {
        let query = Query::parse(Some(query)).unwrap();
        let mut page = ProfilesPage::new(state.snapshot(), true, now, &query);
        let document: serde_json::Value = serde_json::from_slice(&chunks(&mut page)).unwrap();
        let names = document["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["profile"].as_str().unwrap().to_owned())
            .collect();
        (names, document["summary"].clone())
    }

    #[test]
    fn the_filters_select_what_they_say_and_the_summary_counts_the_selection() {
        let state = state_with(10);
        let now = Timestamp::from_secs(230);
        let (all, summary) = selected(&state, now, "");
        assert_eq!(all.len(), 10);
        assert_eq!(summary["monitored"], 10);
        // p-00000, 3, 6, 9 have AccessDenied; p-00005 is CREATE_FAILED; p-00007 never described.
        assert_eq!(summary["unhealthy"], 5);
        assert_eq!(summary["open_issues"], 4);
        assert_eq!(summary["failed"], 1);
        assert_eq!(summary["not_described"], 1);
        let (unhealthy, summary) = selected(&state, now, "unhealthy=true");
        // In key order: cluster prod before stage.
        assert_eq!(
            unhealthy,
            ["p-00000", "p-00006", "p-00003", "p-00005", "p-00009"]
        );
        assert_eq!(summary["monitored"], 5);
        let (healthy, _) = selected(&state, now, "unhealthy=false");
        assert_eq!(healthy.len(), 5);
        let (prod, _) = selected(&state, now, "cluster=prod&unhealthy=true");
        assert_eq!(prod, ["p-00000", "p-00006"]);
        let (failed, _) = selected(&state, now, "status=CREATE_FAILED");
        assert_eq!(failed, ["p-00005"]);
        let (denied, _) = selected(&state, now, "code=AccessDenied&cluster=stage");
        assert_eq!(denied, ["p-00003", "p-00009"]);
        let (down, _) = selected(&state, now, "up=false");
        assert_eq!(down, ["p-00007"]);
        let (one, _) = selected(
            &state,
            now,
            "profile=p-00004&account_id=111122223333&region=us-east-1",
        );
        assert_eq!(one, ["p-00004"]);
        let (none, summary) = selected(&state, now, "region=eu-west-1");
        assert!(none.is_empty());
        assert_eq!(summary["monitored"], 0);

        // Stale: attempted at 200, threshold 60 s; p-00007 counts from discovery at 100.
        let (fresh, _) = selected(&state, now, "stale=true");
        assert_eq!(fresh, ["p-00007"]);
        let (stale, summary) = selected(&state, Timestamp::from_secs(261), "stale=true");
        assert_eq!(stale.len(), 10);
        assert_eq!(summary["stale"], 10);
        let (_, document) = {
            let mut page = ProfilesPage::new(
                state.snapshot(),
                true,
                Timestamp::from_secs(261),
                &Query::default(),
            );
            let document: serde_json::Value = serde_json::from_slice(&chunks(&mut page)).unwrap();
            ((), document)
        };
        assert_eq!(document["profiles"][0]["stale"], true);
        assert_eq!(document["stale_after_seconds"], 60);
    }

    #[test]
    fn a_query_that_is_not_understood_is_refused_with_what_is_wrong() {
        for (query, problem) in [
            ("unhealthy=yes", "unhealthy must be true or false"),
            ("stale=1", "stale must be true or false"),
            ("pretty=0", "pretty must be true or false"),
            (
                "clusters=prod",
                "unknown parameter \"clusters\"; known: unhealthy, stale",
            ),
            ("cluster=a&cluster=b", "cluster is given more than once"),
            ("%3Cscript%3E=1", "unknown parameter \"<script>\""),
            ("%0d%0aX=1", "unknown parameter \"\\r\\nX\""),
            ("cluster=", "cluster needs a value, as in cluster=prod"),
            ("cluster", "cluster needs a value"),
            ("profile=%FF", "profile is not valid UTF-8 once decoded"),
        ] {
            let error = Query::parse(Some(query)).unwrap_err();
            assert!(error.starts_with(problem), "{query}: {error}");
        }
        let long = format!("cluster={}", "a".repeat(513));
        assert!(
            Query::parse(Some(&long))
                .unwrap_err()
                .contains("longer than 512 bytes")
        );
        let profiles = Query {
            kind: Some(Kind::FARGATE_PROFILE),
            ..Query::default()
        };
        assert_eq!(Query::parse(None).unwrap(), profiles);
        assert_eq!(Query::parse(Some("")).unwrap(), profiles);
        let query = Query::parse(Some("pretty&cluster=a%20b&unhealthy=false")).unwrap();
        assert!(query.pretty);
        assert_eq!(query.cluster.as_deref(), Some("a b"));
        assert_eq!(query.unhealthy, Some(false));
        assert!(Query::parse(Some("pretty=true")).unwrap().pretty);
        assert!(!Query::parse(Some("pretty=false")).unwrap().pretty);
    }
}
