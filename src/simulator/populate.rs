//! A generated world for `simulate`, `demo` and the benchmark: accounts × regions × clusters,
//! each with its Fargate profiles, managed node groups and add-ons, a share of each kind with
//! health issues, and a role per extra account.

use crate::model::{IssueCode, Kind, ResourceKey};

use super::world::{Command, Health, IssueSpec, NodegroupSettings};
use super::{DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCOUNT};

/// The shape of a generated world.
#[derive(Clone, Debug, PartialEq)]
pub struct Population {
    pub accounts: usize,
    pub regions: Vec<String>,
    pub clusters_per_region: usize,
    pub profiles_per_cluster: usize,
    /// Managed node groups per cluster (`ng-00`, `ng-01`, …).
    pub nodegroups_per_cluster: usize,
    /// Add-ons per cluster (`coredns`, `kube-proxy`, `vpc-cni`, … then `addon-05`, …).
    pub addons_per_cluster: usize,
    /// The share of profiles, from 0 to 1, that have a health issue (and so of node groups and
    /// of add-ons, each kind counted on its own).
    pub unhealthy_share: f64,
}

impl Default for Population {
    fn default() -> Self {
        Self {
            accounts: 1,
            regions: vec!["us-east-1".to_owned()],
            clusters_per_region: 3,
            profiles_per_cluster: 3,
            nodegroups_per_cluster: 2,
            addons_per_cluster: 2,
            unhealthy_share: 0.1,
        }
    }
}

/// The names and versions of the first generated add-ons.
const ADDONS: [(&str, &str); 5] = [
    ("coredns", "v1.12.1-eksbuild.2"),
    ("kube-proxy", "v1.33.0-eksbuild.2"),
    ("vpc-cni", "v1.19.5-eksbuild.1"),
    ("aws-ebs-csi-driver", "v1.44.0-eksbuild.1"),
    ("eks-pod-identity-agent", "v1.3.7-eksbuild.2"),
];

/// Spreads health issues evenly over one kind's resources, cycling through its known codes.
#[derive(Debug)]
struct Spread {
    kind: Kind,
    share: f64,
    seen: usize,
    unhealthy: usize,
}

impl Spread {
    fn new(kind: Kind, share: f64) -> Self {
        Self {
            kind,
            share: share.clamp(0.0, 1.0),
            seen: 0,
            unhealthy: 0,
        }
    }

    /// The health of the next resource: unhealthy when the count of unhealthy ones so far falls
    /// behind the share; `healthy` otherwise.
    fn next(&mut self, name: &str, healthy: Health) -> Health {
        self.seen += 1;
        let behind = (self.unhealthy as f64) < self.share * self.seen as f64;
        if !behind {
            return healthy;
        }
        self.unhealthy += 1;
        let codes = self.kind.spec().codes;
        let code = IssueCode::from_wire(codes[self.unhealthy % codes.len()]);
        Health::Issues(vec![IssueSpec {
            code: code.as_str().to_owned(),
            message: format!("simulated {} on {name}", code.as_str()),
            resource_ids: vec![format!("eni-{:08x}", self.seen)],
        }])
    }
}

/// The role that `role_arn` targets assume in the generated account `account_id`.
pub fn reader_role(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/fargate-health-reader")
}

/// The id of generated account number `index` (0 is [`DEFAULT_ACCOUNT`]).
pub fn account_id(index: usize) -> String {
    if index == 0 {
        DEFAULT_ACCOUNT.to_owned()
    } else {
        format!("{:012}", 222_233_330_000u64 + index as u64)
    }
}

impl Population {
    /// How many profiles the world will hold.
    pub fn profiles(&self) -> usize {
        self.accounts * self.regions.len() * self.clusters_per_region * self.profiles_per_cluster
    }

    /// How many node groups the world will hold.
    pub fn nodegroups(&self) -> usize {
        self.clusters() * self.nodegroups_per_cluster
    }

    /// How many add-ons the world will hold.
    pub fn addons(&self) -> usize {
        self.clusters() * self.addons_per_cluster
    }

    /// How many clusters the world will hold.
    pub fn clusters(&self) -> usize {
        self.accounts * self.regions.len() * self.clusters_per_region
    }

    /// The commands that build the world. Every account but the first is reached through its
    /// [`reader_role`]; issues are spread evenly over each kind and cycle through its known
    /// codes.
    pub fn commands(&self) -> Vec<Command> {
        let mut commands = vec![Command::AddAccessKey {
            access_key_id: DEFAULT_ACCESS_KEY_ID.to_owned(),
            account_id: DEFAULT_ACCOUNT.to_owned(),
        }];
        let mut profiles = Spread::new(Kind::FARGATE_PROFILE, self.unhealthy_share);
        let mut nodegroups = Spread::new(Kind::NODEGROUP, self.unhealthy_share);
        let mut addons = Spread::new(Kind::ADDON, self.unhealthy_share);
        for a in 0..self.accounts {
            let account = account_id(a);
            commands.push(Command::AddRole {
                role_arn: reader_role(&account),
                external_id: None,
            });
            for region in &self.regions {
                for c in 0..self.clusters_per_region {
                    let cluster = format!("cluster-{c:04}");
                    for p in 0..self.profiles_per_cluster {
                        let key = ResourceKey::fargate_profile(
                            &account,
                            region,
                            &cluster,
                            format!("profile-{p:02}"),
                        );
                        let health = profiles.next(&key.name, Health::Absent);
                        commands.push(Command::AddProfile {
                            key,
                            status: "ACTIVE".to_owned(),
                            health,
                        });
                    }
                    for n in 0..self.nodegroups_per_cluster {
                        let name = format!("ng-{n:02}");
                        let key =
                            ResourceKey::new(Kind::NODEGROUP, &account, region, &cluster, name);
                        let health = nodegroups.next(&key.name, Health::Issues(Vec::new()));
                        commands.push(Command::AddNodegroup {
                            key,
                            status: "ACTIVE".to_owned(),
                            health,
                            settings: NodegroupSettings::default(),
                        });
                    }
                    for n in 0..self.addons_per_cluster {
                        let (name, version) = match ADDONS.get(n) {
                            Some((name, version)) => ((*name).to_owned(), (*version).to_owned()),
                            None => (format!("addon-{n:02}"), "v1.0.0-eksbuild.1".to_owned()),
                        };
                        let key = ResourceKey::new(Kind::ADDON, &account, region, &cluster, name);
                        let health = addons.next(&key.name, Health::Issues(Vec::new()));
                        commands.push(Command::AddAddon {
                            key,
                            status: "ACTIVE".to_owned(),
                            health,
                            addon_version: Some(version),
                        });
                    }
                }
            }
        }
        commands
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use crate::simulator::World;

    #[test]
    fn the_world_has_the_shape_and_share_asked_for() {
        let population = Population {
            accounts: 2,
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
            clusters_per_region: 5,
            profiles_per_cluster: 10,
            nodegroups_per_cluster: 3,
            addons_per_cluster: 7,
            unhealthy_share: 0.1,
        };
        let mut world = World::default();
        for command in population.commands() {
            world.apply(command, Timestamp::from_secs(1)).unwrap();
        }
        let profiles: Vec<_> = world.profiles().collect();
        assert_eq!(profiles.len(), population.profiles());
        assert_eq!(profiles.len(), 200);
        let sick = profiles
            .iter()
            .filter(|(_, p)| matches!(&p.health, Health::Issues(i) if !i.is_empty()))
            .count();
        assert_eq!(sick, 20);
        assert_eq!(world.count(Kind::NODEGROUP), population.nodegroups());
        assert_eq!(world.count(Kind::NODEGROUP), 60);
        assert_eq!(world.count(Kind::ADDON), 140);
        let sick_groups = world
            .clusters()
            .flat_map(|(_, c)| c.nodegroups.values())
            .filter(|g| matches!(&g.health, Health::Issues(i) if !i.is_empty()))
            .count();
        assert_eq!(sick_groups, 6);
        let cluster = world
            .cluster(&ResourceKey::fargate_profile(
                account_id(1),
                "eu-west-1",
                "cluster-0004",
                "",
            ))
            .unwrap();
        let addons: Vec<&str> = cluster.addons.keys().map(String::as_str).collect();
        assert_eq!(
            addons,
            [
                "addon-05",
                "addon-06",
                "aws-ebs-csi-driver",
                "coredns",
                "eks-pod-identity-agent",
                "kube-proxy",
                "vpc-cni"
            ]
        );
        assert!(
            world
                .assume_role(&reader_role(&account_id(1)), "s", None)
                .is_ok()
        );
        assert_eq!(account_id(1), "222233330001");
    }
}
