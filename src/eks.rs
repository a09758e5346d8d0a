//! The AWS adapter: a small trait for the calls the monitor makes ([`Eks`]) and its
//! implementation with the official `aws-sdk-eks`, `aws-sdk-sts` and `aws-config`
//! ([`SdkEks`], built per target by a [`Connector`]).
//!
//! Every call has an operation and an attempt timeout, the SDK's own retries are off (the
//! caller owns retries, so every HTTP attempt is seen and rate-limited), and every failure is
//! classified into one of DESIGN.md's error kinds. SDK types are converted to the project's model
//! here and go no further.

use std::collections::HashMap;
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
use crate::model::{ErrorKind, Incarnation, IssueCode, Observation, Operation, ProfileKey};
use crate::model::{RawIssue, Status, Timestamp};
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

/// A described Fargate profile, in the project's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FargateProfile {
    pub arn: String,
    pub created_at: Timestamp,
    pub status: Status,
    pub pod_execution_role_arn: Option<String>,
    pub issues: Vec<RawIssue>,
}

impl FargateProfile {
    /// The diff's input for this answer about `key`, observed at `observed_at`.
    pub fn into_observation(self, key: ProfileKey, observed_at: Timestamp) -> Observation {
        let mut info = std::collections::BTreeMap::new();
        if let Some(role) = self.pod_execution_role_arn {
            info.insert("pod_execution_role_arn".to_owned(), role);
        }
        Observation {
            key,
            incarnation: Incarnation {
                arn: self.arn,
                created_at: self.created_at,
            },
            status: self.status,
            info,
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
}

impl CallError {
    pub fn new(operation: Operation, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            operation,
            kind,
            message: message.into(),
        }
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

    /// One page of `ListFargateProfiles` of `cluster`.
    fn list_fargate_profiles(
        &self,
        cluster: &str,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<Page, CallError>> + Send;

    /// `DescribeFargateProfile`.
    fn describe_fargate_profile(
        &self,
        cluster: &str,
        profile: &str,
    ) -> impl Future<Output = Result<FargateProfile, CallError>> + Send;
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

    async fn list_fargate_profiles(
        &self,
        cluster: &str,
        next_token: Option<String>,
    ) -> Result<Page, CallError> {
        let page = self.list_fargate_profiles_page(cluster, next_token);
        self.observed(Operation::ListFargateProfiles, page).await
    }

    async fn describe_fargate_profile(
        &self,
        cluster: &str,
        profile: &str,
    ) -> Result<FargateProfile, CallError> {
        let described = self.describe(cluster, profile);
        self.observed(Operation::DescribeFargateProfile, described)
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

    async fn list_fargate_profiles_page(
        &self,
        cluster: &str,
        next_token: Option<String>,
    ) -> Result<Page, CallError> {
        let output = self
            .eks
            .list_fargate_profiles()
            .cluster_name(cluster)
            .max_results(PAGE_SIZE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|err| call_error(Operation::ListFargateProfiles, &err))?;
        Ok(Page::new(
            output.fargate_profile_names(),
            output.next_token(),
        ))
    }

    async fn describe(&self, cluster: &str, profile: &str) -> Result<FargateProfile, CallError> {
        let operation = Operation::DescribeFargateProfile;
        let output = self
            .eks
            .describe_fargate_profile()
            .cluster_name(cluster)
            .fargate_profile_name(profile)
            .send()
            .await
            .map_err(|err| call_error(operation, &err))?;
        let malformed = |what: &str| CallError::new(operation, ErrorKind::Malformed, what);
        let described = output
            .fargate_profile()
            .ok_or_else(|| malformed("no fargateProfile in the answer"))?;
        let arn = described
            .fargate_profile_arn()
            .filter(|arn| !arn.is_empty())
            .ok_or_else(|| malformed("no fargateProfileArn in the answer"))?;
        let created_at = described
            .created_at()
            .map(|at| {
                // EKS sends epoch seconds as a decimal number; round what the float parse
                // gives to the millisecond it stands for.
                at.secs().saturating_mul(1000).saturating_add(i64::from(
                    at.subsec_nanos().saturating_add(500_000) / 1_000_000,
                ))
            })
            .ok_or_else(|| malformed("no createdAt in the answer"))?;
        let status = described
            .status()
            .ok_or_else(|| malformed("no status in the answer"))?;
        let issues = described
            .health()
            .map(|health| health.issues())
            .unwrap_or_default()
            .iter()
            .map(|issue| RawIssue {
                // An entry without a code is kept, under the code `Unknown`.
                code: IssueCode::from_wire(
                    issue
                        .code()
                        .map(|c| c.as_str())
                        .filter(|c| !c.is_empty())
                        .unwrap_or("Unknown"),
                ),
                message: issue.message().unwrap_or_default().to_owned(),
                resource_ids: issue.resource_ids().to_vec(),
            })
            .collect();
        Ok(FargateProfile {
            arn: arn.to_owned(),
            created_at: Timestamp::from_millis(created_at),
            status: Status::from_wire(status.as_str()),
            pod_execution_role_arn: described.pod_execution_role_arn().map(str::to_owned),
            issues,
        })
    }
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
                    Err(error) => Err(credentials_kind(error).unwrap_or(ErrorKind::Other)),
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

/// Classifies an SDK error and keeps its message.
fn call_error<E>(operation: Operation, error: &SdkError<E, HttpResponse>) -> CallError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let message = match error {
        // The service's own words: `HTTP 429 ThrottlingException: Rate exceeded`.
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
    };
    CallError::new(operation, classify(error), message)
}

/// The error kind of an SDK error (DESIGN.md "Errors").
pub fn classify<E>(error: &SdkError<E, HttpResponse>) -> ErrorKind
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match error {
        SdkError::ServiceError(context) => {
            classify_service(context.err().code(), context.raw().status().as_u16())
        }
        SdkError::TimeoutError(_) => ErrorKind::Timeout,
        SdkError::DispatchFailure(failure) => {
            if let Some(kind) = credentials_kind(error) {
                kind
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
        _ => credentials_kind(error).unwrap_or(ErrorKind::Other),
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

/// The kind of a failure to get credentials (a role that cannot be assumed, no credentials at
/// all), found in the error's source chain.
fn credentials_kind(error: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    chain(error).find_map(|err| {
        if let Some(assume) = err.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
            return Some(classify(assume));
        }
        match err.downcast_ref::<CredentialsError>()? {
            CredentialsError::CredentialsNotLoaded(_) => Some(ErrorKind::AccessDenied),
            CredentialsError::ProviderTimedOut(_) => Some(ErrorKind::Timeout),
            // Look further down the chain for the provider's own error.
            CredentialsError::ProviderError(_) => None,
            _ => Some(ErrorKind::Other),
        }
    })
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

/// An error and its sources.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |err: &&'a (dyn StdError + 'static)| {
        (*err).source()
    })
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
}
