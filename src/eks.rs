//! The AWS adapter: a small trait for the calls the monitor makes ([`Eks`]) and its
//! implementation with the official `aws-sdk-eks`, `aws-sdk-sts` and `aws-config`
//! ([`SdkEks`], built per target by a [`Connector`]).
//!
//! Every call has an operation and an attempt timeout, the SDK's own retries are off (the
//! caller owns retries, so every HTTP attempt is seen and rate-limited), and every failure is
//! classified into one of DESIGN.md's error kinds. SDK types are converted to the project's model
//! here and go no further.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_eks::config::http::HttpResponse;
use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;

use crate::config::Target;
use crate::model::error_chain as chain;
use crate::model::{ErrorKind, Incarnation, IssueCode, Kind, Observation, Operation, ResourceKey};
use crate::model::{MAX_ID_BYTES, MAX_ISSUES, MAX_MESSAGE_BYTES, MAX_NAME_BYTES, MAX_RESOURCE_IDS};
use crate::model::{RawIssue, Status, Timestamp, bounded, for_display};
use crate::secret::Secret;

/// The session name of roles assumed for `role_arn` targets; it shows in CloudTrail.
pub const SESSION_NAME: &str = "fargate-health-monitor";

/// The largest page the list operations ask for.
const PAGE_SIZE: i32 = 100;

/// A page of names from a list operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub names: Vec<String>,
    /// Present when there are more names.
    pub next_token: Option<String>,
}

impl Page {
    /// A page from a list answer; an empty `nextToken` ends the listing like a missing one.
    fn new(names: &[String], next_token: Option<&str>) -> Self {
        Self {
            names: names.to_vec(),
            next_token: next_token.filter(|t| !t.is_empty()).map(str::to_owned),
        }
    }
}

/// A described resource of any kind, in the project's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Described {
    pub arn: String,
    pub created_at: Timestamp,
    pub status: Status,
    /// Extra labels of the kind's info series (a profile's `pod_execution_role_arn`, a node
    /// group's `node_role_arn`, `capacity_type` and `release_version`, …); absent values are
    /// left out.
    pub info: BTreeMap<String, String>,
    /// The kind's own numbers (a node group's `desired_size`, `min_size`, `max_size`).
    pub values: BTreeMap<String, i64>,
    pub issues: Vec<RawIssue>,
}

impl Described {
    /// The diff's input for this answer about `key`, observed at `observed_at`.
    pub fn into_observation(self, key: ResourceKey, observed_at: Timestamp) -> Observation {
        Observation {
            key,
            incarnation: Incarnation {
                arn: self.arn,
                created_at: self.created_at,
            },
            status: self.status,
            info: self.info,
            values: self.values,
            issues: self.issues,
            observed_at,
        }
    }
}

/// A failed AWS call, classified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed ({kind}): {message}")]
pub struct CallError {
    pub operation: Operation,
    pub kind: ErrorKind,
    /// What the SDK said, for logs; never a label value.
    pub message: String,
    /// Set when the call could not be signed: no credentials, or a role that could not be
    /// assumed. The message then says what to fix.
    pub credentials: Option<CredentialsProblem>,
}

impl CallError {
    pub fn new(operation: Operation, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            operation,
            kind,
            message: message.into(),
            credentials: None,
        }
    }

    /// Whether a person must act for this to go away (DESIGN.md "Errors"): access denied, no
    /// credentials, a role that cannot be assumed, STS unreachable. Throttling and server
    /// errors are retried and only logged as warnings.
    pub fn needs_person(&self) -> bool {
        match self.credentials {
            Some(problem) => problem.needs_person(),
            None => self.kind == ErrorKind::AccessDenied,
        }
    }
}

/// Why a call had no credentials to sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsProblem {
    /// No credentials were found: to sign with, or to call STS `AssumeRole` with.
    NotFound,
    /// STS could not be reached, or did not answer in time, for `AssumeRole`.
    StsUnreachable,
    /// STS refused `AssumeRole`.
    AssumeRoleDenied,
    /// STS throttled `AssumeRole`.
    StsThrottled,
    /// STS answered `AssumeRole` with a server error.
    StsFailed,
    /// The credential provider failed otherwise.
    Other,
}

impl CredentialsProblem {
    /// Whether a person must act; throttling and server errors pass with retries.
    pub fn needs_person(self) -> bool {
        !matches!(
            self,
            CredentialsProblem::StsThrottled | CredentialsProblem::StsFailed
        )
    }
}

/// The AWS calls the monitor makes, for one target's credentials and region. Each method is
/// one HTTP attempt (a page, for the list operations), so callers can rate-limit and count them.
pub trait Eks: Send + Sync {
    /// STS `GetCallerIdentity`: the account id of these credentials.
    fn caller_identity(&self) -> impl Future<Output = Result<String, CallError>> + Send;

    /// One page of `ListClusters`.
    fn list_clusters(
        &self,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page, CallError>> + Send;

    /// One page of the kind's list operation for `cluster` (`ListFargateProfiles`,
    /// `ListNodegroups`, `ListAddons`, `ListCapabilities`). Clusters are listed with
    /// [`Self::list_clusters`].
    fn list_resources(
        &self,
        kind: Kind,
        cluster: &str,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page, CallError>> + Send;

    /// The kind's describe operation for `name` in `cluster` (for a cluster, `name` is
    /// `cluster`).
    fn describe(
        &self,
        kind: Kind,
        cluster: &str,
        name: &str,
    ) -> impl Future<Output = Result<Described, CallError>> + Send;
}

/// Told about every call's outcome and duration (the metrics implement it).
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    fn observe(
        &self,
        region: &str,
        operation: Operation,
        outcome: Result<(), ErrorKind>,
        elapsed: Duration,
    );
}

/// [`Eks`] with the official SDK.
#[derive(Clone, Debug)]
pub struct SdkEks {
    eks: aws_sdk_eks::Client,
    sts: aws_sdk_sts::Client,
    region: String,
    observer: Option<Arc<dyn CallObserver>>,
}

impl SdkEks {
    /// Runs one call and tells the observer how it went.
    async fn observed<T>(
        &self,
        operation: Operation,
        call: impl Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let result = call.await;
        if let Some(observer) = &self.observer {
            let outcome = result.as_ref().map(|_| ()).map_err(|error| error.kind);
            observer.observe(&self.region, operation, outcome, started.elapsed());
        }
        result
    }
}

impl Eks for SdkEks {
    async fn caller_identity(&self) -> Result<String, CallError> {
        let operation = Operation::GetCallerIdentity;
        self.observed(operation, self.get_caller_identity()).await
    }

    async fn list_clusters(&self, next_token: Option<String>) -> Result<Page, CallError> {
        self.observed(Operation::ListClusters, self.list_clusters_page(next_token))
            .await
    }

    async fn list_resources(
        &self,
        kind: Kind,
        cluster: &str,
        next_token: Option<String>,
    ) -> Result<Page, CallError> {
        let operation = kind.spec().list;
        let page = self.list_page(kind, cluster, next_token);
        self.observed(operation, page).await
    }

    async fn describe(
        &self,
        kind: Kind,
        cluster: &str,
        name: &str,
    ) -> Result<Described, CallError> {
        let operation = kind.spec().describe;
        self.observed(operation, self.describe_one(kind, cluster, name))
            .await
    }
}

impl SdkEks {
    async fn get_caller_identity(&self) -> Result<String, CallError> {
        let operation = Operation::GetCallerIdentity;
        let output = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|err| call_error(operation, &err))?;
        output
            .account()
            .filter(|account| !account.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                CallError::new(operation, ErrorKind::Malformed, "no Account in the answer")
            })
    }

    async fn list_clusters_page(&self, next_token: Option<String>) -> Result<Page, CallError> {
        let output = self
            .eks
            .list_clusters()
            .max_results(PAGE_SIZE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|err| call_error(Operation::ListClusters, &err))?;
        Ok(Page::new(output.clusters(), output.next_token()))
    }

    async fn list_page(
        &self,
        kind: Kind,
        cluster: &str,
        next_token: Option<String>,
    ) -> Result<Page, CallError> {
        let operation = kind.spec().list;
        let failed = |err: &dyn Classify| err.classify(operation);
        let eks = &self.eks;
        let (names, token) = match kind.name() {
            "nodegroup" => {
                let out = eks
                    .list_nodegroups()
                    .cluster_name(cluster)
                    .max_results(PAGE_SIZE);
                let out = out.set_next_token(next_token).send().await;
                let out = out.map_err(|e| failed(&e))?;
                (
                    out.nodegroups().to_vec(),
                    out.next_token().map(str::to_owned),
                )
            }
            "addon" => {
                let out = eks
                    .list_addons()
                    .cluster_name(cluster)
                    .max_results(PAGE_SIZE);
                let out = out.set_next_token(next_token).send().await;
                let out = out.map_err(|e| failed(&e))?;
                (out.addons().to_vec(), out.next_token().map(str::to_owned))
            }
            "capability" => {
                let out = eks
                    .list_capabilities()
                    .cluster_name(cluster)
                    .max_results(PAGE_SIZE);
                let out = out.set_next_token(next_token).send().await;
                let out = out.map_err(|e| failed(&e))?;
                let names = out
                    .capabilities()
                    .iter()
                    .filter_map(|c| c.capability_name().map(str::to_owned))
                    .collect();
                (names, out.next_token().map(str::to_owned))
            }
            "cluster" => return self.list_clusters_page(next_token).await,
            _ => {
                let out = eks.list_fargate_profiles().cluster_name(cluster);
                let out = out.max_results(PAGE_SIZE).set_next_token(next_token);
                let out = out.send().await.map_err(|e| failed(&e))?;
                let names = out.fargate_profile_names().to_vec();
                (names, out.next_token().map(str::to_owned))
            }
        };
        Ok(Page::new(&names, token.as_deref()))
    }

    async fn describe_one(
        &self,
        kind: Kind,
        cluster: &str,
        name: &str,
    ) -> Result<Described, CallError> {
        let operation = kind.spec().describe;
        let failed = |err: &dyn Classify| err.classify(operation);
        let missing = |what: &str| {
            CallError::new(
                operation,
                ErrorKind::Malformed,
                format!("no {what} in the answer"),
            )
        };
        let eks = &self.eks;
        match kind.name() {
            "nodegroup" => {
                let call = eks
                    .describe_nodegroup()
                    .cluster_name(cluster)
                    .nodegroup_name(name);
                let out = call.send().await.map_err(|e| failed(&e))?;
                nodegroup_from_sdk(out.nodegroup().ok_or_else(|| missing("nodegroup"))?)
            }
            "addon" => {
                let call = eks.describe_addon().cluster_name(cluster).addon_name(name);
                let out = call.send().await.map_err(|e| failed(&e))?;
                addon_from_sdk(out.addon().ok_or_else(|| missing("addon"))?)
            }
            "cluster" => {
                let out = eks.describe_cluster().name(name).send().await;
                let out = out.map_err(|e| failed(&e))?;
                cluster_from_sdk(out.cluster().ok_or_else(|| missing("cluster"))?)
            }
            "capability" => {
                let call = eks
                    .describe_capability()
                    .cluster_name(cluster)
                    .capability_name(name);
                let out = call.send().await.map_err(|e| failed(&e))?;
                capability_from_sdk(out.capability().ok_or_else(|| missing("capability"))?)
            }
            _ => {
                let call = eks.describe_fargate_profile().cluster_name(cluster);
                let out = call.fargate_profile_name(name).send().await;
                let out = out.map_err(|e| failed(&e))?;
                profile_from_sdk(
                    out.fargate_profile()
                        .ok_or_else(|| missing("fargateProfile"))?,
                )
            }
        }
    }
}

/// An SDK error of any operation, classified for `operation`.
trait Classify {
    fn classify(&self, operation: Operation) -> CallError;
}

impl<E: ProvideErrorMetadata + StdError + Send + Sync + 'static> Classify
    for SdkError<E, HttpResponse>
{
    fn classify(&self, operation: Operation) -> CallError {
        call_error(operation, self)
    }
}

/// What every described resource has, before it is checked: the SDK's fields as they came.
struct Fields<'a, I> {
    arn: Option<&'a str>,
    created_at: Option<&'a aws_sdk_eks::primitives::DateTime>,
    status: Option<&'a str>,
    issues: I,
}

/// One health issue as it came: code, message, resource ids.
type IssueFields<'a> = (Option<&'a str>, Option<&'a str>, &'a [String]);

impl<'a, I: Iterator<Item = IssueFields<'a>>> Fields<'a, I> {
    /// The project's terms: pure, and total over whatever the API sent. A missing ARN,
    /// `createdAt` or status is `malformed`; `createdAt` is rounded to the millisecond and
    /// clamped into [`Timestamp::MIN`] ..= [`Timestamp::MAX`]; texts are cut to the model's
    /// bounds ([`crate::model::bounded`]) and lists to [`MAX_ISSUES`] and
    /// [`MAX_RESOURCE_IDS`]. Control characters and markup are kept as they are: every output
    /// escapes for its own format.
    fn described(
        self,
        kind: Kind,
        info: [(&str, Option<&str>); 3],
    ) -> Result<Described, CallError> {
        let malformed = |what: &str| {
            CallError::new(
                kind.spec().describe,
                ErrorKind::Malformed,
                format!("no {what} in the answer"),
            )
        };
        let arn = self
            .arn
            .filter(|arn| !arn.is_empty())
            .ok_or_else(|| malformed("arn"))?;
        let created_at = self
            .created_at
            .map(|at| {
                // EKS sends epoch seconds as a decimal number; round what the float parse
                // gives to the millisecond it stands for.
                at.secs().saturating_mul(1000).saturating_add(i64::from(
                    at.subsec_nanos().saturating_add(500_000) / 1_000_000,
                ))
            })
            .ok_or_else(|| malformed("createdAt"))?;
        let status = self.status.ok_or_else(|| malformed("status"))?;
        let issues = self
            .issues
            .take(MAX_ISSUES)
            .map(|(code, message, ids)| RawIssue {
                // An entry without a code is kept, under the code `Unknown`.
                code: IssueCode::from_wire(&bounded(
                    code.filter(|c| !c.is_empty()).unwrap_or("Unknown"),
                    MAX_NAME_BYTES,
                )),
                message: bounded(message.unwrap_or_default(), MAX_MESSAGE_BYTES),
                resource_ids: ids
                    .iter()
                    .take(MAX_RESOURCE_IDS)
                    .map(|id| bounded(id, MAX_ID_BYTES))
                    .collect(),
            })
            .collect();
        let info = info
            .into_iter()
            .filter_map(|(label, value)| Some((label.to_owned(), bounded(value?, MAX_ID_BYTES))))
            .collect();
        Ok(Described {
            arn: bounded(arn, MAX_ID_BYTES),
            created_at: Timestamp::clamped(created_at),
            status: Status::from_wire(&bounded(status, MAX_NAME_BYTES)),
            info,
            values: BTreeMap::new(),
            issues,
        })
    }
}

/// A Fargate profile from the SDK (see [`Fields::described`] for what is checked).
pub fn profile_from_sdk(
    profile: &aws_sdk_eks::types::FargateProfile,
) -> Result<Described, CallError> {
    let issues = profile.health().map(|h| h.issues()).unwrap_or_default();
    let fields = Fields {
        arn: profile.fargate_profile_arn(),
        created_at: profile.created_at(),
        status: profile.status().map(|s| s.as_str()),
        issues: issues
            .iter()
            .map(|i| (i.code().map(|c| c.as_str()), i.message(), i.resource_ids())),
    };
    let role = profile.pod_execution_role_arn();
    let none = ("", None);
    fields.described(
        Kind::FARGATE_PROFILE,
        [("pod_execution_role_arn", role), none, none],
    )
}

/// A managed node group from the SDK, with its scaling config as values.
pub fn nodegroup_from_sdk(group: &aws_sdk_eks::types::Nodegroup) -> Result<Described, CallError> {
    let issues = group.health().map(|h| h.issues()).unwrap_or_default();
    let fields = Fields {
        arn: group.nodegroup_arn(),
        created_at: group.created_at(),
        status: group.status().map(|s| s.as_str()),
        issues: issues
            .iter()
            .map(|i| (i.code().map(|c| c.as_str()), i.message(), i.resource_ids())),
    };
    let mut described = fields.described(
        Kind::NODEGROUP,
        [
            ("node_role_arn", group.node_role()),
            ("capacity_type", group.capacity_type().map(|c| c.as_str())),
            ("release_version", group.release_version()),
        ],
    )?;
    if let Some(scaling) = group.scaling_config() {
        let sizes = [
            ("desired_size", scaling.desired_size()),
            ("min_size", scaling.min_size()),
            ("max_size", scaling.max_size()),
        ];
        for (name, size) in sizes {
            if let Some(size) = size {
                described.values.insert(name.to_owned(), i64::from(size));
            }
        }
    }
    Ok(described)
}

/// An add-on from the SDK.
pub fn addon_from_sdk(addon: &aws_sdk_eks::types::Addon) -> Result<Described, CallError> {
    let issues = addon.health().map(|h| h.issues()).unwrap_or_default();
    let fields = Fields {
        arn: addon.addon_arn(),
        created_at: addon.created_at(),
        status: addon.status().map(|s| s.as_str()),
        issues: issues
            .iter()
            .map(|i| (i.code().map(|c| c.as_str()), i.message(), i.resource_ids())),
    };
    let none = ("", None);
    fields.described(
        Kind::ADDON,
        [("addon_version", addon.addon_version()), none, none],
    )
}

/// A cluster from the SDK.
pub fn cluster_from_sdk(cluster: &aws_sdk_eks::types::Cluster) -> Result<Described, CallError> {
    let issues = cluster.health().map(|h| h.issues()).unwrap_or_default();
    let fields = Fields {
        arn: cluster.arn(),
        created_at: cluster.created_at(),
        status: cluster.status().map(|s| s.as_str()),
        issues: issues
            .iter()
            .map(|i| (i.code().map(|c| c.as_str()), i.message(), i.resource_ids())),
    };
    fields.described(
        Kind::CLUSTER,
        [
            ("version", cluster.version()),
            ("platform_version", cluster.platform_version()),
            ("", None),
        ],
    )
}

/// A capability from the SDK (its issues carry no resource ids).
pub fn capability_from_sdk(
    capability: &aws_sdk_eks::types::Capability,
) -> Result<Described, CallError> {
    let issues = capability.health().map(|h| h.issues()).unwrap_or_default();
    let fields = Fields {
        arn: capability.arn(),
        created_at: capability.created_at(),
        status: capability.status().map(|s| s.as_str()),
        issues: issues
            .iter()
            .map(|i| (i.code().map(|c| c.as_str()), i.message(), &[][..])),
    };
    let none = ("", None);
    fields.described(
        Kind::CAPABILITY,
        [("role_arn", capability.role_arn()), none, none],
    )
}

/// Settings shared by every target's clients.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    /// The operation timeout and the attempt timeout of every call.
    pub timeout: Duration,
    /// Static credentials in place of the default chain or a named profile, as the base for
    /// `role_arn` too (for the simulator: `demo` and tests).
    pub static_credentials: Option<StaticCredentials>,
    /// Told about every call, for the metrics.
    pub observer: Option<Arc<dyn CallObserver>>,
}

impl AwsSettings {
    /// The default chain, no observer.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            static_credentials: None,
            observer: None,
        }
    }
}

/// An access key pair.
#[derive(Clone, Debug)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

impl StaticCredentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: Secret::new(secret_access_key),
        }
    }
}

/// Where a target's credentials come from; targets with the same source share one credentials
/// provider and one account id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredentialSource {
    pub aws_profile: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub sts_endpoint_url: Option<String>,
}

impl CredentialSource {
    pub fn of(target: &Target) -> Self {
        Self {
            aws_profile: target.aws_profile.clone(),
            role_arn: target.role_arn.clone(),
            external_id: target.external_id.clone(),
            sts_endpoint_url: target.sts_endpoint_url.as_ref().map(|url| url.to_string()),
        }
    }

    /// How the credentials are picked, for log lines.
    pub fn describe(&self) -> String {
        let base = match &self.aws_profile {
            Some(profile) => format!("profile {profile}"),
            None => "the default credential chain".to_owned(),
        };
        match &self.role_arn {
            Some(role) => format!("role {role} assumed with {base}"),
            None => base,
        }
    }
}

/// Builds [`SdkEks`] clients per target, sharing what targets have in common: the loaded
/// configuration per (named profile, region), and the assumed-role credentials per
/// (credential source, region), so a role is assumed once and refreshed by aws-config.
#[derive(Debug)]
pub struct Connector {
    settings: AwsSettings,
    base: HashMap<(Option<String>, String), SdkConfig>,
    assumed: HashMap<(CredentialSource, String), SharedCredentialsProvider>,
}

impl Connector {
    pub fn new(settings: AwsSettings) -> Self {
        Self {
            settings,
            base: HashMap::new(),
            assumed: HashMap::new(),
        }
    }

    /// The clients for one target.
    pub async fn connect(&mut self, target: &Target) -> SdkEks {
        let region = target.region.clone();
        let base = self
            .base_config(target.aws_profile.clone(), region.clone())
            .await;
        let config = match &target.role_arn {
            None => base,
            Some(role_arn) => {
                let source = CredentialSource::of(target);
                let key = (source, region);
                let provider = match self.assumed.get(&key) {
                    Some(provider) => provider.clone(),
                    None => {
                        let mut sts_config = base.to_builder();
                        if let Some(url) = &target.sts_endpoint_url {
                            sts_config.set_endpoint_url(Some(endpoint(url)));
                        }
                        let mut builder = AssumeRoleProvider::builder(role_arn.clone())
                            .session_name(SESSION_NAME)
                            .configure(&sts_config.build());
                        if let Some(external_id) = &target.external_id {
                            builder = builder.external_id(external_id.clone());
                        }
                        let provider = SharedCredentialsProvider::new(ObservedAssumeRole {
                            inner: builder.build().await,
                            region: target.region.clone(),
                            observer: self.settings.observer.clone(),
                        });
                        self.assumed.insert(key, provider.clone());
                        provider
                    }
                };
                base.into_builder().credentials_provider(provider).build()
            }
        };
        let mut eks = aws_sdk_eks::config::Builder::from(&config);
        if let Some(url) = &target.endpoint_url {
            eks = eks.endpoint_url(endpoint(url));
        }
        let mut sts = aws_sdk_sts::config::Builder::from(&config);
        if let Some(url) = &target.sts_endpoint_url {
            sts = sts.endpoint_url(endpoint(url));
        }
        SdkEks {
            eks: aws_sdk_eks::Client::from_conf(eks.build()),
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            region: target.region.clone(),
            observer: self.settings.observer.clone(),
        }
    }

    async fn base_config(&mut self, aws_profile: Option<String>, region: String) -> SdkConfig {
        let key = (aws_profile, region);
        if let Some(config) = self.base.get(&key) {
            return config.clone();
        }
        let timeout = self.settings.timeout;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(key.1.clone()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeout.min(Duration::from_secs(5)))
                    .operation_attempt_timeout(timeout)
                    .operation_timeout(timeout)
                    .build(),
            );
        if let Some(profile) = &key.0 {
            loader = loader.profile_name(profile);
        }
        if let Some(keys) = &self.settings.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                &keys.access_key_id,
                keys.secret_access_key.expose(),
                None,
                None,
                "static",
            ));
        }
        let config = loader.load().await;
        self.base.insert(key, config.clone());
        config
    }
}

/// aws-config's `AssumeRoleProvider`, with each of its calls (one STS `AssumeRole` attempt,
/// since retries are off) told to the observer.
#[derive(Debug)]
struct ObservedAssumeRole {
    inner: AssumeRoleProvider,
    region: String,
    observer: Option<Arc<dyn CallObserver>>,
}

impl ProvideCredentials for ObservedAssumeRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let started = Instant::now();
            let result = self.inner.provide_credentials().await;
            if let Some(observer) = &self.observer {
                let outcome = match &result {
                    Ok(_) => Ok(()),
                    Err(error) => Err(credentials_failure(error, 0)
                        .map_or(ErrorKind::Other, |failure| failure.kind)),
                };
                let elapsed = started.elapsed();
                observer.observe(&self.region, Operation::AssumeRole, outcome, elapsed);
            }
            result
        })
    }
}

/// A URL as the SDK wants an endpoint: without the trailing slash `Url` adds to a bare host.
fn endpoint(url: &url::Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// How deep classification follows a credential provider's error into the SDK error of the
/// call it made (a role assumed with credentials that are themselves assumed ...).
const MAX_NESTING: usize = 4;

/// The longest message a [`CallError`] keeps, in characters.
const MAX_CALL_MESSAGE: usize = 1024;

/// Classifies an SDK error and keeps its message.
fn call_error<E>(operation: Operation, error: &SdkError<E, HttpResponse>) -> CallError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let (kind, message, credentials) = match unsigned(error, 0) {
        Some(failure) => (failure.kind, failure.text, Some(failure.problem)),
        None => (classify(error), sdk_text(error), None),
    };
    CallError {
        operation,
        kind,
        message: for_display(&message, MAX_CALL_MESSAGE).into_owned(),
        credentials,
    }
}

/// What the SDK said: the service's own words (`HTTP 429 ThrottlingException: Rate
/// exceeded`), or the error chain as one line.
fn sdk_text<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match error {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let err = context.err();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
                (Some(code), None) => format!("HTTP {status} {code}"),
                _ => format!("HTTP {status}: {}", chain_text(err)),
            }
        }
        _ => chain_text(error),
    }
}

/// The error kind of an SDK error (DESIGN.md "Errors").
pub fn classify<E>(error: &SdkError<E, HttpResponse>) -> ErrorKind
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    classify_at(error, 0)
}

/// [`classify`], `depth` credential providers deep. It looks at the error's sources only,
/// never at the error itself again, so it cannot re-enter itself on the same error.
fn classify_at<E>(error: &SdkError<E, HttpResponse>, depth: usize) -> ErrorKind
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match error {
        SdkError::ServiceError(context) => {
            classify_service(context.err().code(), context.raw().status().as_u16())
        }
        SdkError::TimeoutError(_) => ErrorKind::Timeout,
        SdkError::DispatchFailure(failure) => {
            if let Some(unsigned) = unsigned(error, depth) {
                unsigned.kind
            } else if failure.is_timeout() {
                ErrorKind::Timeout
            } else if failure.is_io() {
                ErrorKind::Network
            } else {
                ErrorKind::Other
            }
        }
        SdkError::ResponseError(_) => {
            if chain(error).any(|e| e.is::<std::io::Error>()) {
                ErrorKind::Network
            } else {
                ErrorKind::Malformed
            }
        }
        _ => unsigned(error, depth).map_or(ErrorKind::Other, |failure| failure.kind),
    }
}

/// A call that could not be signed: how it is classified, why, and what to fix.
#[derive(Debug)]
struct CredentialsFailure {
    kind: ErrorKind,
    problem: CredentialsProblem,
    text: String,
}

/// Why an SDK error's request could not be signed, from its sources (never the error itself);
/// `None` when it was signed, or when the failure is nested deeper than [`MAX_NESTING`].
fn unsigned<E>(error: &SdkError<E, HttpResponse>, depth: usize) -> Option<CredentialsFailure>
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    if matches!(
        error,
        SdkError::ServiceError(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
    ) || depth >= MAX_NESTING
    {
        return None;
    }
    credentials_failure(StdError::source(error)?, depth)
}

/// The first failure to get credentials in a source chain (a role that cannot be assumed, no
/// credentials at all), `depth` providers deep.
fn credentials_failure(
    error: &(dyn StdError + 'static),
    depth: usize,
) -> Option<CredentialsFailure> {
    chain(error).find_map(|err| {
        if let Some(assume) = err.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
            return Some(assume_role_failure(assume, depth + 1));
        }
        let failure = |kind, problem, what: &str| CredentialsFailure {
            kind,
            problem,
            text: format!("{what} ({})", chain_text(err)),
        };
        match err.downcast_ref::<CredentialsError>()? {
            CredentialsError::CredentialsNotLoaded(_) => Some(failure(
                ErrorKind::AccessDenied,
                CredentialsProblem::NotFound,
                "no credentials found; give the process credentials (environment, shared \
                 config files, instance or pod identity) or set the target's `profile`",
            )),
            CredentialsError::ProviderTimedOut(_) => Some(failure(
                ErrorKind::Timeout,
                CredentialsProblem::Other,
                "the credential provider did not answer in time",
            )),
            // Look further down the chain for the provider's own error.
            CredentialsError::ProviderError(_) => None,
            _ => Some(failure(
                ErrorKind::Other,
                CredentialsProblem::Other,
                "cannot get credentials",
            )),
        }
    })
}

/// Why STS `AssumeRole` failed, `depth` providers deep, in words that say what to fix.
fn assume_role_failure(
    error: &SdkError<AssumeRoleError, HttpResponse>,
    depth: usize,
) -> CredentialsFailure {
    if let Some(inner) = unsigned(error, depth) {
        // AssumeRole itself could not be signed.
        let text = match inner.problem {
            CredentialsProblem::NotFound => format!(
                "cannot assume the role: no source credentials to call STS AssumeRole with: {}",
                inner.text
            ),
            _ => format!("cannot assume the role: {}", inner.text),
        };
        return CredentialsFailure { text, ..inner };
    }
    let kind = classify_at(error, depth);
    let details = sdk_text(error);
    let (problem, text) = match kind {
        ErrorKind::Network | ErrorKind::Timeout => (
            CredentialsProblem::StsUnreachable,
            format!(
                "cannot assume the role: STS is unreachable ({details}); check sts_endpoint_url \
                 and the network path to STS"
            ),
        ),
        ErrorKind::AccessDenied => (
            CredentialsProblem::AssumeRoleDenied,
            format!(
                "cannot assume the role: STS denied AssumeRole ({details}); check the role's \
                 trust policy, external_id and the caller's sts:AssumeRole permission"
            ),
        ),
        ErrorKind::Throttled => (
            CredentialsProblem::StsThrottled,
            format!("cannot assume the role: STS throttled AssumeRole ({details}); retrying"),
        ),
        ErrorKind::Server => (
            CredentialsProblem::StsFailed,
            format!("cannot assume the role: STS failed AssumeRole ({details}); retrying"),
        ),
        _ => (
            CredentialsProblem::Other,
            format!("cannot assume the role: AssumeRole failed ({details})"),
        ),
    };
    CredentialsFailure {
        kind,
        problem,
        text,
    }
}

/// The kind of an error answer, from its code first and its HTTP status second. Error codes
/// are matched as AWS's SDKs match them, so endpoints that send `__type` in the body instead of
/// `x-amzn-ErrorType`, or other throttling codes, are classified the same.
pub fn classify_service(code: Option<&str>, status: u16) -> ErrorKind {
    match code {
        Some(
            "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "SlowDown"
            | "LimitExceededException"
            | "PriorRequestNotComplete",
        ) => ErrorKind::Throttled,
        Some("ResourceNotFoundException" | "NotFoundException" | "NoSuchEntity") => {
            ErrorKind::NotFound
        }
        Some(
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "MissingAuthenticationTokenException"
            | "MissingAuthenticationToken"
            | "UnauthorizedOperation"
            | "NotAuthorizedException"
            | "IncompleteSignature"
            | "RegionDisabledException",
        ) => ErrorKind::AccessDenied,
        Some("ServerException" | "InternalFailure" | "ServiceUnavailable" | "InternalError") => {
            ErrorKind::Server
        }
        _ => match status {
            429 => ErrorKind::Throttled,
            404 => ErrorKind::NotFound,
            401 | 403 => ErrorKind::AccessDenied,
            500.. => ErrorKind::Server,
            // A success status whose body did not parse as the operation's answer.
            200..=299 => ErrorKind::Malformed,
            _ => ErrorKind::Other,
        },
    }
}

/// An error and its sources as one line (`dispatch failure: io error: Connection refused`),
/// without the SDK's Debug dumps.
fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for err in chain(error) {
        let text = err.to_string();
        // Some errors repeat their source in their own message.
        if !text.is_empty() && !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
    }
    // Multi-line messages (a credential chain's attempts) become `; `-separated.
    let text = parts.join(": ");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines.join("; ").replace(":; ", ": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_come_before_statuses() {
        assert_eq!(
            classify_service(Some("ThrottlingException"), 400),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify_service(Some("TooManyRequestsException"), 429),
            ErrorKind::Throttled
        );
        assert_eq!(classify_service(None, 429), ErrorKind::Throttled);
        assert_eq!(
            classify_service(Some("ResourceNotFoundException"), 404),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify_service(Some("AccessDeniedException"), 403),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            classify_service(Some("UnrecognizedClientException"), 403),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            classify_service(Some("ExpiredTokenException"), 400),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            classify_service(Some("ServerException"), 500),
            ErrorKind::Server
        );
        assert_eq!(
            classify_service(Some("ServiceUnavailable"), 503),
            ErrorKind::Server
        );
        assert_eq!(classify_service(None, 502), ErrorKind::Server);
        assert_eq!(classify_service(None, 200), ErrorKind::Malformed);
        assert_eq!(
            classify_service(Some("InvalidParameterException"), 400),
            ErrorKind::Other
        );
        assert_eq!(
            classify_service(Some("SomethingNew"), 409),
            ErrorKind::Other
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    #[test]
    fn error_chains_read_as_one_line_without_repeats() {
        let inner = Layer {
            text: "no credentials found in chain. Attempted:\n  Environment: not set\n  Profile: none",
            source: None,
        };
        let middle = Layer {
            text: "other",
            source: Some(Box::new(inner)),
        };
        let outer = Layer {
            text: "dispatch failure",
            source: Some(Box::new(middle)),
        };
        assert_eq!(
            chain_text(&outer),
            "dispatch failure: other: no credentials found in chain. Attempted: \
             Environment: not set; Profile: none"
        );
        let repeating = Layer {
            text: "io error: connection refused",
            source: Some(Box::new(Layer {
                text: "connection refused",
                source: None,
            })),
        };
        assert_eq!(chain_text(&repeating), "io error: connection refused");
    }

    type StsError = SdkError<AssumeRoleError, HttpResponse>;

    fn refused() -> StsError {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        SdkError::dispatch_failure(aws_sdk_sts::error::ConnectorError::io(Box::new(io)))
    }

    /// An AssumeRole failure wrapped as a credential provider's error, as the SDK hands it up
    /// to the call that wanted the credentials.
    fn provided(inner: StsError) -> StsError {
        let provider = CredentialsError::provider_error(inner);
        SdkError::dispatch_failure(aws_sdk_sts::error::ConnectorError::other(
            Box::new(provider),
            None,
        ))
    }

    #[test]
    fn an_unreachable_sts_is_classified_without_reentering_the_same_error() {
        // The chain of an AssumeRole dispatch failure starts with the error itself: this
        // overflowed the stack when classification looked at it again.
        assert_eq!(classify(&refused()), ErrorKind::Network);
        let failure = credentials_failure(&CredentialsError::provider_error(refused()), 0)
            .expect("a credentials failure");
        assert_eq!(failure.kind, ErrorKind::Network);
        assert_eq!(failure.problem, CredentialsProblem::StsUnreachable);
        assert!(
            failure.text.contains("STS is unreachable"),
            "{}",
            failure.text
        );
        let error = call_error(Operation::GetCallerIdentity, &provided(refused()));
        assert_eq!(error.kind, ErrorKind::Network);
        assert_eq!(error.credentials, Some(CredentialsProblem::StsUnreachable));
        assert!(error.needs_person());
    }

    #[test]
    fn deeply_nested_providers_are_classified_to_a_bounded_depth() {
        let mut error = refused();
        for _ in 0..200 {
            error = provided(error);
        }
        // Deeper than MAX_NESTING the credentials are not followed: a plain dispatch failure.
        assert_eq!(classify(&error), ErrorKind::Other);
        let mut shallow = refused();
        for _ in 0..MAX_NESTING - 1 {
            shallow = provided(shallow);
        }
        assert_eq!(classify(&shallow), ErrorKind::Network);
    }

    /// An error whose source is itself.
    #[derive(Debug)]
    struct Loop;

    impl std::fmt::Display for Loop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("loop")
        }
    }

    impl StdError for Loop {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self)
        }
    }

    #[test]
    fn a_self_referencing_chain_is_walked_a_bounded_number_of_steps() {
        assert_eq!(chain(&Loop).count(), crate::model::MAX_CHAIN);
        assert_eq!(chain_text(&Loop), "loop");
        let error: StsError = SdkError::dispatch_failure(
            aws_sdk_sts::error::ConnectorError::other(Box::new(Loop), None),
        );
        assert_eq!(classify(&error), ErrorKind::Other);
        assert!(credentials_failure(&Loop, 0).is_none());
    }

    mod kinds {
        use aws_sdk_eks::primitives::DateTime;
        use aws_sdk_eks::types::{
            Addon, AddonHealth, AddonIssue, AddonIssueCode, AddonStatus, Capability,
            CapabilityHealth, CapabilityIssue, CapabilityIssueCode, CapabilityStatus,
            CapacityTypes, Cluster, ClusterHealth, ClusterIssue, ClusterIssueCode, ClusterStatus,
            Issue, Nodegroup, NodegroupHealth, NodegroupIssueCode, NodegroupScalingConfig,
            NodegroupStatus,
        };

        use super::*;

        fn at() -> DateTime {
            DateTime::from_secs(1_795_428_240)
        }

        #[test]
        fn a_node_group_gives_its_labels_sizes_and_issues_with_unknown_values_verbatim() {
            let issue = Issue::builder()
                .code(NodegroupIssueCode::AsgInstanceLaunchFailures)
                .message("launch failed")
                .resource_ids("asg-1")
                .build();
            let future = Issue::builder()
                .code(NodegroupIssueCode::from("SomeFutureCode"))
                .build();
            let group = Nodegroup::builder()
                .nodegroup_arn("arn:aws:eks:us-east-1:111122223333:nodegroup/prod/ng/1")
                .created_at(at())
                .status(NodegroupStatus::from("SOME_FUTURE_STATUS"))
                .node_role("arn:aws:iam::111122223333:role/node")
                .capacity_type(CapacityTypes::Spot)
                .release_version("1.33.0-20250101")
                .scaling_config(
                    NodegroupScalingConfig::builder()
                        .desired_size(3)
                        .min_size(1)
                        .max_size(10)
                        .build(),
                )
                .health(
                    NodegroupHealth::builder()
                        .issues(issue)
                        .issues(future)
                        .build(),
                )
                .build();
            let described = nodegroup_from_sdk(&group).unwrap();
            assert_eq!(described.status.as_str(), "SOME_FUTURE_STATUS");
            assert_eq!(described.created_at, Timestamp::from_secs(1_795_428_240));
            let info: Vec<(&str, &str)> = described
                .info
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(
                info,
                [
                    ("capacity_type", "SPOT"),
                    ("node_role_arn", "arn:aws:iam::111122223333:role/node"),
                    ("release_version", "1.33.0-20250101"),
                ]
            );
            let sizes: Vec<(&str, i64)> = described
                .values
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect();
            assert_eq!(
                sizes,
                [("desired_size", 3), ("max_size", 10), ("min_size", 1)]
            );
            let codes: Vec<&str> = described.issues.iter().map(|i| i.code.as_str()).collect();
            assert_eq!(codes, ["AsgInstanceLaunchFailures", "SomeFutureCode"]);
            assert_eq!(described.issues[0].resource_ids, ["asg-1"]);
        }

        #[test]
        fn an_add_on_a_cluster_and_a_capability_give_their_labels_and_issues() {
            let addon = Addon::builder()
                .addon_arn("arn:aws:eks:us-east-1:111122223333:addon/prod/vpc-cni/1")
                .created_at(at())
                .status(AddonStatus::Degraded)
                .addon_version("v1.19.0-eksbuild.1")
                .health(
                    AddonHealth::builder()
                        .issues(
                            AddonIssue::builder()
                                .code(AddonIssueCode::InsufficientNumberOfReplicas)
                                .message("1 of 2 ready")
                                .build(),
                        )
                        .build(),
                )
                .build();
            let described = addon_from_sdk(&addon).unwrap();
            assert_eq!(described.status.as_str(), "DEGRADED");
            assert_eq!(described.info["addon_version"], "v1.19.0-eksbuild.1");
            assert_eq!(
                described.issues[0].code.as_str(),
                "InsufficientNumberOfReplicas"
            );
            assert!(described.values.is_empty());

            let cluster = Cluster::builder()
                .arn("arn:aws:eks:us-east-1:111122223333:cluster/prod")
                .created_at(at())
                .status(ClusterStatus::Active)
                .version("1.33")
                .platform_version("eks.9")
                .health(
                    ClusterHealth::builder()
                        .issues(
                            ClusterIssue::builder()
                                .code(ClusterIssueCode::KmsKeyDisabled)
                                .resource_ids("key-1")
                                .build(),
                        )
                        .build(),
                )
                .build();
            let described = cluster_from_sdk(&cluster).unwrap();
            assert_eq!(described.info["version"], "1.33");
            assert_eq!(described.info["platform_version"], "eks.9");
            assert_eq!(described.issues[0].resource_ids, ["key-1"]);

            let capability = Capability::builder()
                .arn("arn:aws:eks:us-east-1:111122223333:capability/prod/argo/1")
                .created_at(at())
                .status(CapabilityStatus::CreateFailed)
                .health(
                    CapabilityHealth::builder()
                        .issues(
                            CapabilityIssue::builder()
                                .code(CapabilityIssueCode::AccessDenied)
                                .build(),
                        )
                        .build(),
                )
                .build();
            let described = capability_from_sdk(&capability).unwrap();
            assert_eq!(described.status.as_str(), "CREATE_FAILED");
            assert!(described.info.is_empty());
            assert!(described.issues[0].resource_ids.is_empty());
        }

        #[test]
        fn a_missing_arn_created_at_or_status_is_malformed_for_the_kind_s_operation() {
            let no_status = Nodegroup::builder()
                .nodegroup_arn("arn")
                .created_at(at())
                .build();
            let error = nodegroup_from_sdk(&no_status).unwrap_err();
            assert_eq!(
                (error.operation, error.kind),
                (Operation::DescribeNodegroup, ErrorKind::Malformed)
            );
            assert!(error.message.contains("status"), "{}", error.message);
            let no_arn = Addon::builder()
                .created_at(at())
                .status(AddonStatus::Active)
                .build();
            let error = addon_from_sdk(&no_arn).unwrap_err();
            assert_eq!(error.operation, Operation::DescribeAddon);
            let no_created = Cluster::builder()
                .arn("arn")
                .status(ClusterStatus::Active)
                .build();
            let error = cluster_from_sdk(&no_created).unwrap_err();
            assert_eq!(error.operation, Operation::DescribeCluster);
            assert!(error.message.contains("createdAt"), "{}", error.message);
        }
    }

    mod conversion {
        use aws_sdk_eks::primitives::DateTime;
        use aws_sdk_eks::types::{
            FargateProfileHealth, FargateProfileIssue, FargateProfileIssueCode,
            FargateProfileStatus,
        };
        use proptest::prelude::*;

        use super::super::*;

        fn sdk_profile(
            created_at: f64,
            status: &str,
            code: &str,
            message: &str,
            ids: Vec<String>,
        ) -> aws_sdk_eks::types::FargateProfile {
            let issue = FargateProfileIssue::builder()
                .code(FargateProfileIssueCode::from(code))
                .message(message)
                .set_resource_ids(Some(ids))
                .build();
            aws_sdk_eks::types::FargateProfile::builder()
                .fargate_profile_name("p")
                .fargate_profile_arn("arn:aws:eks:us-east-1:111122223333:fargateprofile/c/p/1")
                .created_at(DateTime::from_secs_f64(created_at))
                .status(FargateProfileStatus::from(status))
                .health(FargateProfileHealth::builder().issues(issue).build())
                .build()
        }

        #[test]
        fn out_of_range_times_clamp_and_huge_texts_are_bounded() {
            let huge = "S".repeat(70_000);
            let profile = profile_from_sdk(&sdk_profile(1e12, &huge, "X", "m", vec![])).unwrap();
            assert_eq!(profile.created_at, Timestamp::MAX);
            assert_eq!(profile.created_at.to_rfc3339(), "9999-12-31T23:59:59Z");
            assert!(profile.status.as_str().len() <= MAX_NAME_BYTES);
            assert!(profile.status.as_str().ends_with('…'));
            let before = profile_from_sdk(&sdk_profile(-1e9, "ACTIVE", "X", "m", vec![])).unwrap();
            assert_eq!(before.created_at, Timestamp::MIN);
            assert_eq!(before.status, Status::from_wire("ACTIVE"));
            let fine = profile_from_sdk(&sdk_profile(1_795_428_240.5, "ACTIVE", "X", "m", vec![]))
                .unwrap();
            assert_eq!(fine.created_at.as_millis(), 1_795_428_240_500);
        }

        proptest! {
            #[test]
            fn any_profile_converts_within_bounds(
                created_at in prop_oneof![
                    any::<f64>(),
                    Just(f64::NAN),
                    Just(f64::INFINITY),
                    Just(f64::NEG_INFINITY),
                    Just(1e12),
                    -1e13..1e13f64,
                ],
                status in ".{0,300}",
                code in ".{0,300}",
                message in prop_oneof![".{0,200}", "[\\x00-\\x1f<>&\"é日]{0,5000}"],
                ids in prop::collection::vec(".{0,3000}", 0..4),
            ) {
                let sdk = sdk_profile(created_at, &status, &code, &message, ids);
                let profile = profile_from_sdk(&sdk).unwrap();
                prop_assert!(Timestamp::MIN <= profile.created_at);
                prop_assert!(profile.created_at <= Timestamp::MAX);
                let _ = profile.created_at.to_rfc3339();
                prop_assert!(profile.status.as_str().len() <= MAX_NAME_BYTES);
                for issue in &profile.issues {
                    prop_assert!(issue.code.as_str().len() <= MAX_NAME_BYTES);
                    prop_assert!(issue.message.len() <= MAX_MESSAGE_BYTES);
                    prop_assert!(issue.resource_ids.iter().all(|id| id.len() <= MAX_ID_BYTES));
                }
                let key = ResourceKey::fargate_profile("111122223333", "us-east-1", "c", "p");
                let observation = profile.into_observation(key, Timestamp::from_secs(1));
                let _ = crate::model::merge_issues(&observation.issues);
            }
        }
    }
}
