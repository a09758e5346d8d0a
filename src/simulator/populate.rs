//! A generated world for `simulate`, `demo` and the benchmark: accounts × regions × clusters ×
//! profiles, a share of them with health issues, and a role per extra account.

use crate::model::{IssueCode, Kind, ResourceKey};

use super::world::{Command, Health, IssueSpec};
use super::{DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCOUNT};

/// The shape of a generated world.
#[derive(Clone, Debug, PartialEq)]
pub struct Population {
    pub accounts: usize,
    pub regions: Vec<String>,
    pub clusters_per_region: usize,
    pub profiles_per_cluster: usize,
    /// The share of profiles, from 0 to 1, that have a health issue.
    pub unhealthy_share: f64,
}

impl Default for Population {
    fn default() -> Self {
        Self {
            accounts: 1,
            regions: vec!["us-east-1".to_owned()],
            clusters_per_region: 3,
            profiles_per_cluster: 3,
            unhealthy_share: 0.1,
        }
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

    /// The commands that build the world. Every account but the first is reached through its
    /// [`reader_role`]; issues are spread evenly and cycle through the known codes.
    pub fn commands(&self) -> Vec<Command> {
        let mut commands = vec![Command::AddAccessKey {
            access_key_id: DEFAULT_ACCESS_KEY_ID.to_owned(),
            account_id: DEFAULT_ACCOUNT.to_owned(),
        }];
        let share = self.unhealthy_share.clamp(0.0, 1.0);
        let mut index = 0usize;
        let mut unhealthy = 0usize;
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
                        index += 1;
                        // Spread evenly: profile n is unhealthy when the count of unhealthy
                        // ones so far falls behind the share.
                        let health = if (unhealthy as f64) < share * index as f64 {
                            unhealthy += 1;
                            let codes = Kind::FARGATE_PROFILE.spec().codes;
                            let code = IssueCode::from_wire(codes[unhealthy % codes.len()]);
                            Health::Issues(vec![IssueSpec {
                                code: code.as_str().to_owned(),
                                message: format!("simulated {} on {}", code.as_str(), key.name),
                                resource_ids: vec![format!("eni-{index:08x}")],
                            }])
                        } else {
                            Health::Absent
                        };
                        commands.push(Command::AddProfile {
                            key,
                            status: "ACTIVE".to_owned(),
                            health,
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
        assert!(
            world
                .assume_role(&reader_role(&account_id(1)), "s", None)
                .is_ok()
        );
        assert_eq!(account_id(1), "222233330001");
    }
}
