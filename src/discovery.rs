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
    /// The selected `(cluster, profile)` pairs, sorted.
    pub profiles: Vec<(String, String)>,
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
    /// A profile named in the target does not exist in its named cluster.
    ProfileNotFound { cluster: String, profile: String },
    /// The target's patterns matched no profile at all.
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
}

impl From<&CallError> for ErrorReport {
    fn from(error: &CallError) -> Self {
        Self {
            operation: error.operation,
            kind: error.kind,
            message: error.message.clone(),
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
    pub profile: Option<String>,
    /// `call_failed`, `cluster_not_found`, `profile_not_found` or `nothing_matched`.
    pub problem: &'static str,
    pub error: Option<ErrorReport>,
}

impl TargetProblem {
    /// A discovery problem of target number `index` (from 0).
    pub fn new(index: usize, target: &Target, account_id: Option<&str>, problem: Problem) -> Self {
        let (cluster, profile, name, error) = match problem {
            Problem::Failed { cluster, error } => {
                (cluster, None, "call_failed", Some((&error).into()))
            }
            Problem::ClusterNotFound { cluster } => {
                (Some(cluster), None, "cluster_not_found", None)
            }
            Problem::ProfileNotFound { cluster, profile } => {
                (Some(cluster), Some(profile), "profile_not_found", None)
            }
            Problem::NothingMatched => {
                let patterns: Vec<&str> = target.profiles.iter().map(|p| p.as_str()).collect();
                (
                    Some(target.cluster.as_str().to_owned()),
                    Some(patterns.join(",")),
                    "nothing_matched",
                    None,
                )
            }
        };
        Self {
            target: index + 1,
            region: target.region.clone(),
            account_id: account_id.map(str::to_owned),
            cluster,
            profile,
            problem: name,
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
            ("profile_not_found", _) => format!(
                "profile {} does not exist in cluster {}",
                self.profile.as_deref().unwrap_or_default(),
                self.cluster.as_deref().unwrap_or_default()
            ),
            ("nothing_matched", _) => format!(
                "cluster {} with profiles {} matched no profile",
                self.cluster.as_deref().unwrap_or_default(),
                self.profile.as_deref().unwrap_or_default()
            ),
            (_, Some(error)) => {
                let of = match &self.cluster {
                    Some(cluster) if error.operation == Operation::ListFargateProfiles => {
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

    let listed: Vec<(String, Result<Vec<String>, CallError>)> = stream::iter(clusters)
        .map(|cluster| async move {
            let profiles = list_all(limiter, policy, |token| {
                client.list_resources(Kind::FARGATE_PROFILE, &cluster, token)
            })
            .await;
            (cluster, profiles)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;

    for (cluster, result) in listed {
        match result {
            Ok(names) => {
                let selected = names
                    .iter()
                    .filter(|name| target.profiles.iter().any(|p| p.matches(name)));
                discovery
                    .profiles
                    .extend(selected.map(|name| (cluster.clone(), name.clone())));
                if !target.cluster.is_glob() {
                    let missing = target
                        .profiles
                        .iter()
                        .filter(|p| !p.is_glob() && !names.iter().any(|n| n == p.as_str()));
                    discovery
                        .problems
                        .extend(missing.map(|p| Problem::ProfileNotFound {
                            cluster: cluster.clone(),
                            profile: p.as_str().to_owned(),
                        }));
                }
            }
            Err(error) if error.kind == ErrorKind::NotFound => {
                // A cluster that a glob listed and that is gone by now is simply not there.
                if !target.cluster.is_glob() {
                    discovery
                        .problems
                        .push(Problem::ClusterNotFound { cluster });
                }
            }
            Err(error) => discovery.problems.push(Problem::Failed {
                cluster: Some(cluster),
                error,
            }),
        }
    }
    discovery.profiles.sort();
    discovery.profiles.dedup();
    if discovery.profiles.is_empty() && discovery.problems.is_empty() && !sharded_away {
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
            _: Kind,
            cluster: &str,
            token: Option<String>,
        ) -> Result<Page, CallError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("ListFargateProfiles {cluster}"));
            let op = Operation::ListFargateProfiles;
            if cluster.starts_with("fail-") {
                return Err(CallError::new(op, ErrorKind::Server, "boom"));
            }
            match self.clusters.get(cluster) {
                Some(names) => Ok(Self::page(names.clone(), token)),
                None => Err(CallError::new(op, ErrorKind::NotFound, "no cluster")),
            }
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
            region: "us-east-1".into(),
            cluster: Pattern::parse(cluster).unwrap(),
            profiles: profiles
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect(),
            kinds: crate::model::Kind::ALL.to_vec(),
            nodegroups: vec![Pattern::parse("*").unwrap()],
            addons: vec![Pattern::parse("*").unwrap()],
            labels: BTreeMap::new(),
            account_id: None,
            aws_profile: None,
            role_arn: None,
            external_id: None,
            endpoint_url: None,
            sts_endpoint_url: None,
        }
    }

    async fn run(fake: &Fake, target: &Target) -> Discovery {
        let limiter = RateLimiter::new(1000.0);
        discover(fake, target, &limiter, &RetryPolicy::ONCE, 4, |_| true).await
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(c, p)| (c.to_string(), p.to_string()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn globs_list_every_page_and_select_by_pattern() {
        let fake = fake();
        let found = run(&fake, &target("prod-*", &["default", "j*"])).await;
        assert_eq!(
            found.profiles,
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
            found.profiles,
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
        assert!(found.profiles.is_empty());

        let found = run(&fake, &target("prod-b", &["default", "gone"])).await;
        assert_eq!(found.profiles, pairs(&[("prod-b", "default")]));
        assert_eq!(
            found.problems,
            [Problem::ProfileNotFound {
                cluster: "prod-b".into(),
                profile: "gone".into()
            }]
        );

        let found = run(&fake, &target("dev-*", &["*"])).await;
        assert_eq!(found.problems, [Problem::NothingMatched]);
    }
}
