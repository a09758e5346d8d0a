//! The API budget of a config, as far as the file tells it: per lane (account, or the
//! credentials of the targets without one, and region), how many describes the targets name
//! at least, against what `max_requests_per_second` allows per `interval`. Pure; `check`
//! warns when a lane cannot keep up.

use std::collections::BTreeMap;

use super::{Config, Target};
use crate::model::Kind;

/// What one lane is asked to describe per interval, and what it may.
#[derive(Clone, Debug, PartialEq)]
pub struct LaneBudget {
    /// `us-east-1 (account 111122223333)`, or the credentials for targets without an account.
    pub lane: String,
    /// Resources the targets name (a cluster each, and every literal name), at least.
    pub named: usize,
    /// Whether globs or capabilities can add more than `named`.
    pub more: bool,
    /// Describes the lane's rate allows per interval.
    pub allowed: f64,
}

impl LaneBudget {
    pub fn exceeded(&self) -> bool {
        self.named as f64 > self.allowed
    }
}

/// The lanes of `config`, in lane order.
pub fn lanes(config: &Config) -> Vec<LaneBudget> {
    let allowed = config.poll.max_requests_per_second * config.poll.interval.as_secs_f64();
    let mut lanes: BTreeMap<String, LaneBudget> = BTreeMap::new();
    for (index, target) in config.targets.iter().enumerate() {
        let lane = match &target.account_id {
            Some(account) => format!("{} (account {account})", target.region),
            None => format!(
                "{} (the credentials of target {})",
                target.region,
                index + 1
            ),
        };
        let (named, more) = named(target);
        let budget = lanes.entry(lane.clone()).or_insert(LaneBudget {
            lane,
            named: 0,
            more: false,
            allowed,
        });
        budget.named = budget.named.saturating_add(named);
        budget.more |= more;
    }
    lanes.into_values().collect()
}

/// The resources one target names, at least, and whether it may select more.
fn named(target: &Target) -> (usize, bool) {
    if target.cluster.is_glob() {
        return (0, true);
    }
    let mut named = 0usize;
    let mut more = false;
    for kind in &target.kinds {
        match target.patterns(*kind) {
            None if *kind == Kind::CLUSTER => named = named.saturating_add(1),
            None => more = true,
            Some(patterns) => {
                // A name given twice is one resource.
                let literal: std::collections::BTreeSet<&str> = patterns
                    .iter()
                    .filter(|p| !p.is_glob())
                    .map(|p| p.as_str())
                    .collect();
                named = named.saturating_add(literal.len());
                more |= patterns.iter().any(|p| p.is_glob());
            }
        }
    }
    (named, more)
}

/// The `check` warnings: one per lane whose named resources exceed its rate.
pub fn warnings(config: &Config) -> Vec<String> {
    let interval = humantime::format_duration(config.poll.interval);
    lanes(config)
        .into_iter()
        .filter(LaneBudget::exceeded)
        .map(|lane| {
            format!(
                "lane {}: the targets name {}{} resources, but max_requests_per_second = {} allows {} describes per interval of {interval}: raise max_requests_per_second or interval, or split the fleet with shards",
                lane.lane,
                if lane.more { "at least " } else { "" },
                lane.named,
                config.poll.max_requests_per_second,
                lane.allowed.floor(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> Config {
        let env = crate::config::ProcessEnvironment;
        match crate::config::parse(text, Path::new("budget.toml"), &env) {
            Ok(loaded) => loaded.config,
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn a_lane_counts_a_cluster_and_its_literal_names_and_knows_when_globs_add_more() {
        let mut config = config(concat!(
            "[poll]\ninterval = \"60s\"\nmax_requests_per_second = 1\n",
            "[[targets]]\nregion = \"eu-west-1\"\ncluster = \"prod\"\naccount_id = \"111122223333\"\n",
            "profiles = [\"a\", \"b\", \"c-*\"]\n",
            "[[targets]]\nregion = \"eu-west-1\"\ncluster = \"stage\"\naccount_id = \"111122223333\"\n",
            "kinds = [\"fargate_profile\"]\nprofiles = [\"a\"]\n",
            "[[targets]]\nregion = \"us-east-1\"\ncluster = \"*\"\n",
        ));
        config.targets[0].kinds = vec![Kind::FARGATE_PROFILE, Kind::CLUSTER];
        let lanes = lanes(&config);
        assert_eq!(lanes.len(), 2);
        assert_eq!(lanes[0].lane, "eu-west-1 (account 111122223333)");
        assert_eq!((lanes[0].named, lanes[0].more), (4, true));
        assert_eq!(lanes[0].allowed, 60.0);
        assert_eq!(lanes[1].lane, "us-east-1 (the credentials of target 3)");
        assert_eq!((lanes[1].named, lanes[1].more), (0, true));
        assert!(lanes.iter().all(|lane| !lane.exceeded()));
        assert!(warnings(&config).is_empty());
    }
}
