//! Which account a target is in (`GetCallerIdentity` once per credential source), and which
//! profiles it selects: `ListClusters` (every page) when its cluster is a glob,
//! `ListFargateProfiles` (every page) for each cluster, then name matching. What cannot be
//! listed or matched is collected as a [`Problem`], never fatal; a [`TargetProblem`] is one
//! with its target, as the logs, the state and `once` report it.

use std::collections::HashMap;
use std::fmt::Write as _;

use futures_util::{StreamExt, stream};
use serde::Serialize;

use crate::config::Target;
use crate::eks::{CallError, CredentialSource, Eks, Page};
use crate::limits::{RateLimiter, RetryPolicy, paced};
use crate::model::{ErrorKind, Kind, Operation};

/// What discovery found for one target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The selected `(kind, cluster, name)` triples, sorted (a cluster's name is its own).
    pub resources: Vec<(Kind, String, String)>,
    pub problems: Vec<Problem>,
}

impl Discovery {
    /// Whether a list call failed, so that not everything the target selects was listed.
    pub fn failed(&self) -> bool {
        self.problems
            .iter()
            .any(|p| matches!(p, Problem::Failed { .. }))
    }
}

/// Why discovery could not tell everything about a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A list call failed; `cluster` is `None` for `ListClusters`.
    Failed {
        cluster: Option<String>,
        error: CallError,
    },
    /// A cluster named in the target does not exist.
    ClusterNotFound { cluster: String },
    /// A resource named in the target does not exist in its named cluster.
    ResourceNotFound {
        kind: Kind,
        cluster: String,
        name: String,
    },
    /// The target's patterns matched nothing at all.
    NothingMatched,
}

impl Problem {
    /// Whether a person must act: access denied, a named cluster or profile that does not
    /// exist, a target that matches nothing. Other failures are retried.
    pub fn needs_person(&self) -> bool {
        match self {
            Problem::Failed { error, .. } => error.needs_person(),
            _ => true,
        }
    }
}

/// A failed call, as the reports show it.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorReport {
    pub operation: Operation,
    pub kind: ErrorKind,
    pub message: String,
    /// The call could not be signed (no credentials, a role that cannot be assumed): every
    /// call of the target fails alike, and the message says what to fix.
    #[serde(skip)]
    pub credentials: bool,
}

impl From<&CallError> for ErrorReport {
    fn from(error: &CallError) -> Self {
        Self {
            operation: error.operation,
            kind: error.kind,
            message: error.message.clone(),
            credentials: error.credentials.is_some(),
        }
    }
}

/// Something about a target that could not be told.
#[derive(Clone, Debug, Serialize)]
pub struct TargetProblem {
    /// The target's position in the config file, counting from 1.
    pub target: usize,
    pub region: String,
    pub account_id: Option<String>,
    pub cluster: Option<String>,
    /// The kind of the named resource that does not exist.
    pub kind: Option<Kind>,
    /// The named resource that does not exist; for `nothing_matched`, the target's name
    /// patterns per kind (`profiles web-*; nodegroups *`).
    pub name: Option<String>,
    /// `call_failed`, `cluster_not_found`, `profile_not_found` (`nodegroup_not_found`,
    /// `addon_not_found`, `capability_not_found` for the other kinds) or `nothing_matched`.
    pub problem: &'static str,
    pub error: Option<ErrorReport>,
}

impl TargetProblem {
    /// A discovery problem of target number `index` (from 0).
    pub fn new(index: usize, target: &Target, account_id: Option<&str>, problem: Problem) -> Self {
        let (cluster, kind, name, problem, error) = match problem {
            Problem::Failed { cluster, error } => {
                (cluster, None, None, "call_failed", Some((&error).into()))
            }
            Problem::ClusterNotFound { cluster } => {
                (Some(cluster), None, None, "cluster_not_found", None)
            }
            Problem::ResourceNotFound {
                kind,
                cluster,
                name,
            } => (Some(cluster), Some(kind), Some(name), not_found(kind), None),
            Problem::NothingMatched => (
                Some(target.cluster.as_str().to_owned()),
                None,
                Some(patterns_of(target)),
                "nothing_matched",
                None,
            ),
        };
        Self {
            target: index + 1,
            region: target.region.clone(),
            account_id: account_id.map(str::to_owned),
            cluster,
            kind,
            name,
            problem,
            error,
        }
    }

    /// One line for humans: `target 2 (eu-west-1, cluster staging): cluster does not exist`.
    pub fn describe(&self) -> String {
        let mut scope = format!("target {} ({}", self.target, self.region);
        if let Some(account) = &self.account_id {
            let _ = write!(scope, ", account {account}");
        }
        scope.push(')');
        let what = match (self.problem, &self.error) {
            ("cluster_not_found", _) => format!(
                "cluster {} does not exist",
                self.cluster.as_deref().unwrap_or_default()
            ),
            (problem, _) if let Some((kind, _)) = NOT_FOUND.iter().find(|(_, p)| *p == problem) => {
                format!(
                    "{} {} does not exist in cluster {}",
                    kind.spec().noun,
                    self.name.as_deref().unwrap_or_default(),
                    self.cluster.as_deref().unwrap_or_default()
                )
            }
            ("nothing_matched", _) => format!(
                "cluster {} with {} matched nothing",
                self.cluster.as_deref().unwrap_or_default(),
                self.name.as_deref().unwrap_or_default()
            ),
            // The same for every call of the target: said once, not once per list.
            (_, Some(error)) if error.credentials => error.message.clone(),
            (_, Some(error)) => {
                let of = match &self.cluster {
                    Some(cluster) if error.operation != Operation::ListClusters => {
                        format!(" of cluster {cluster}")
                    }
                    _ => String::new(),
                };
                format!(
                    "{}{of} failed ({}): {}",
                    error.operation, error.kind, error.message
                )
            }
            (problem, None) => problem.to_owned(),
        };
        format!("{scope}: {what}")
    }
}

/// What a target selects within its clusters, for a target that matched nothing:
/// `kinds cluster, fargate_profile; profiles web-*` (the name patterns of the kinds that have
/// them, after the kinds it watches).
fn patterns_of(target: &Target) -> String {
    let kinds: Vec<&str> = target.kinds.iter().map(|k| k.name()).collect();
    let mut text = format!("kinds {}", kinds.join(", "));
    for kind in &target.kinds {
        if let (Some(key), Some(patterns)) = (Target::patterns_key(*kind), target.patterns(*kind)) {
            let patterns: Vec<&str> = patterns.iter().map(|p| p.as_str()).collect();
            let _ = write!(text, "; {key} {}", patterns.join(","));
        }
    }
    text
}

/// The `problem` of a named resource of `kind` that does not exist: `profile_not_found` for a
/// Fargate profile, `<kind>_not_found` for the others.
fn not_found(kind: Kind) -> &'static str {
    NOT_FOUND
        .iter()
        .find_map(|(k, problem)| (*k == kind).then_some(*problem))
        .unwrap_or("resource_not_found")
}

const NOT_FOUND: [(Kind, &str); 4] = [
    (Kind::FARGATE_PROFILE, "profile_not_found"),
    (Kind::NODEGROUP, "nodegroup_not_found"),
    (Kind::ADDON, "addon_not_found"),
    (Kind::CAPABILITY, "capability_not_found"),
];

/// The account id of each target: its `account_id`, or STS `GetCallerIdentity`, called once
/// per distinct credential source.
pub async fn account_ids<'a, E: Eks + 'a>(
    targets: impl IntoIterator<Item = (&'a Target, &'a E)>,
    limiter: &RateLimiter,
    policy: &RetryPolicy,
) -> Vec<Result<String, CallError>> {
    let mut known: HashMap<CredentialSource, Result<String, CallError>> = HashMap::new();
    let mut accounts = Vec::new();
    for (target, client) in targets {
        let account = match &target.account_id {
            Some(account) => Ok(account.clone()),
            None => {
                let source = CredentialSource::of(target);
                match known.get(&source) {
                    Some(answer) => answer.clone(),
                    None => {
                        let answer = paced(limiter, policy, || client.caller_identity()).await;
                        known.insert(source, answer.clone());
                        answer
                    }
                }
            }
        };
        accounts.push(account);
    }
    accounts
}

/// Reads every page of a list operation, each page through the limiter.
pub async fn list_all<F, Fut>(
    limiter: &RateLimiter,
    policy: &RetryPolicy,
    mut page: F,
) -> Result<Vec<String>, CallError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page, CallError>>,
{
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let Page {
            names: more,
            next_token,
        } = paced(limiter, policy, || page(token.clone())).await?;
        names.extend(more);
        match next_token {
            // A token that repeats would loop forever; EKS never sends one.
            Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
            _ => return Ok(names),
        }
    }
}

/// Lists what `target` selects, with up to `concurrency` clusters listed at once, among the
/// clusters `owns` accepts (the instance's shard; `|_| true` for all).
pub async fn discover<E: Eks>(
    client: &E,
    target: &Target,
    limiter: &RateLimiter,
    policy: &RetryPolicy,
    concurrency: usize,
    owns: impl Fn(&str) -> bool,
) -> Discovery {
    let mut discovery = Discovery::default();
    let clusters = if target.cluster.is_glob() {
        match list_all(limiter, policy, |token| client.list_clusters(token)).await {
            Ok(names) => names
                .into_iter()
                .filter(|name| target.cluster.matches(name))
                .collect(),
            Err(error) => {
                discovery.problems.push(Problem::Failed {
                    cluster: None,
                    error,
                });
                return discovery;
            }
        }
    } else {
        vec![target.cluster.as_str().to_owned()]
    };
    let listed = clusters.len();
    let clusters: Vec<String> = clusters.into_iter().filter(|c| owns(c)).collect();
    // Clusters of other shards are theirs to list and report.
    let sharded_away = clusters.len() < listed;

    // One list call per listed kind and cluster; a cluster is a resource of its own.
    let mut lists = Vec::new();
    for cluster in clusters {
        for kind in &target.kinds {
            if *kind == Kind::CLUSTER {
                let name = cluster.clone();
                discovery.resources.push((*kind, cluster.clone(), name));
            } else {
                lists.push((*kind, cluster.clone()));
            }
        }
    }
    let listed: Vec<(Kind, String, Result<Vec<String>, CallError>)> = stream::iter(lists)
        .map(|(kind, cluster)| async move {
            let names = list_all(limiter, policy, |token| {
                client.list_resources(kind, &cluster, token)
            })
            .await;
            (kind, cluster, names)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;

    let mut missing_clusters = Vec::new();
    for (kind, cluster, result) in listed {
        match result {
            Ok(names) => {
                let selected = names.iter().filter(|name| target.selects(kind, name));
                discovery
                    .resources
                    .extend(selected.map(|name| (kind, cluster.clone(), name.clone())));
                if !target.cluster.is_glob() {
                    let named = target.patterns(kind).unwrap_or_default().iter();
                    let missing =
                        named.filter(|p| !p.is_glob() && !names.iter().any(|n| n == p.as_str()));
                    discovery
                        .problems
                        .extend(missing.map(|p| Problem::ResourceNotFound {
                            kind,
                            cluster: cluster.clone(),
                            name: p.as_str().to_owned(),
                        }));
                }
            }
            Err(error) if error.kind == ErrorKind::NotFound => {
                // A cluster that a glob listed and that is gone by now is simply not there.
                if !missing_clusters.contains(&cluster) {
                    missing_clusters.push(cluster);
                }
            }
            Err(error) => discovery.problems.push(Problem::Failed {
                cluster: Some(cluster),
                error,
            }),
        }
    }
    // A cluster no list call found is not selected, nor are its resources.
    discovery
        .resources
        .retain(|(_, cluster, _)| !missing_clusters.contains(cluster));
    if !target.cluster.is_glob() {
        let missing = missing_clusters.into_iter();
        let problems = missing.map(|cluster| Problem::ClusterNotFound { cluster });
        discovery.problems.extend(problems);
    }
    discovery.resources.sort();
    discovery.resources.dedup();
    if discovery.resources.is_empty() && discovery.problems.is_empty() && !sharded_away {
        discovery.problems.push(Problem::NothingMatched);
    }
    discovery
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::config::Pattern;
    use crate::eks::Described;
    use crate::model::Operation;

    /// Clusters and their profiles, served two names a page; a cluster named `fail-*` fails
    /// with a server error, `vanished` is listed but not found.
    #[derive(Default)]
    struct Fake {
        clusters: BTreeMap<String, Vec<String>>,
        /// Node groups per cluster (none when absent); `ListNodegroups` of `stage` fails.
        nodegroups: BTreeMap<String, Vec<String>>,
        calls: Mutex<Vec<String>>,
    }

    impl Fake {
        fn page(names: Vec<String>, token: Option<String>) -> Page {
            let start: usize = token.map_or(0, |t| t.parse().unwrap());
            let end = (start + 2).min(names.len());
            Page {
                names: names[start..end].to_vec(),
                next_token: (end < names.len()).then(|| end.to_string()),
            }
        }
    }

    impl Eks for Fake {
        async fn caller_identity(&self) -> Result<String, CallError> {
            Ok("111122223333".into())
        }

        async fn list_clusters(&self, token: Option<String>) -> Result<Page, CallError> {
            self.calls.lock().unwrap().push("ListClusters".into());
            let mut names: Vec<String> = self.clusters.keys().cloned().collect();
            names.push("vanished".into());
            names.sort();
            Ok(Self::page(names, token))
        }

        async fn list_resources(
            &self,
            kind: Kind,
            cluster: &str,
            token: Option<String>,
        ) -> Result<Page, CallError> {
            let op = kind.spec().list;
            self.calls.lock().unwrap().push(format!("{op} {cluster}"));
            if cluster.starts_with("fail-") {
                return Err(CallError::new(op, ErrorKind::Server, "boom"));
            }
            let Some(profiles) = self.clusters.get(cluster) else {
                return Err(CallError::new(op, ErrorKind::NotFound, "no cluster"));
            };
            let names = match kind.name() {
                "nodegroup" if cluster == "stage" => {
                    return Err(CallError::new(op, ErrorKind::Throttled, "slow down"));
                }
                "nodegroup" => self.nodegroups.get(cluster).cloned().unwrap_or_default(),
                _ => profiles.clone(),
            };
            Ok(Self::page(names, token))
        }

        async fn describe(&self, _: Kind, _: &str, _: &str) -> Result<Described, CallError> {
            unreachable!("discovery never describes")
        }
    }

    fn fake() -> Fake {
        let mut fake = Fake::default();
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        fake.clusters
            .insert("prod-a".into(), names(&["default", "jobs", "web", "x"]));
        fake.clusters.insert("prod-b".into(), names(&["default"]));
        fake.clusters.insert("fail-c".into(), names(&["default"]));
        fake.clusters.insert("stage".into(), names(&["default"]));
        fake
    }

    fn target(cluster: &str, profiles: &[&str]) -> Target {
        Target {
            kinds: vec![Kind::FARGATE_PROFILE],
            profiles: profiles
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect(),
            ..Target::new("us-east-1", Pattern::parse(cluster).unwrap())
        }
    }

    async fn run(fake: &Fake, target: &Target) -> Discovery {
        let limiter = RateLimiter::new(1000.0);
        discover(fake, target, &limiter, &RetryPolicy::ONCE, 4, |_| true).await
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(Kind, String, String)> {
        list.iter()
            .map(|(c, p)| (Kind::FARGATE_PROFILE, c.to_string(), p.to_string()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn globs_list_every_page_and_select_by_pattern() {
        let fake = fake();
        let found = run(&fake, &target("prod-*", &["default", "j*"])).await;
        assert_eq!(
            found.resources,
            pairs(&[
                ("prod-a", "default"),
                ("prod-a", "jobs"),
                ("prod-b", "default")
            ])
        );
        // A literal profile name missing from a globbed cluster is not a problem.
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        let calls = fake.calls.lock().unwrap();
        assert_eq!(calls.iter().filter(|c| *c == "ListClusters").count(), 3);
        assert_eq!(
            calls
                .iter()
                .filter(|c| *c == "ListFargateProfiles prod-a")
                .count(),
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_cluster_is_a_problem_and_a_vanished_one_is_not() {
        let fake = fake();
        let found = run(&fake, &target("*", &["default"])).await;
        assert_eq!(
            found.resources,
            pairs(&[
                ("prod-a", "default"),
                ("prod-b", "default"),
                ("stage", "default")
            ])
        );
        assert_eq!(found.problems.len(), 1);
        assert!(matches!(
            &found.problems[0],
            Problem::Failed { cluster: Some(c), error } if c == "fail-c" && error.kind == ErrorKind::Server
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn named_clusters_and_profiles_that_do_not_exist_are_problems() {
        let fake = fake();
        let found = run(&fake, &target("nope", &["*"])).await;
        assert_eq!(
            found.problems,
            [Problem::ClusterNotFound {
                cluster: "nope".into()
            }]
        );
        assert!(found.resources.is_empty());

        let found = run(&fake, &target("prod-b", &["default", "gone"])).await;
        assert_eq!(found.resources, pairs(&[("prod-b", "default")]));
        assert_eq!(
            found.problems,
            [Problem::ResourceNotFound {
                kind: Kind::FARGATE_PROFILE,
                cluster: "prod-b".into(),
                name: "gone".into()
            }]
        );

        let found = run(&fake, &target("dev-*", &["*"])).await;
        assert_eq!(found.problems, [Problem::NothingMatched]);
    }

    #[tokio::test(start_paused = true)]
    async fn each_kind_is_listed_per_cluster_and_a_cluster_is_a_resource_of_its_own() {
        let mut fake = fake();
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        fake.nodegroups
            .insert("prod-a".into(), names(&["general", "gpu", "spot"]));
        let mut target = target("*", &["default"]);
        target.kinds = vec![Kind::FARGATE_PROFILE, Kind::CLUSTER, Kind::NODEGROUP];
        target.nodegroups = vec![Pattern::parse("g*").unwrap()];
        let found = run(&fake, &target).await;
        let has = |kind: Kind, cluster: &str, name: &str| {
            found
                .resources
                .contains(&(kind, cluster.to_owned(), name.to_owned()))
        };
        assert!(has(Kind::CLUSTER, "prod-a", "prod-a") && has(Kind::CLUSTER, "stage", "stage"));
        assert!(has(Kind::NODEGROUP, "prod-a", "general") && has(Kind::NODEGROUP, "prod-a", "gpu"));
        assert!(!has(Kind::NODEGROUP, "prod-a", "spot"));
        assert!(has(Kind::FARGATE_PROFILE, "stage", "default"));
        // Listed by a glob but gone: neither the cluster nor anything in it.
        assert!(!found.resources.iter().any(|(_, c, _)| c == "vanished"));
        // The failed node group listing of one cluster is a problem of that call only.
        let failed: Vec<(&Option<String>, Operation)> = found
            .problems
            .iter()
            .filter_map(|p| match p {
                Problem::Failed { cluster, error } => Some((cluster, error.operation)),
                _ => None,
            })
            .collect();
        assert!(failed.contains(&(&Some("stage".into()), Operation::ListNodegroups)));
        let calls = fake.calls.lock().unwrap();
        assert!(calls.iter().any(|c| c == "ListNodegroups prod-a"));
        assert!(!calls.iter().any(|c| c.starts_with("ListAddons")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_named_node_group_that_does_not_exist_says_so_in_its_own_words() {
        let fake = fake();
        let mut target = target("prod-b", &["*"]);
        target.kinds = vec![Kind::NODEGROUP];
        target.nodegroups = vec![Pattern::parse("general").unwrap()];
        let found = run(&fake, &target).await;
        let problem = Problem::ResourceNotFound {
            kind: Kind::NODEGROUP,
            cluster: "prod-b".into(),
            name: "general".into(),
        };
        assert_eq!(found.problems, std::slice::from_ref(&problem));
        let text = TargetProblem::new(0, &target, Some("111122223333"), problem).describe();
        assert!(
            text.ends_with("node group general does not exist in cluster prod-b"),
            "{text}"
        );
    }
}
