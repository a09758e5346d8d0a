//! `once`: one pass over every configured target (account id, discovery, one describe per
//! selected resource) through the same diff the daemon uses, starting from an empty state, so
//! its view of issues is the daemon's. The [`Report`] prints as a table or JSON and gives the
//! exit code (DESIGN.md "Command line").

use std::collections::BTreeMap;
use std::fmt::Write as _;

use futures_util::{StreamExt, stream};
use serde::Serialize;

use crate::clock::Clock;
use crate::config::Config;
use crate::diff::{self, ResourceState, Rules, Sequence};
use crate::discovery::{self, ErrorReport, Problem, TargetProblem};
use crate::eks::{CredentialSource, Eks};
use crate::exit;
use crate::limits::{Limiters, RateLimiter, RetryPolicy, paced};
use crate::model::for_display;
use crate::model::{Input, Kind, PollFailure, ResourceKey, Status};
use crate::selection::Selection;

/// The most characters of a value shown in a table cell; longer ones end with `…`.
pub const MAX_CELL_CHARS: usize = 64;
/// The most characters of an `error:` or `problem:` line of the table output.
pub const MAX_LINE_CHARS: usize = 2048;

/// What one pass found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Every selected resource, sorted by key.
    pub resources: Vec<ResourceReport>,
    /// What could not be told about the targets, in target order.
    pub problems: Vec<TargetProblem>,
}

/// One resource: its status and open issues, or why it could not be described.
#[derive(Clone, Debug, Serialize)]
pub struct ResourceReport {
    #[serde(flatten)]
    pub key: ResourceKey,
    pub labels: BTreeMap<String, String>,
    /// Whether the describe succeeded.
    pub up: bool,
    pub arn: Option<String>,
    pub created_at: Option<String>,
    pub status: Option<Status>,
    pub issues: Vec<IssueReport>,
    pub error: Option<ErrorReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IssueReport {
    pub code: String,
    pub message: String,
    pub resource_ids: Vec<String>,
    pub resource_count: usize,
    pub episode_id: String,
    pub since: String,
}

impl ResourceReport {
    fn unhealthy(&self) -> bool {
        !self.issues.is_empty()
            || (self.status.as_ref()).is_some_and(|status| self.key.kind.is_alert_worthy(status))
    }

    /// Distinct resource ids over the open issues.
    fn resource_count(&self) -> usize {
        self.issues.iter().map(|issue| issue.resource_count).sum()
    }

    fn from_state(state: &ResourceState, labels: &BTreeMap<String, String>) -> Self {
        let known = state.known.as_ref();
        Self {
            key: state.key.clone(),
            labels: labels.clone(),
            up: state.up,
            arn: known.map(|k| k.incarnation.arn.clone()),
            created_at: known.map(|k| k.incarnation.created_at.to_rfc3339()),
            status: known.map(|k| k.status.clone()),
            issues: known
                .into_iter()
                .flat_map(|k| k.episodes.values())
                .map(|episode| IssueReport {
                    code: episode.issue.code.as_str().to_owned(),
                    message: episode.issue.message.clone(),
                    resource_ids: episode.issue.resource_ids.clone(),
                    resource_count: episode.issue.resource_ids.len(),
                    episode_id: episode.id.clone(),
                    since: episode.since.to_rfc3339(),
                })
                .collect(),
            error: None,
        }
    }
}

impl Report {
    /// 0 healthy, 1 unhealthy, 2 not everything could be told.
    pub fn exit_code(&self) -> u8 {
        if self.resources.iter().any(ResourceReport::unhealthy) {
            exit::UNHEALTHY
        } else if !self.problems.is_empty() || self.resources.iter().any(|p| !p.up) {
            exit::UNKNOWN
        } else {
            exit::OK
        }
    }

    /// The report as pretty JSON, with a summary and the exit code.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Json<'a> {
            resources: &'a [ResourceReport],
            problems: &'a [TargetProblem],
            summary: Summary,
            exit_code: u8,
        }
        let json = Json {
            resources: &self.resources,
            problems: &self.problems,
            summary: self.summary(),
            exit_code: self.exit_code(),
        };
        serde_json::to_string_pretty(&json).unwrap_or_default() + "\n"
    }

    fn summary(&self) -> Summary {
        let failed = self.resources.iter().filter(|p| !p.up).count();
        let unhealthy = self.resources.iter().filter(|p| p.unhealthy()).count();
        Summary {
            resources: self.resources.len(),
            healthy: self.resources.len() - failed - unhealthy,
            unhealthy,
            failed,
            problems: self.problems.len(),
        }
    }

    /// The report as an aligned table, then the errors and problems, then a summary line.
    pub fn to_table(&self) -> String {
        let header = [
            "KIND",
            "ACCOUNT",
            "REGION",
            "CLUSTER",
            "NAME",
            "STATUS",
            "ISSUES",
            "RESOURCES",
        ];
        let mut rows: Vec<[String; 8]> = vec![header.map(str::to_owned)];
        for p in &self.resources {
            let status = p.status.as_ref().map_or("-", Status::as_str).to_owned();
            let (issues, resources) = match &p.error {
                Some(error) => (format!("error: {}", error.kind), "-".to_owned()),
                None if p.issues.is_empty() => ("-".to_owned(), "0".to_owned()),
                None => {
                    let codes: Vec<&str> = p.issues.iter().map(|i| i.code.as_str()).collect();
                    (codes.join(","), p.resource_count().to_string())
                }
            };
            rows.push(
                [
                    p.key.kind.name(),
                    &p.key.account_id,
                    &p.key.region,
                    &p.key.cluster,
                    &p.key.name,
                    &status,
                    &issues,
                    &resources,
                ]
                .map(|cell| for_display(cell, MAX_CELL_CHARS).into_owned()),
            );
        }
        let mut widths = [0usize; 8];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        if !self.resources.is_empty() {
            for row in &rows {
                let mut line = String::new();
                for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                    line.push_str(cell);
                    if i + 1 < row.len() {
                        // Padded by hand: `format!`'s width parameter panics beyond u16::MAX.
                        let pad = width.saturating_sub(cell.chars().count()) + 2;
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
            out.push('\n');
        }
        for p in &self.resources {
            if let Some(error) = &p.error {
                let line = format!(
                    "{}: {} failed ({}): {}",
                    p.key, error.operation, error.kind, error.message
                );
                let _ = writeln!(out, "error: {}", for_display(&line, MAX_LINE_CHARS));
            }
        }
        for problem in &self.problems {
            let line = problem.describe();
            let _ = writeln!(out, "problem: {}", for_display(&line, MAX_LINE_CHARS));
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "{} resource{}: {} healthy, {} unhealthy, {} not described; {} problem{}",
            s.resources,
            plural(s.resources),
            s.healthy,
            s.unhealthy,
            s.failed,
            s.problems,
            plural(s.problems)
        );
        out
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
struct Summary {
    resources: usize,
    healthy: usize,
    unhealthy: usize,
    failed: usize,
    problems: usize,
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One pass over every target; `clients[i]` calls AWS for `config.targets[i]`; `clock` dates
/// the answers.
pub async fn run<E: Eks>(
    config: &Config,
    clients: &[E],
    policy: &RetryPolicy,
    clock: &Clock,
) -> Report {
    let limiters = Limiters::new(config.poll.max_requests_per_second);
    let sts_limiter = RateLimiter::new(config.poll.max_requests_per_second);
    let mut report = Report::default();

    let accounts =
        discovery::account_ids(config.targets.iter().zip(clients), &sts_limiter, policy).await;
    let mut selection = Selection::new(config.targets.len());
    for (index, ((target, client), account)) in
        config.targets.iter().zip(clients).zip(accounts).enumerate()
    {
        let account = match account {
            Ok(account) => account,
            Err(error) => {
                tracing::warn!(
                    config_target = index + 1,
                    credentials = %CredentialSource::of(target).describe(),
                    %error,
                    "cannot tell the target's account"
                );
                let problem = Problem::Failed {
                    cluster: None,
                    error,
                };
                report
                    .problems
                    .push(TargetProblem::new(index, target, None, problem));
                continue;
            }
        };
        let limiter = limiters.get(&account, &target.region);
        let concurrency = config.poll.concurrency.max(1);
        let found =
            discovery::discover(client, target, &limiter, policy, concurrency, |_| true).await;
        // A resource selected by several targets is described once, under the first.
        let changes = selection.discovered(index, Some(&account), &target.region, &found);
        for change in changes {
            change.warn_if_duplicate();
        }
        // Said once when several calls fail alike (credentials fail every list of a target).
        for problem in found.problems {
            let problem = TargetProblem::new(index, target, Some(&account), problem);
            let text = problem.describe();
            if !report.problems.iter().any(|p| p.describe() == text) {
                report.problems.push(problem);
            }
        }
    }

    let selected = selection.into_owners();
    report.resources = describe_all(config, clients, &limiters, policy, clock, selected).await;
    report
}

/// Describes each selected resource once and runs the answer through the diff from an empty
/// state; the result is sorted by account, region and cluster, each cluster before what it
/// holds (in [`Kind::ALL`] order, then by name).
async fn describe_all<E: Eks>(
    config: &Config,
    clients: &[E],
    limiters: &Limiters,
    policy: &RetryPolicy,
    clock: &Clock,
    selected: BTreeMap<ResourceKey, usize>,
) -> Vec<ResourceReport> {
    let rules = Rules {
        resolve_after: config.alerts.resolve_after,
    };
    let rules = &rules;
    let mut resources: Vec<ResourceReport> = stream::iter(selected)
        .map(|(key, index)| {
            let limiter = limiters.get(&key.account_id, &key.region);
            let client = &clients[index];
            let labels = &config.targets[index].labels;
            async move {
                let answer = paced(&limiter, policy, || {
                    client.describe(key.kind, &key.cluster, &key.name)
                })
                .await;
                let observed_at = clock.now();
                let (input, error) = match answer {
                    Ok(described) => (
                        Input::Observed(described.into_observation(key, observed_at)),
                        None,
                    ),
                    Err(error) => {
                        let failure = PollFailure {
                            key,
                            kind: error.kind,
                            observed_at,
                        };
                        (Input::Failed(failure), Some(ErrorReport::from(&error)))
                    }
                };
                let next = diff::diff(None, &input, rules, &mut Sequence::default()).next;
                let state = next.unwrap_or_else(|| ResourceState::discovered(input.key().clone()));
                ResourceReport {
                    error,
                    ..ResourceReport::from_state(&state, labels)
                }
            }
        })
        .buffer_unordered(config.poll.concurrency.max(1))
        .collect()
        .await;
    resources.sort_by(|a, b| table_order(&a.key).cmp(&table_order(&b.key)));
    resources
}

/// Where a resource goes in the report: by account, region and cluster, the cluster first,
/// then what it holds in [`Kind::ALL`] order and by name.
fn table_order(key: &ResourceKey) -> (&str, &str, &str, usize, &str) {
    let rank = if key.kind == Kind::CLUSTER {
        0
    } else {
        1 + Kind::ALL
            .iter()
            .position(|kind| *kind == key.kind)
            .unwrap_or(Kind::ALL.len())
    };
    (&key.account_id, &key.region, &key.cluster, rank, &key.name)
}
