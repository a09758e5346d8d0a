//! The simulated AWS: accounts and their access keys, IAM roles, clusters with their Fargate
//! profiles, node groups, add-ons and capabilities, the faults to inject and the request log. Pure data: the HTTP layer in [`super::server`]
//! turns requests into calls on [`World`] and its answers into the wire formats.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::model::{Kind, Operation, ResourceKey, Timestamp};

/// Whether an operation is served by STS (Query/XML) rather than EKS (REST-JSON).
pub const fn is_sts(operation: Operation) -> bool {
    matches!(
        operation,
        Operation::GetCallerIdentity | Operation::AssumeRole
    )
}

/// One entry of `health.issues`, with any code: unknown codes are served verbatim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueSpec {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub resource_ids: Vec<String>,
}

impl IssueSpec {
    pub fn new(code: &str, message: &str, resource_ids: &[&str]) -> Self {
        Self {
            code: code.to_owned(),
            message: message.to_owned(),
            resource_ids: resource_ids.iter().map(|id| (*id).to_owned()).collect(),
        }
    }
}

/// What `health` looks like in a describe response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "issues")]
pub enum Health {
    /// No `health` member at all, as for a profile that never had an issue.
    #[default]
    Absent,
    /// `"health": {"issues": [...]}`, possibly empty.
    Issues(Vec<IssueSpec>),
}

/// One simulated Fargate profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub arn: String,
    /// Seconds since the epoch, with milliseconds, as EKS serves `createdAt`.
    pub created_at: f64,
    /// Any string: unknown statuses are served verbatim.
    pub status: String,
    pub pod_execution_role_arn: String,
    pub subnets: Vec<String>,
    pub namespace: String,
    pub health: Health,
}

/// A node group's `scalingConfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaling {
    pub min_size: i32,
    pub max_size: i32,
    pub desired_size: i32,
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            min_size: 1,
            max_size: 3,
            desired_size: 2,
        }
    }
}

/// What a node group is besides its status and health; unset fields get generated values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodegroupSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_role: Option<String>,
    /// `ON_DEMAND`, `SPOT`, `CAPACITY_BLOCK` or any string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
}

/// One simulated managed node group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nodegroup {
    pub name: String,
    pub arn: String,
    pub created_at: f64,
    pub status: String,
    pub node_role: String,
    pub capacity_type: String,
    pub release_version: String,
    pub scaling: Scaling,
    pub health: Health,
}

/// One simulated add-on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Addon {
    pub name: String,
    pub arn: String,
    pub created_at: f64,
    pub status: String,
    pub addon_version: String,
    pub health: Health,
}

/// One simulated capability; its issues are served with code and message only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capability {
    pub name: String,
    pub arn: String,
    pub created_at: f64,
    pub status: String,
    /// `ACK`, `KRO`, `ARGOCD` or any string.
    pub capability_type: String,
    pub role_arn: String,
    pub health: Health,
}

/// One simulated cluster: its own status, health and versions, and its resources by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub arn: String,
    pub created_at: f64,
    pub status: String,
    pub version: String,
    pub platform_version: String,
    pub health: Health,
    pub profiles: BTreeMap<String, Profile>,
    pub nodegroups: BTreeMap<String, Nodegroup>,
    pub addons: BTreeMap<String, Addon>,
    pub capabilities: BTreeMap<String, Capability>,
}

impl Cluster {
    fn new(account_id: &str, region: &str, name: &str, now: Timestamp) -> Self {
        Self {
            name: name.to_owned(),
            // A cluster's ARN names it only: a re-created cluster has the same ARN.
            arn: format!("arn:aws:eks:{region}:{account_id}:cluster/{name}"),
            created_at: now.as_secs_f64(),
            status: default_status(),
            version: DEFAULT_VERSION.to_owned(),
            platform_version: DEFAULT_PLATFORM_VERSION.to_owned(),
            health: Health::Absent,
            profiles: BTreeMap::new(),
            nodegroups: BTreeMap::new(),
            addons: BTreeMap::new(),
            capabilities: BTreeMap::new(),
        }
    }

    /// The names of this kind's resources, sorted.
    fn names(&self, kind: Kind) -> Vec<&str> {
        fn keys<V>(map: &BTreeMap<String, V>) -> Vec<&str> {
            map.keys().map(String::as_str).collect()
        }
        match kind.name() {
            "nodegroup" => keys(&self.nodegroups),
            "addon" => keys(&self.addons),
            "capability" => keys(&self.capabilities),
            _ => keys(&self.profiles),
        }
    }
}

/// Every kind the simulator speaks (its own list: a test may serve kinds the monitor is not told to watch).
pub const KINDS: [Kind; 5] = [
    Kind::FARGATE_PROFILE,
    Kind::NODEGROUP,
    Kind::ADDON,
    Kind::CLUSTER,
    Kind::CAPABILITY,
];

/// The Kubernetes version of new clusters.
const DEFAULT_VERSION: &str = "1.33";
/// The EKS platform version of new clusters.
const DEFAULT_PLATFORM_VERSION: &str = "eks.9";

/// Where a fault applies; an unset field matches everything. A fault scoped to a profile (or to
/// a `name`) applies to describing it only; one scoped to a cluster also to listing it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The described resource of any kind (for `DescribeCluster`, the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only these operations; empty means every operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
}

impl Scope {
    /// Every request.
    pub fn all() -> Self {
        Self::default()
    }

    /// Requests about one profile.
    pub fn profile(key: &ResourceKey) -> Self {
        Self {
            account_id: Some(key.account_id.clone()),
            region: Some(key.region.clone()),
            cluster: Some(key.cluster.clone()),
            profile: Some(key.name.clone()),
            name: None,
            operations: Vec::new(),
        }
    }

    /// Requests that describe one resource of any kind.
    pub fn resource(key: &ResourceKey) -> Self {
        Self {
            account_id: Some(key.account_id.clone()),
            region: Some(key.region.clone()),
            cluster: Some(key.cluster.clone()),
            profile: None,
            name: Some(key.name.clone()),
            operations: vec![key.kind.spec().describe],
        }
    }

    /// Only these operations.
    pub fn operations(mut self, operations: &[Operation]) -> Self {
        self.operations = operations.to_vec();
        self
    }

    fn matches(&self, request: &Request) -> bool {
        fn field(want: &Option<String>, have: Option<&str>) -> bool {
            want.as_deref().is_none_or(|want| Some(want) == have)
        }
        (self.operations.is_empty() || self.operations.contains(&request.operation))
            && field(&self.account_id, request.account_id.as_deref())
            && field(&self.region, request.region.as_deref())
            && field(&self.cluster, request.cluster.as_deref())
            && field(&self.profile, request.profile.as_deref())
            && field(&self.name, request.name.as_deref())
    }
}

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum FaultKind {
    /// 429 `ThrottlingException` (STS: 400 `Throttling`).
    Throttle,
    /// 500 `ServerException` (STS: 500 `InternalFailure`).
    ServerError,
    /// 403 `AccessDeniedException` (STS: 403 `AccessDenied`).
    AccessDenied,
    /// The answer is delayed by this long, then served normally (or as another fault says).
    Delay { millis: u64 },
    /// 200 with a body that is not the operation's document.
    Malformed,
    /// 429 `ThrottlingException` for every matching request beyond this many in any one
    /// second (the accepted ones count), as EKS's own rate limit does.
    ThrottleAbove { per_second: u32 },
}

/// The faults that answer instead of the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Throttle,
    ServerError,
    AccessDenied,
    Malformed,
}

impl FaultKind {
    /// The answer this fault replaces the operation's with; `None` for a delay.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            FaultKind::Throttle => Some(Failure::Throttle),
            FaultKind::ServerError => Some(Failure::ServerError),
            FaultKind::AccessDenied => Some(Failure::AccessDenied),
            FaultKind::Malformed => Some(Failure::Malformed),
            FaultKind::Delay { .. } | FaultKind::ThrottleAbove { .. } => None,
        }
    }
}

/// A fault to inject into matching requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub scope: Scope,
    pub kind: FaultKind,
    /// How many requests it hits before it disappears; unset means until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
    /// For `throttle_above`: when the requests it let through arrived (milliseconds).
    #[serde(skip)]
    pub accepted: VecDeque<i64>,
}

/// A change to the simulated world: the same commands come from Rust and from the JSON control
/// API (`POST /v1/commands`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Command {
    /// Requests signed with this access key id act in this account.
    AddAccessKey {
        access_key_id: String,
        account_id: String,
    },
    /// A role that `AssumeRole` grants; its account is the one in its ARN. With `external_id`,
    /// only callers that pass the same external id get credentials.
    AddRole {
        role_arn: String,
        #[serde(default)]
        external_id: Option<String>,
    },
    /// Adds a cluster when it is missing (`ACTIVE`, no health, the default versions); the
    /// settings given are set either way.
    AddCluster {
        account_id: String,
        region: String,
        cluster: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        health: Option<Health>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform_version: Option<String>,
    },
    RemoveCluster {
        account_id: String,
        region: String,
        cluster: String,
    },
    /// Adds a profile (and its cluster when missing), replacing one of the same name.
    AddProfile {
        #[serde(flatten, with = "profile_ref")]
        key: ResourceKey,
        #[serde(default = "default_status")]
        status: String,
        #[serde(default)]
        health: Health,
    },
    DeleteProfile {
        #[serde(flatten, with = "profile_ref")]
        key: ResourceKey,
    },
    /// Deletes a profile and creates it again with the same name: a new ARN and `createdAt`.
    RecreateProfile {
        #[serde(flatten, with = "profile_ref")]
        key: ResourceKey,
    },
    SetStatus {
        #[serde(flatten, with = "profile_ref")]
        key: ResourceKey,
        status: String,
    },
    SetHealth {
        #[serde(flatten, with = "profile_ref")]
        key: ResourceKey,
        health: Health,
    },
    /// Adds a managed node group (and its cluster when missing), replacing one of the same
    /// name.
    AddNodegroup {
        #[serde(flatten, with = "nodegroup_ref")]
        key: ResourceKey,
        #[serde(default = "default_status")]
        status: String,
        #[serde(default)]
        health: Health,
        #[serde(flatten)]
        settings: NodegroupSettings,
    },
    /// Adds an add-on (and its cluster when missing), replacing one of the same name.
    AddAddon {
        #[serde(flatten, with = "addon_ref")]
        key: ResourceKey,
        #[serde(default = "default_status")]
        status: String,
        #[serde(default)]
        health: Health,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addon_version: Option<String>,
    },
    /// Adds a capability (and its cluster when missing), replacing one of the same name.
    AddCapability {
        #[serde(flatten, with = "capability_ref")]
        key: ResourceKey,
        #[serde(default = "default_status")]
        status: String,
        #[serde(default)]
        health: Health,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capability_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_arn: Option<String>,
    },
    /// Deletes a resource of any kind; a cluster goes with everything in it.
    DeleteResource {
        #[serde(flatten, with = "resource_ref")]
        key: ResourceKey,
    },
    /// Deletes a resource of any kind and creates it again with the same name and settings:
    /// `ACTIVE`, no health, a later `createdAt` and (but for a cluster, whose ARN is its name)
    /// a new ARN. A re-created cluster is empty.
    RecreateResource {
        #[serde(flatten, with = "resource_ref")]
        key: ResourceKey,
    },
    SetResourceStatus {
        #[serde(flatten, with = "resource_ref")]
        key: ResourceKey,
        status: String,
    },
    SetResourceHealth {
        #[serde(flatten, with = "resource_ref")]
        key: ResourceKey,
        health: Health,
    },
    /// Sets a cluster's Kubernetes version, a node group's release version or an add-on's
    /// version.
    SetVersion {
        #[serde(flatten, with = "resource_ref")]
        key: ResourceKey,
        version: String,
    },
    /// Sets a node group's `scalingConfig`.
    SetScaling {
        #[serde(flatten, with = "nodegroup_ref")]
        key: ResourceKey,
        #[serde(flatten)]
        scaling: Scaling,
    },
    AddFault {
        fault: Fault,
    },
    ClearFaults,
    /// Caps the items per page of list responses (EKS may return fewer than `maxResults`).
    SetPageLimit {
        limit: usize,
    },
    /// Empties the request log and restarts the count of requests in flight at once.
    ClearRequestLog,
    /// Sets a profile's ARN to any value (to rebuild a world that a state file describes).
    SetArn {
        #[serde(flatten, with = "profile_ref")]
        key: ResourceKey,
        arn: String,
    },
    /// Sets a profile's `createdAt` (seconds since the epoch) to any value, in range or not.
    SetCreatedAt {
        #[serde(flatten, with = "profile_ref")]
        key: ResourceKey,
        created_at: f64,
    },
    /// How long credentials from `AssumeRole` are valid (default 3600 s); a short lifetime
    /// makes the SDK assume the role again on its next call.
    SetCredentialLifetime {
        seconds: u64,
    },
}

/// A resource as the control API names it: `account_id`, `region`, `cluster` and the name under
/// the kind's own field (`profile`, `nodegroup`, `addon`, `capability`).
macro_rules! named_ref {
    ($module:ident, $field:ident, $kind:ident) => {
        mod $module {
            use serde::{Deserialize, Deserializer, Serialize, Serializer};

            use crate::model::{Kind, ResourceKey};

            #[derive(Serialize, Deserialize)]
            struct Ref {
                account_id: String,
                region: String,
                cluster: String,
                $field: String,
            }

            pub fn serialize<S: Serializer>(
                key: &ResourceKey,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                Ref {
                    account_id: key.account_id.clone(),
                    region: key.region.clone(),
                    cluster: key.cluster.clone(),
                    $field: key.name.clone(),
                }
                .serialize(serializer)
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(
                deserializer: D,
            ) -> Result<ResourceKey, D::Error> {
                let r = Ref::deserialize(deserializer)?;
                Ok(ResourceKey::new(
                    Kind::$kind,
                    r.account_id,
                    r.region,
                    r.cluster,
                    r.$field,
                ))
            }
        }
    };
}

named_ref!(profile_ref, profile, FARGATE_PROFILE);
named_ref!(nodegroup_ref, nodegroup, NODEGROUP);
named_ref!(addon_ref, addon, ADDON);
named_ref!(capability_ref, capability, CAPABILITY);

/// A resource of any kind: `kind`, `account_id`, `region`, `cluster` and `name` (for a cluster,
/// `name` may be left out).
mod resource_ref {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::model::{Kind, ResourceKey};

    #[derive(Serialize, Deserialize)]
    struct Ref {
        kind: String,
        account_id: String,
        region: String,
        cluster: String,
        #[serde(default)]
        name: Option<String>,
    }

    pub fn serialize<S: Serializer>(key: &ResourceKey, serializer: S) -> Result<S::Ok, S::Error> {
        Ref {
            kind: key.kind.name().to_owned(),
            account_id: key.account_id.clone(),
            region: key.region.clone(),
            cluster: key.cluster.clone(),
            name: Some(key.name.clone()),
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<ResourceKey, D::Error> {
        let r = Ref::deserialize(deserializer)?;
        let kind = super::KINDS
            .into_iter()
            .find(|kind| kind.name() == r.kind)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("unknown resource kind {:?}", r.kind))
            })?;
        let name = match (r.name, kind == Kind::CLUSTER) {
            // A cluster's name is the cluster's.
            (_, true) => r.cluster.clone(),
            (Some(name), false) => name,
            (None, false) => return Err(serde::de::Error::missing_field("name")),
        };
        Ok(ResourceKey::new(
            kind,
            r.account_id,
            r.region,
            r.cluster,
            name,
        ))
    }
}

fn default_status() -> String {
    "ACTIVE".to_owned()
}

/// Why a command could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no such profile: {0}")]
    NoSuchProfile(ResourceKey),
    #[error("no such resource: {0}")]
    NoSuchResource(ResourceKey),
    #[error("a {0} has no version to set")]
    NoVersion(Kind),
    #[error("no such cluster: {account_id}/{region}/{cluster}")]
    NoSuchCluster {
        account_id: String,
        region: String,
        cluster: String,
    },
    #[error("not an IAM role ARN: {0}")]
    BadRoleArn(String),
    #[error("page limit must be at least 1")]
    BadPageLimit,
}

/// One request as the HTTP layer understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub operation: Operation,
    /// The access key id from the SigV4 `Authorization` header.
    pub access_key_id: Option<String>,
    /// The account that key belongs to, filled in by [`World::authenticate`].
    pub account_id: Option<String>,
    /// The region from the SigV4 credential scope.
    pub region: Option<String>,
    pub cluster: Option<String>,
    /// The described Fargate profile.
    pub profile: Option<String>,
    /// The described resource of any kind (for `DescribeCluster`, the cluster).
    pub name: Option<String>,
}

/// One line of the request log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub operation: Operation,
    pub account_id: Option<String>,
    pub access_key_id: Option<String>,
    pub region: Option<String>,
    pub cluster: Option<String>,
    pub profile: Option<String>,
    /// The described resource of any kind (for `DescribeCluster`, the cluster).
    #[serde(default)]
    pub name: Option<String>,
    /// The HTTP status served.
    pub status: u16,
    pub at: Timestamp,
}

/// Temporary credentials handed out by `AssumeRole`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumedCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub assumed_role_arn: String,
    pub assumed_role_id: String,
}

type ClusterKey = (String, String, String);

/// The most recent requests kept in the log.
const REQUEST_LOG_LIMIT: usize = 200_000;

/// Everything the simulator knows.
#[derive(Debug)]
pub struct World {
    access_keys: HashMap<String, String>,
    roles: BTreeMap<String, Option<String>>,
    clusters: BTreeMap<ClusterKey, Cluster>,
    faults: Vec<Fault>,
    page_limit: usize,
    log: VecDeque<LoggedRequest>,
    serial: u64,
    in_flight: usize,
    max_in_flight: usize,
    credential_lifetime: u64,
}

impl Default for World {
    fn default() -> Self {
        Self {
            access_keys: HashMap::new(),
            roles: BTreeMap::new(),
            clusters: BTreeMap::new(),
            faults: Vec::new(),
            page_limit: 100,
            log: VecDeque::new(),
            serial: 0,
            in_flight: 0,
            max_in_flight: 0,
            credential_lifetime: 3600,
        }
    }
}

/// A page of names and the token for the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub names: Vec<String>,
    pub next_token: Option<String>,
}

/// Why a list or describe has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFound(String),
    InvalidParameter(String),
}

impl World {
    /// Applies one command.
    pub fn apply(&mut self, command: Command, now: Timestamp) -> Result<(), CommandError> {
        match command {
            Command::AddAccessKey {
                access_key_id,
                account_id,
            } => {
                self.access_keys.insert(access_key_id, account_id);
            }
            Command::AddRole {
                role_arn,
                external_id,
            } => {
                role_account(&role_arn)
                    .ok_or_else(|| CommandError::BadRoleArn(role_arn.clone()))?;
                self.roles.insert(role_arn, external_id);
            }
            Command::AddCluster {
                account_id,
                region,
                cluster,
                status,
                health,
                version,
                platform_version,
            } => {
                let key =
                    ResourceKey::new(Kind::CLUSTER, account_id, region, cluster.clone(), cluster);
                let cluster = self.cluster_entry(&key, now);
                if let Some(status) = status {
                    cluster.status = status;
                }
                if let Some(health) = health {
                    cluster.health = health;
                }
                if let Some(version) = version {
                    cluster.version = version;
                }
                if let Some(platform_version) = platform_version {
                    cluster.platform_version = platform_version;
                }
            }
            Command::RemoveCluster {
                account_id,
                region,
                cluster,
            } => {
                self.clusters
                    .remove(&(account_id.clone(), region.clone(), cluster.clone()))
                    .ok_or(CommandError::NoSuchCluster {
                        account_id,
                        region,
                        cluster,
                    })?;
            }
            Command::AddProfile {
                key,
                status,
                health,
            } => {
                let profile = self.new_profile(&key, status, health, now);
                self.cluster_entry(&key, now)
                    .profiles
                    .insert(key.name, profile);
            }
            Command::DeleteProfile { key } => self.delete(&key)?,
            Command::RecreateProfile { key } => self.recreate(&key, now)?,
            Command::SetStatus { key, status } => self.profile_mut(&key)?.status = status,
            Command::SetHealth { key, health } => self.profile_mut(&key)?.health = health,
            Command::AddNodegroup {
                key,
                status,
                health,
                settings,
            } => {
                let id = self.fresh_id(now);
                let cluster = self.cluster_entry(&key, now);
                let group = Nodegroup {
                    name: key.name.clone(),
                    arn: resource_arn(&key, "nodegroup", &id),
                    created_at: now.as_secs_f64(),
                    status,
                    node_role: settings.node_role.unwrap_or_else(|| {
                        format!("arn:aws:iam::{}:role/{}-node", key.account_id, key.cluster)
                    }),
                    capacity_type: settings
                        .capacity_type
                        .unwrap_or_else(|| "ON_DEMAND".to_owned()),
                    release_version: settings
                        .release_version
                        .unwrap_or_else(|| format!("{}.0-20250704", cluster.version)),
                    scaling: settings.scaling.unwrap_or_default(),
                    health,
                };
                cluster.nodegroups.insert(key.name, group);
            }
            Command::AddAddon {
                key,
                status,
                health,
                addon_version,
            } => {
                let id = self.fresh_id(now);
                let addon = Addon {
                    name: key.name.clone(),
                    arn: resource_arn(&key, "addon", &id),
                    created_at: now.as_secs_f64(),
                    status,
                    addon_version: addon_version.unwrap_or_else(|| "v1.0.0-eksbuild.1".to_owned()),
                    health,
                };
                self.cluster_entry(&key, now).addons.insert(key.name, addon);
            }
            Command::AddCapability {
                key,
                status,
                health,
                capability_type,
                role_arn,
            } => {
                let id = self.fresh_id(now);
                let capability = Capability {
                    name: key.name.clone(),
                    arn: resource_arn(&key, "capability", &id),
                    created_at: now.as_secs_f64(),
                    status,
                    capability_type: capability_type.unwrap_or_else(|| "ACK".to_owned()),
                    role_arn: role_arn.unwrap_or_else(|| {
                        format!(
                            "arn:aws:iam::{}:role/{}-capability",
                            key.account_id, key.cluster
                        )
                    }),
                    health,
                };
                self.cluster_entry(&key, now)
                    .capabilities
                    .insert(key.name, capability);
            }
            Command::DeleteResource { key } => self.delete(&key)?,
            Command::RecreateResource { key } => self.recreate(&key, now)?,
            Command::SetResourceStatus { key, status } => *self.state_mut(&key)?.0 = status,
            Command::SetResourceHealth { key, health } => *self.state_mut(&key)?.1 = health,
            Command::SetVersion { key, version } => {
                let missing = missing(&key);
                let cluster = self.cluster_of(&key)?;
                let slot = match key.kind.name() {
                    "cluster" => Some(&mut cluster.version),
                    "nodegroup" => cluster
                        .nodegroups
                        .get_mut(&key.name)
                        .map(|group| &mut group.release_version),
                    "addon" => cluster
                        .addons
                        .get_mut(&key.name)
                        .map(|addon| &mut addon.addon_version),
                    _ => return Err(CommandError::NoVersion(key.kind)),
                };
                *slot.ok_or(missing)? = version;
            }
            Command::SetScaling { key, scaling } => {
                let missing = missing(&key);
                self.cluster_of(&key)?
                    .nodegroups
                    .get_mut(&key.name)
                    .ok_or(missing)?
                    .scaling = scaling;
            }
            Command::AddFault { fault } => self.faults.push(fault),
            Command::ClearFaults => self.faults.clear(),
            Command::SetPageLimit { limit } => {
                if limit == 0 {
                    return Err(CommandError::BadPageLimit);
                }
                self.page_limit = limit;
            }
            Command::ClearRequestLog => {
                self.log.clear();
                self.max_in_flight = self.in_flight;
            }
            Command::SetArn { key, arn } => self.profile_mut(&key)?.arn = arn,
            Command::SetCreatedAt { key, created_at } => {
                self.profile_mut(&key)?.created_at = created_at;
            }
            Command::SetCredentialLifetime { seconds } => self.credential_lifetime = seconds,
        }
        Ok(())
    }

    /// A new id for an ARN, unique in this world: `8-4-4-4-12` hex digits.
    fn fresh_id(&mut self, now: Timestamp) -> String {
        self.serial += 1;
        let serial = self.serial;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            serial,
            now.as_millis() & 0xffff,
            serial & 0xfff,
            (serial >> 12) & 0xfff,
            now.as_millis()
        )
    }

    fn new_profile(
        &mut self,
        key: &ResourceKey,
        status: String,
        health: Health,
        now: Timestamp,
    ) -> Profile {
        let id = self.fresh_id(now);
        Profile {
            name: key.name.clone(),
            arn: resource_arn(key, "fargateprofile", &id),
            created_at: now.as_secs_f64(),
            status,
            pod_execution_role_arn: format!(
                "arn:aws:iam::{}:role/{}-pod-execution",
                key.account_id, key.cluster
            ),
            subnets: vec![format!("subnet-{:08x}", self.serial)],
            namespace: key.name.clone(),
            health,
        }
    }

    /// The cluster of `key`, created when missing.
    fn cluster_entry(&mut self, key: &ResourceKey, now: Timestamp) -> &mut Cluster {
        self.clusters
            .entry(cluster_key(key))
            .or_insert_with(|| Cluster::new(&key.account_id, &key.region, &key.cluster, now))
    }

    /// The cluster of `key`.
    fn cluster_of(&mut self, key: &ResourceKey) -> Result<&mut Cluster, CommandError> {
        self.clusters
            .get_mut(&cluster_key(key))
            .ok_or_else(|| CommandError::NoSuchCluster {
                account_id: key.account_id.clone(),
                region: key.region.clone(),
                cluster: key.cluster.clone(),
            })
    }

    fn profile_mut(&mut self, key: &ResourceKey) -> Result<&mut Profile, CommandError> {
        self.cluster_of(key)?
            .profiles
            .get_mut(&key.name)
            .ok_or_else(|| CommandError::NoSuchProfile(key.clone()))
    }

    /// The status and health of a resource of any kind.
    fn state_mut(&mut self, key: &ResourceKey) -> Result<(&mut String, &mut Health), CommandError> {
        let missing = missing(key);
        let cluster = self.cluster_of(key)?;
        let found = match key.kind.name() {
            "cluster" => Some((&mut cluster.status, &mut cluster.health)),
            "nodegroup" => cluster
                .nodegroups
                .get_mut(&key.name)
                .map(|r| (&mut r.status, &mut r.health)),
            "addon" => cluster
                .addons
                .get_mut(&key.name)
                .map(|r| (&mut r.status, &mut r.health)),
            "capability" => cluster
                .capabilities
                .get_mut(&key.name)
                .map(|r| (&mut r.status, &mut r.health)),
            _ => cluster
                .profiles
                .get_mut(&key.name)
                .map(|r| (&mut r.status, &mut r.health)),
        };
        found.ok_or(missing)
    }

    /// Deletes a resource of any kind.
    fn delete(&mut self, key: &ResourceKey) -> Result<(), CommandError> {
        if key.kind == Kind::CLUSTER {
            self.cluster_of(key)?;
            self.clusters.remove(&cluster_key(key));
            return Ok(());
        }
        let missing = missing(key);
        let cluster = self.cluster_of(key)?;
        let removed = match key.kind.name() {
            "nodegroup" => cluster.nodegroups.remove(&key.name).is_some(),
            "addon" => cluster.addons.remove(&key.name).is_some(),
            "capability" => cluster.capabilities.remove(&key.name).is_some(),
            _ => cluster.profiles.remove(&key.name).is_some(),
        };
        if removed { Ok(()) } else { Err(missing) }
    }

    /// Deletes a resource and creates it again with the same name and settings: `ACTIVE`, no
    /// health, a later `createdAt`, a new ARN (a cluster's stays: it is its name).
    fn recreate(&mut self, key: &ResourceKey, now: Timestamp) -> Result<(), CommandError> {
        let missing = missing(key);
        let later = |old: f64| now.as_secs_f64().max(old + 0.001);
        if key.kind == Kind::FARGATE_PROFILE {
            let old = self.profile_mut(key)?.clone();
            let mut new = self.new_profile(key, default_status(), Health::Absent, now);
            new.created_at = later(old.created_at);
            new.pod_execution_role_arn = old.pod_execution_role_arn;
            *self.profile_mut(key)? = new;
            return Ok(());
        }
        let id = self.fresh_id(now);
        let cluster = self.cluster_of(key)?;
        match key.kind.name() {
            "cluster" => {
                let mut new = Cluster::new(&key.account_id, &key.region, &key.cluster, now);
                new.created_at = later(cluster.created_at);
                new.version.clone_from(&cluster.version);
                new.platform_version.clone_from(&cluster.platform_version);
                *cluster = new;
            }
            "nodegroup" => {
                let group = cluster.nodegroups.get_mut(&key.name).ok_or(missing)?;
                group.arn = resource_arn(key, "nodegroup", &id);
                group.created_at = later(group.created_at);
                (group.status, group.health) = (default_status(), Health::Absent);
            }
            "addon" => {
                let addon = cluster.addons.get_mut(&key.name).ok_or(missing)?;
                addon.arn = resource_arn(key, "addon", &id);
                addon.created_at = later(addon.created_at);
                (addon.status, addon.health) = (default_status(), Health::Absent);
            }
            _ => {
                let capability = cluster.capabilities.get_mut(&key.name).ok_or(missing)?;
                capability.arn = resource_arn(key, "capability", &id);
                capability.created_at = later(capability.created_at);
                (capability.status, capability.health) = (default_status(), Health::Absent);
            }
        }
        Ok(())
    }

    /// A profile as it is now, if it exists.
    pub fn profile(&self, key: &ResourceKey) -> Option<&Profile> {
        self.clusters
            .get(&cluster_key(key))?
            .profiles
            .get(&key.name)
    }

    /// The cluster of a resource of any kind, with everything in it, if it exists.
    pub fn cluster(&self, key: &ResourceKey) -> Option<&Cluster> {
        self.clusters.get(&cluster_key(key))
    }

    /// Every cluster, in key order, with its key (of the cluster kind).
    pub fn clusters(&self) -> impl Iterator<Item = (ResourceKey, &Cluster)> {
        self.clusters
            .iter()
            .map(|((account, region, name), cluster)| {
                (
                    ResourceKey::new(Kind::CLUSTER, account, region, name, name),
                    cluster,
                )
            })
    }

    /// Every profile, in key order.
    pub fn profiles(&self) -> impl Iterator<Item = (ResourceKey, &Profile)> {
        self.clusters
            .iter()
            .flat_map(|((account, region, cluster), c)| {
                c.profiles.values().map(move |profile| {
                    (
                        ResourceKey::fargate_profile(account, region, cluster, &profile.name),
                        profile,
                    )
                })
            })
    }

    /// How many resources of this kind the world holds.
    pub fn count(&self, kind: Kind) -> usize {
        match kind.name() {
            "cluster" => self.clusters.len(),
            _ => self.clusters.values().map(|c| c.names(kind).len()).sum(),
        }
    }

    /// Fills in the account of the request's access key; `None` when the key is unknown.
    pub fn authenticate(&self, request: &mut Request) -> Option<String> {
        let account = self
            .access_keys
            .get(request.access_key_id.as_deref()?)
            .cloned();
        request.account_id.clone_from(&account);
        account
    }

    /// The faults that hit this request at `now`: the total delay in milliseconds, then the
    /// first failure. Counted faults are used up.
    pub fn faults_for(&mut self, request: &Request, now: Timestamp) -> (u64, Option<Failure>) {
        let mut delay = 0u64;
        let mut failure = None;
        for fault in &mut self.faults {
            if !fault.scope.matches(request) || fault.remaining == Some(0) {
                continue;
            }
            match (&fault.kind, fault.kind.failure()) {
                (FaultKind::Delay { millis }, _) => delay = delay.saturating_add(*millis),
                (FaultKind::ThrottleAbove { per_second }, _) => {
                    let now = now.as_millis();
                    while fault.accepted.front().is_some_and(|at| now - *at >= 1000) {
                        fault.accepted.pop_front();
                    }
                    if fault.accepted.len() >= *per_second as usize {
                        if failure.is_none() {
                            failure = Some(Failure::Throttle);
                        }
                    } else {
                        fault.accepted.push_back(now);
                    }
                    continue;
                }
                (_, Some(hit)) if failure.is_none() => failure = Some(hit),
                _ => continue,
            }
            if let Some(remaining) = &mut fault.remaining {
                *remaining -= 1;
            }
        }
        self.faults.retain(|fault| fault.remaining != Some(0));
        (delay, failure)
    }

    /// `ListClusters` in the caller's account and region.
    pub fn list_clusters(
        &self,
        account_id: &str,
        region: &str,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<Page, Refusal> {
        let names = self
            .clusters
            .keys()
            .filter(|(a, r, _)| a == account_id && r == region)
            .map(|(_, _, cluster)| cluster.as_str());
        self.page(names, max_results, next_token)
    }

    /// `ListFargateProfiles` of one cluster.
    pub fn list_profiles(
        &self,
        account_id: &str,
        region: &str,
        cluster: &str,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<Page, Refusal> {
        let key = ResourceKey::fargate_profile(account_id, region, cluster, "");
        self.list(&key, max_results, next_token)
    }

    /// The kind's list operation (`ListFargateProfiles`, `ListNodegroups`, `ListAddons`,
    /// `ListCapabilities`) in the cluster of `key`; `key.name` is not read.
    pub fn list(
        &self,
        key: &ResourceKey,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<Page, Refusal> {
        let cluster = self.found_cluster(key)?;
        self.page(cluster.names(key.kind).into_iter(), max_results, next_token)
    }

    fn found_cluster(&self, key: &ResourceKey) -> Result<&Cluster, Refusal> {
        self.clusters.get(&cluster_key(key)).ok_or_else(|| {
            Refusal::NotFound(format!("No cluster found for name: {}.", key.cluster))
        })
    }

    /// `DescribeFargateProfile`.
    pub fn describe(&self, key: &ResourceKey) -> Result<&Profile, Refusal> {
        self.found_cluster(key)?
            .profiles
            .get(&key.name)
            .ok_or_else(|| {
                Refusal::NotFound(format!("No Fargate Profile found with name: {}.", key.name))
            })
    }

    /// `DescribeCluster`.
    pub fn describe_cluster(&self, key: &ResourceKey) -> Result<&Cluster, Refusal> {
        self.found_cluster(key)
    }

    /// `DescribeNodegroup`.
    pub fn describe_nodegroup(&self, key: &ResourceKey) -> Result<&Nodegroup, Refusal> {
        self.found_cluster(key)?
            .nodegroups
            .get(&key.name)
            .ok_or_else(|| {
                Refusal::NotFound(format!("No node group found for name: {}.", key.name))
            })
    }

    /// `DescribeAddon`.
    pub fn describe_addon(&self, key: &ResourceKey) -> Result<&Addon, Refusal> {
        self.found_cluster(key)?
            .addons
            .get(&key.name)
            .ok_or_else(|| {
                Refusal::NotFound(format!(
                    "No addon: {} found in cluster: {}",
                    key.name, key.cluster
                ))
            })
    }

    /// `DescribeCapability`.
    pub fn describe_capability(&self, key: &ResourceKey) -> Result<&Capability, Refusal> {
        self.found_cluster(key)?
            .capabilities
            .get(&key.name)
            .ok_or_else(|| {
                Refusal::NotFound(format!("No capability found for name: {}.", key.name))
            })
    }

    /// Pages through sorted names; the token is the hex of the last name served.
    fn page<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<Page, Refusal> {
        let max = match max_results {
            None => 100,
            Some(n @ 1..=100) => n,
            Some(n) => {
                return Err(Refusal::InvalidParameter(format!(
                    "maxResults must be between 1 and 100, got {n}"
                )));
            }
        }
        .min(self.page_limit);
        let after = match next_token {
            None => None,
            Some(token) => Some(decode_token(token).ok_or_else(|| {
                Refusal::InvalidParameter("The nextToken is not valid.".to_owned())
            })?),
        };
        let mut rest = names.filter(|name| after.as_deref().is_none_or(|after| *name > after));
        let page: Vec<String> = rest.by_ref().take(max).map(str::to_owned).collect();
        let next_token = match (rest.next(), page.last()) {
            (Some(_), Some(last)) => Some(encode_token(last)),
            _ => None,
        };
        Ok(Page {
            names: page,
            next_token,
        })
    }

    /// `AssumeRole`: temporary credentials in the role's account, or why not.
    pub fn assume_role(
        &mut self,
        role_arn: &str,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<AssumedCredentials, String> {
        let denied =
            || format!("User is not authorized to perform: sts:AssumeRole on resource: {role_arn}");
        let wanted = self.roles.get(role_arn).ok_or_else(denied)?;
        if wanted.is_some() && wanted.as_deref() != external_id {
            return Err(denied());
        }
        let account = role_account(role_arn).ok_or_else(denied)?.to_owned();
        let role_name = role_arn.rsplit('/').next().unwrap_or(role_arn).to_owned();
        self.serial += 1;
        let access_key_id = format!("ASIASIM{:013}", self.serial);
        self.access_keys
            .insert(access_key_id.clone(), account.clone());
        Ok(AssumedCredentials {
            secret_access_key: format!("simulated-secret-{}", self.serial),
            session_token: format!("simulated-session-token-{}", self.serial),
            assumed_role_arn: format!(
                "arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}"
            ),
            assumed_role_id: format!("AROASIM{:013}:{session_name}", self.serial),
            access_key_id,
        })
    }

    /// How long credentials from `AssumeRole` are valid, in seconds.
    pub fn credential_lifetime(&self) -> u64 {
        self.credential_lifetime
    }

    /// A request arrived on the AWS port.
    pub fn begin_request(&mut self) {
        self.in_flight += 1;
        self.max_in_flight = self.max_in_flight.max(self.in_flight);
    }

    /// A request on the AWS port was answered (or abandoned by its client).
    pub fn end_request(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The most requests in progress at once since the start or the last log clearing.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Records a served request.
    pub fn log(&mut self, request: &Request, status: u16, at: Timestamp) {
        if self.log.len() == REQUEST_LOG_LIMIT {
            self.log.pop_front();
        }
        self.log.push_back(LoggedRequest {
            operation: request.operation,
            account_id: request.account_id.clone(),
            access_key_id: request.access_key_id.clone(),
            region: request.region.clone(),
            cluster: request.cluster.clone(),
            profile: request.profile.clone(),
            name: request.name.clone(),
            status,
            at,
        });
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> impl Iterator<Item = &LoggedRequest> {
        self.log.iter()
    }

    /// How many requests the log holds.
    pub fn logged(&self) -> usize {
        self.log.len()
    }
}

/// `arn:aws:eks:<region>:<account>:<kind>/<cluster>/<name>/<id>`.
fn resource_arn(key: &ResourceKey, kind: &str, id: &str) -> String {
    format!(
        "arn:aws:eks:{}:{}:{kind}/{}/{}/{id}",
        key.region, key.account_id, key.cluster, key.name
    )
}

/// The error for a missing resource of `key`'s kind (its cluster exists).
fn missing(key: &ResourceKey) -> CommandError {
    if key.kind == Kind::FARGATE_PROFILE {
        CommandError::NoSuchProfile(key.clone())
    } else {
        CommandError::NoSuchResource(key.clone())
    }
}

fn cluster_key(key: &ResourceKey) -> ClusterKey {
    (
        key.account_id.clone(),
        key.region.clone(),
        key.cluster.clone(),
    )
}

/// The account id of `arn:aws:iam::<account>:role/<name>`.
fn role_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (arn_, _partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (arn_ == "arn"
        && service == "iam"
        && resource.starts_with("role/")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit()))
    .then_some(account)
}

fn encode_token(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn key(profile: &str) -> ResourceKey {
        ResourceKey::fargate_profile("111122223333", "us-east-1", "prod", profile)
    }

    fn add(world: &mut World, profile: &str) {
        let command = Command::AddProfile {
            key: key(profile),
            status: "ACTIVE".into(),
            health: Health::Absent,
        };
        world.apply(command, NOW).unwrap();
    }

    #[test]
    fn pages_cover_every_name_once_in_order() {
        let mut world = World::default();
        for i in 0..7 {
            add(&mut world, &format!("p{i}"));
        }
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let page = world
                .list_profiles(
                    "111122223333",
                    "us-east-1",
                    "prod",
                    Some(3),
                    token.as_deref(),
                )
                .unwrap();
            assert!(page.names.len() <= 3);
            seen.extend(page.names);
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    }

    #[test]
    fn a_bad_token_or_page_size_is_refused() {
        let world = World::default();
        let list = |max, token| world.list_clusters("1", "r", max, token);
        assert!(matches!(
            list(Some(0), None),
            Err(Refusal::InvalidParameter(_))
        ));
        assert!(matches!(
            list(Some(101), None),
            Err(Refusal::InvalidParameter(_))
        ));
        assert!(matches!(
            list(None, Some("zz")),
            Err(Refusal::InvalidParameter(_))
        ));
    }

    #[test]
    fn recreating_gives_a_new_arn_and_a_later_creation_time() {
        let mut world = World::default();
        add(&mut world, "default");
        let before = world.profile(&key("default")).unwrap().clone();
        world
            .apply(
                Command::RecreateProfile {
                    key: key("default"),
                },
                NOW,
            )
            .unwrap();
        let after = world.profile(&key("default")).unwrap();
        assert_ne!(before.arn, after.arn);
        assert!(after.created_at > before.created_at);
    }

    #[test]
    fn counted_faults_run_out_and_delays_add_up() {
        let mut world = World::default();
        let fault = |kind, remaining| Command::AddFault {
            fault: Fault {
                scope: Scope::profile(&key("a")),
                kind,
                remaining,
                accepted: Default::default(),
            },
        };
        world
            .apply(fault(FaultKind::Throttle, Some(1)), NOW)
            .unwrap();
        world
            .apply(fault(FaultKind::Delay { millis: 5 }, None), NOW)
            .unwrap();
        world
            .apply(fault(FaultKind::Delay { millis: 7 }, None), NOW)
            .unwrap();
        let request = |profile: &str| Request {
            operation: Operation::DescribeFargateProfile,
            access_key_id: None,
            account_id: Some("111122223333".into()),
            region: Some("us-east-1".into()),
            cluster: Some("prod".into()),
            profile: Some(profile.into()),
            name: Some(profile.into()),
        };
        assert_eq!(
            world.faults_for(&request("a"), NOW),
            (12, Some(Failure::Throttle))
        );
        assert_eq!(world.faults_for(&request("a"), NOW), (12, None));
        assert_eq!(world.faults_for(&request("b"), NOW), (0, None));

        // Beyond 2 a second, requests are throttled; a second later they pass again.
        world
            .apply(fault(FaultKind::ThrottleAbove { per_second: 2 }, None), NOW)
            .unwrap();
        let at = |millis: i64| Timestamp::from_millis(NOW.as_millis() + millis);
        let failures: Vec<Option<Failure>> = [0, 100, 200, 900, 1050, 1150, 1200]
            .iter()
            .map(|ms| world.faults_for(&request("a"), at(*ms)).1)
            .collect();
        let t = Some(Failure::Throttle);
        assert_eq!(failures, [None, None, t, t, None, None, t]);
    }

    #[test]
    fn assume_role_checks_the_external_id_and_maps_the_new_key_to_the_role_account() {
        let mut world = World::default();
        let role = "arn:aws:iam::222233334444:role/reader";
        world
            .apply(
                Command::AddRole {
                    role_arn: role.into(),
                    external_id: Some("ext".into()),
                },
                NOW,
            )
            .unwrap();
        assert!(world.assume_role(role, "s", None).is_err());
        assert!(world.assume_role(role, "s", Some("other")).is_err());
        assert!(
            world
                .assume_role("arn:aws:iam::222233334444:role/x", "s", None)
                .is_err()
        );
        let creds = world.assume_role(role, "s", Some("ext")).unwrap();
        let mut request = Request {
            operation: Operation::ListClusters,
            access_key_id: Some(creds.access_key_id),
            account_id: None,
            region: None,
            cluster: None,
            profile: None,
            name: None,
        };
        assert_eq!(
            world.authenticate(&mut request).as_deref(),
            Some("222233334444")
        );
    }

    #[test]
    fn commands_read_from_json() {
        let command: Command = serde_json::from_str(
            r#"{"op": "set_health", "account_id": "111122223333", "region": "us-east-1",
                "cluster": "prod", "profile": "default",
                "health": {"type": "issues", "issues": [{"code": "AccessDenied", "message": "m"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            command,
            Command::SetHealth {
                key: key("default"),
                health: Health::Issues(vec![IssueSpec::new("AccessDenied", "m", &[])]),
            }
        );
    }

    #[test]
    fn every_kind_is_scripted_with_the_same_resource_commands() {
        let mut world = World::default();
        let parse = |text: &str| serde_json::from_str::<Command>(text).unwrap();
        let at = r#""account_id": "111122223333", "region": "us-east-1", "cluster": "prod""#;
        for command in [
            format!(
                r#"{{"op": "add_nodegroup", {at}, "nodegroup": "ng", "capacity_type": "SPOT",
                        "scaling": {{"min_size": 0, "max_size": 9, "desired_size": 4}}}}"#
            ),
            format!(r#"{{"op": "add_addon", {at}, "addon": "vpc-cni", "addon_version": "v1"}}"#),
            format!(
                r#"{{"op": "add_capability", {at}, "capability": "ack", "status": "CREATING"}}"#
            ),
            format!(
                r#"{{"op": "set_resource_status", "kind": "nodegroup", {at}, "name": "ng",
                        "status": "SOME_FUTURE_STATUS"}}"#
            ),
            format!(
                r#"{{"op": "set_resource_health", "kind": "cluster", {at},
                        "health": {{"type": "issues", "issues": [{{"code": "New"}}]}}}}"#
            ),
            format!(
                r#"{{"op": "set_version", "kind": "addon", {at}, "name": "vpc-cni",
                        "version": "v2"}}"#
            ),
            format!(
                r#"{{"op": "set_scaling", {at}, "nodegroup": "ng", "min_size": 1,
                        "max_size": 2, "desired_size": 2}}"#
            ),
        ] {
            world.apply(parse(&command), NOW).unwrap();
        }
        let cluster_key =
            ResourceKey::new(Kind::CLUSTER, "111122223333", "us-east-1", "prod", "prod");
        let cluster = world.cluster(&cluster_key).unwrap().clone();
        let group = &cluster.nodegroups["ng"];
        assert_eq!(group.status, "SOME_FUTURE_STATUS");
        assert_eq!(group.capacity_type, "SPOT");
        assert_eq!(group.scaling.desired_size, 2);
        assert_eq!(cluster.addons["vpc-cni"].addon_version, "v2");
        assert_eq!(cluster.capabilities["ack"].status, "CREATING");
        assert_eq!(
            cluster.health,
            Health::Issues(vec![IssueSpec::new("New", "", &[])])
        );

        let ng = ResourceKey::new(Kind::NODEGROUP, "111122223333", "us-east-1", "prod", "ng");
        world
            .apply(Command::RecreateResource { key: ng.clone() }, NOW)
            .unwrap();
        let recreated = &world.cluster(&ng).unwrap().nodegroups["ng"];
        assert_ne!(recreated.arn, group.arn);
        assert!(recreated.created_at > group.created_at);
        assert_eq!(
            (recreated.status.as_str(), recreated.scaling),
            ("ACTIVE", group.scaling)
        );

        world
            .apply(
                Command::RecreateResource {
                    key: cluster_key.clone(),
                },
                NOW,
            )
            .unwrap();
        let again = world.cluster(&cluster_key).unwrap();
        assert_eq!(again.arn, cluster.arn);
        assert!(again.created_at > cluster.created_at);
        assert!(again.nodegroups.is_empty() && again.health == Health::Absent);

        assert_eq!(
            world.apply(Command::DeleteResource { key: ng.clone() }, NOW),
            Err(CommandError::NoSuchResource(ng.clone()))
        );
        world
            .apply(
                Command::DeleteResource {
                    key: cluster_key.clone(),
                },
                NOW,
            )
            .unwrap();
        assert!(world.cluster(&cluster_key).is_none());
        assert!(
            serde_json::from_str::<Command>(&format!(
                r#"{{"op": "delete_resource", "kind": "addon", {at}}}"#
            ))
            .is_err()
        );
    }
}
