//! Pure: which resources the targets select together. What each target's last discovery
//! selected, the target each resource is polled under (the first in config order that selects
//! it), and what a discovery changes: added, no longer selected, moved to another target,
//! selected by a second target. No I/O, no clock (only the WARN about a resource selected
//! twice is written here, for both users); the scheduler and `once` both keep theirs here.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Target;
use crate::discovery::{Discovery, Problem};
use crate::model::{Gone, Input, Kind, ResourceKey, Shard, Timestamp, Unmonitored};

/// What every target selects.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// What each target's last discovery selected; `None` before its first.
    targets: Vec<Option<BTreeSet<ResourceKey>>>,
    /// Every selected resource and the target it is polled under.
    owners: BTreeMap<ResourceKey, usize>,
}

/// What a discovery changes for one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// No target selected it before; it is polled under `target`.
    Added { key: ResourceKey, target: usize },
    /// A second target selects it too (`first` and `also` in config order); it is polled under
    /// `first`, which is the target that just selected it when `moved`.
    Duplicate {
        key: ResourceKey,
        first: usize,
        also: usize,
        moved: bool,
    },
    /// The target it was polled under no longer selects it; `target`, the first that still
    /// does, takes it.
    Retargeted { key: ResourceKey, target: usize },
    /// No target selects it any more.
    Removed { key: ResourceKey },
}

impl Change {
    /// Warns about a resource selected by a second target: it is polled under the first.
    pub fn warn_if_duplicate(&self) {
        if let Change::Duplicate {
            key, first, also, ..
        } = self
        {
            tracing::warn!(
                profile = %key,
                first_target = first + 1,
                also_target = also + 1,
                "resource selected by two targets; polled under the first"
            );
        }
    }
}

impl Selection {
    /// Nothing selected yet by any of `targets` targets.
    pub fn new(targets: usize) -> Self {
        Self {
            targets: vec![None; targets],
            owners: BTreeMap::new(),
        }
    }

    /// Whether every target's discovery reported at least once.
    pub fn complete(&self) -> bool {
        self.targets.iter().all(Option::is_some)
    }

    /// The target a resource is polled under; `None` when no target selects it.
    pub fn owner(&self, key: &ResourceKey) -> Option<usize> {
        self.owners.get(key).copied()
    }

    /// The selected resources of the cluster of `key` (same account and region).
    pub fn in_cluster(&self, key: &ResourceKey) -> Vec<ResourceKey> {
        self.owners
            .keys()
            .filter(|k| {
                k.account_id == key.account_id && k.region == key.region && k.cluster == key.cluster
            })
            .cloned()
            .collect()
    }

    /// Every selected resource and the target it is polled under, sorted by key.
    pub fn into_owners(self) -> BTreeMap<ResourceKey, usize> {
        self.owners
    }

    /// Target `index` (in `region`) discovered `discovery` in `account_id`; `None` when its
    /// account could not be told, and then it keeps what it selected (it counts as discovered
    /// all the same). The changes come in key order: first those of the resources it no longer
    /// selects, then those it selects anew.
    pub fn discovered(
        &mut self,
        index: usize,
        account_id: Option<&str>,
        region: &str,
        discovery: &Discovery,
    ) -> Vec<Change> {
        let old = self.targets[index].take().unwrap_or_default();
        let Some(account_id) = account_id else {
            self.targets[index] = Some(old);
            return Vec::new();
        };
        let new = listed(account_id, region, discovery, &old);
        let mut removed: Vec<ResourceKey> = old.difference(&new).cloned().collect();
        // A cluster ends after its node groups, add-ons, profiles and capabilities.
        removed.sort_by_key(|key| key.kind == Kind::CLUSTER);
        let added: Vec<ResourceKey> = new.difference(&old).cloned().collect();
        self.targets[index] = Some(new);
        let mut changes: Vec<Change> = removed
            .into_iter()
            .filter_map(|key| self.unselected(key))
            .collect();
        changes.extend(added.into_iter().map(|key| self.selected(key, index)));
        changes
    }

    /// A resource is gone: no target selects it until a discovery lists it again. Whether it
    /// was selected.
    pub fn remove(&mut self, key: &ResourceKey) -> bool {
        for selected in self.targets.iter_mut().flatten() {
            selected.remove(key);
        }
        self.owners.remove(key).is_some()
    }

    /// Target `index` selects a resource it did not select before.
    fn selected(&mut self, key: ResourceKey, index: usize) -> Change {
        match self.owners.get_mut(&key) {
            Some(owner) => {
                let (first, also) = ((*owner).min(index), (*owner).max(index));
                let moved = first != *owner;
                *owner = first;
                Change::Duplicate {
                    key,
                    first,
                    also,
                    moved,
                }
            }
            None => {
                self.owners.insert(key.clone(), index);
                Change::Added { key, target: index }
            }
        }
    }

    /// A target no longer selects a resource: the first target that still does takes it, or
    /// it is removed.
    fn unselected(&mut self, key: ResourceKey) -> Option<Change> {
        let still = self
            .targets
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.contains(&key)));
        match still {
            Some(target) => {
                let owner = self.owners.get_mut(&key)?;
                if *owner == target {
                    return None;
                }
                *owner = target;
                Some(Change::Retargeted { key, target })
            }
            None => {
                self.owners.remove(&key)?;
                Some(Change::Removed { key })
            }
        }
    }
}

/// What a target selects after a discovery: what it listed, and what it selected before in
/// the clusters whose listing failed (all of them when `ListClusters` failed), as it was.
fn listed(
    account_id: &str,
    region: &str,
    discovery: &Discovery,
    before: &BTreeSet<ResourceKey>,
) -> BTreeSet<ResourceKey> {
    let mut kept = BTreeSet::new();
    for problem in &discovery.problems {
        if let Problem::Failed { cluster, error } = problem {
            // A failed list of one kind keeps that kind's resources of the cluster.
            let unlisted = |k: &ResourceKey| {
                cluster
                    .as_ref()
                    .is_none_or(|c| *c == k.cluster && k.kind.spec().list == error.operation)
            };
            kept.extend(before.iter().filter(|k| unlisted(k)).cloned());
        }
    }
    discovery
        .resources
        .iter()
        .map(|(kind, cluster, name)| {
            ResourceKey::new(*kind, account_id, region, cluster.as_str(), name.as_str())
        })
        .chain(kept)
        .collect()
}

/// How a resource ends that the state file knew and no discovery selected again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The listing that covers it did not show it: it was deleted meanwhile.
    Gone,
    /// No target covers it any more.
    Unmonitored,
}

impl Ended {
    /// The diff's input for `key` ending this way at `observed_at`.
    pub fn input(self, key: ResourceKey, observed_at: Timestamp) -> Input {
        match self {
            Ended::Gone => Input::Gone(Gone { key, observed_at }),
            Ended::Unmonitored => Input::Unmonitored(Unmonitored { key, observed_at }),
        }
    }
}

/// How a resource the state file knew and no discovery selected again ends: gone when
/// `listed` (a target that just listed everything it selects, with its account) covers it,
/// unmonitored when none of `targets` covers it in this `shard`; `None` while one still may
/// select it.
pub fn restored_end<'a>(
    key: &ResourceKey,
    listed: Option<(&str, &Target)>,
    targets: impl IntoIterator<Item = &'a Target>,
    shard: Shard,
) -> Option<Ended> {
    let covered = |target: &Target| covers(target, shard, key);
    if listed.is_some_and(|(account_id, target)| key.account_id == account_id && covered(target)) {
        Some(Ended::Gone)
    } else if !targets.into_iter().any(covered) {
        Some(Ended::Unmonitored)
    } else {
        None
    }
}

/// Whether a target's patterns select a resource (its account aside) in this instance's
/// shard.
pub fn covers(target: &Target, shard: Shard, key: &ResourceKey) -> bool {
    shard.owns(&key.account_id, &key.region, &key.cluster)
        && target.region == key.region
        && target.cluster.matches(&key.cluster)
        && target.selects(key.kind, &key.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pattern;
    use crate::eks::CallError;
    use crate::model::{ErrorKind, Operation};

    const ACCOUNT: &str = "111122223333";
    const REGION: &str = "us-east-1";

    fn key(cluster: &str, profile: &str) -> ResourceKey {
        ResourceKey::fargate_profile(ACCOUNT, REGION, cluster, profile)
    }

    fn found(pairs: &[(&str, &str)]) -> Discovery {
        Discovery {
            resources: pairs
                .iter()
                .map(|(c, p)| (Kind::FARGATE_PROFILE, c.to_string(), p.to_string()))
                .collect(),
            problems: Vec::new(),
        }
    }

    fn failed(cluster: Option<&str>) -> Problem {
        Problem::Failed {
            cluster: cluster.map(str::to_owned),
            error: CallError::new(Operation::ListFargateProfiles, ErrorKind::Server, "boom"),
        }
    }

    fn discover(selection: &mut Selection, index: usize, discovery: Discovery) -> Vec<Change> {
        selection.discovered(index, Some(ACCOUNT), REGION, &discovery)
    }

    fn target(cluster: &str, profiles: &[&str]) -> Target {
        Target {
            profiles: profiles
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect(),
            ..Target::new(REGION, Pattern::parse(cluster).unwrap())
        }
    }

    #[test]
    fn what_a_target_lists_first_is_added_under_it_and_what_it_stops_listing_is_removed() {
        let mut selection = Selection::new(1);
        assert!(!selection.complete());
        let changes = discover(&mut selection, 0, found(&[("prod", "b"), ("prod", "a")]));
        assert_eq!(
            changes,
            [
                Change::Added {
                    key: key("prod", "a"),
                    target: 0
                },
                Change::Added {
                    key: key("prod", "b"),
                    target: 0
                },
            ]
        );
        assert!(selection.complete());
        assert_eq!(selection.owner(&key("prod", "a")), Some(0));

        assert_eq!(
            discover(&mut selection, 0, found(&[("prod", "a")])),
            [Change::Removed {
                key: key("prod", "b")
            }]
        );
        assert_eq!(selection.owner(&key("prod", "b")), None);
        assert_eq!(discover(&mut selection, 0, found(&[("prod", "a")])), []);
    }

    #[test]
    fn a_resource_two_targets_select_is_polled_under_the_first_in_config_order() {
        let mut selection = Selection::new(2);
        discover(&mut selection, 0, found(&[("prod", "a")]));
        assert_eq!(
            discover(&mut selection, 1, found(&[("prod", "a")])),
            [Change::Duplicate {
                key: key("prod", "a"),
                first: 0,
                also: 1,
                moved: false
            }]
        );
        assert_eq!(selection.owner(&key("prod", "a")), Some(0));

        // The second target found it first: the first takes it when it selects it too.
        let mut selection = Selection::new(2);
        discover(&mut selection, 1, found(&[("prod", "a")]));
        assert_eq!(selection.owner(&key("prod", "a")), Some(1));
        assert_eq!(
            discover(&mut selection, 0, found(&[("prod", "a")])),
            [Change::Duplicate {
                key: key("prod", "a"),
                first: 0,
                also: 1,
                moved: true
            }]
        );
        assert_eq!(selection.owner(&key("prod", "a")), Some(0));
        assert_eq!(
            selection.into_owners(),
            BTreeMap::from([(key("prod", "a"), 0)])
        );
    }

    #[test]
    fn a_resource_its_target_drops_moves_to_the_next_that_selects_it() {
        let mut selection = Selection::new(3);
        discover(&mut selection, 0, found(&[("prod", "a")]));
        discover(&mut selection, 1, found(&[("prod", "a")]));
        discover(&mut selection, 2, found(&[("prod", "a")]));
        assert_eq!(
            discover(&mut selection, 0, found(&[])),
            [Change::Retargeted {
                key: key("prod", "a"),
                target: 1
            }]
        );
        assert_eq!(selection.owner(&key("prod", "a")), Some(1));
        // Dropped by one that does not poll it: nothing changes.
        assert_eq!(discover(&mut selection, 2, found(&[])), []);
        assert_eq!(
            discover(&mut selection, 1, found(&[])),
            [Change::Removed {
                key: key("prod", "a")
            }]
        );
    }

    #[test]
    fn what_a_failed_listing_did_not_show_stays_selected() {
        let mut selection = Selection::new(1);
        discover(
            &mut selection,
            0,
            found(&[("prod", "a"), ("stage", "a"), ("stage", "b")]),
        );
        let mut discovery = found(&[("prod", "a")]);
        discovery.problems.push(failed(Some("stage")));
        assert_eq!(discover(&mut selection, 0, discovery), []);
        assert_eq!(selection.owner(&key("stage", "b")), Some(0));

        let mut discovery = found(&[]);
        discovery.problems.push(failed(None));
        assert_eq!(discover(&mut selection, 0, discovery), []);

        // An account that could not be told keeps everything, and counts as discovered.
        assert_eq!(selection.discovered(0, None, REGION, &found(&[])), []);
        assert_eq!(selection.in_cluster(&key("stage", "x")).len(), 2);
        let mut fresh = Selection::new(1);
        assert_eq!(fresh.discovered(0, None, REGION, &found(&[])), []);
        assert!(fresh.complete());
    }

    #[test]
    fn a_removed_resource_leaves_every_target_until_listed_again() {
        let mut selection = Selection::new(2);
        discover(&mut selection, 0, found(&[("prod", "a"), ("prod", "b")]));
        discover(&mut selection, 1, found(&[("prod", "a")]));
        assert!(selection.remove(&key("prod", "a")));
        assert!(!selection.remove(&key("prod", "a")));
        assert_eq!(selection.in_cluster(&key("prod", "")), [key("prod", "b")]);
        // No target selects it any more, so no change says so again...
        assert_eq!(discover(&mut selection, 1, found(&[])), []);
        // ...and a listing that shows it again adds it.
        assert_eq!(
            discover(&mut selection, 0, found(&[("prod", "a"), ("prod", "b")])),
            [Change::Added {
                key: key("prod", "a"),
                target: 0
            }]
        );
    }

    #[test]
    fn a_target_covers_what_its_patterns_match_in_its_region_and_this_shard() {
        let target = target("prod-*", &["web", "j*"]);
        assert!(covers(&target, Shard::ALL, &key("prod-a", "jobs")));
        assert!(!covers(&target, Shard::ALL, &key("prod-a", "default")));
        assert!(!covers(&target, Shard::ALL, &key("stage", "web")));
        let elsewhere = ResourceKey::fargate_profile(ACCOUNT, "eu-west-1", "prod-a", "web");
        assert!(!covers(&target, Shard::ALL, &elsewhere));

        // Of two shards, exactly one covers each cluster.
        let shards = [0, 1].map(|index| Shard { index, count: 2 });
        let owned_by = |cluster: &str| {
            let key = key(cluster, "web");
            shards.map(|shard| covers(&target, shard, &key))
        };
        let clusters = (0..8).map(|i| format!("prod-{i}"));
        let split: Vec<[bool; 2]> = clusters.map(|c| owned_by(&c)).collect();
        assert!(split.iter().all(|[a, b]| a != b), "{split:?}");
        assert!(
            split.iter().any(|[a, _]| !a),
            "some cluster is not this shard's"
        );
    }

    #[test]
    fn a_restored_resource_ends_gone_when_listed_away_and_unmonitored_when_no_target_covers_it() {
        let (prod, stage) = (target("prod", &["*"]), target("stage", &["web"]));
        let targets = [&prod, &stage];
        let end = |key: &ResourceKey, listed| restored_end(key, listed, targets, Shard::ALL);
        let web = key("stage", "web");
        assert_eq!(end(&web, None), None, "a target may still select it");
        assert_eq!(end(&web, Some((ACCOUNT, &stage))), Some(Ended::Gone));
        assert_eq!(
            end(&web, Some((ACCOUNT, &prod))),
            None,
            "not that listing's"
        );
        assert_eq!(
            end(&web, Some(("999999999999", &stage))),
            None,
            "another account's"
        );
        assert_eq!(end(&key("stage", "jobs"), None), Some(Ended::Unmonitored));

        // A cluster of another shard is that shard's to end.
        let other = [0, 1]
            .map(|index| Shard { index, count: 2 })
            .into_iter()
            .find(|shard| !shard.owns(ACCOUNT, REGION, "prod"))
            .unwrap();
        let api = key("prod", "api");
        assert_eq!(
            restored_end(&api, Some((ACCOUNT, &prod)), targets, other),
            Some(Ended::Unmonitored)
        );
    }
}
