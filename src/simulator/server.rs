//! The simulator's HTTP layer (hyper 1): the AWS port speaks EKS REST-JSON and STS Query/XML
//! as the real services do, and the control port takes JSON commands and serves the request
//! log. The account of each AWS request comes from the access key id in its SigV4
//! `Authorization` header; signatures are not checked.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request as HttpRequest, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::world::{
    Addon, Capability, Cluster, Command, Failure, Health, IssueSpec, Nodegroup, Page, Profile,
    Refusal, Request, World,
};
use crate::clock::Clock;
use crate::model::{Kind, Operation, ResourceKey};

/// The world shared by the servers and the Rust handle.
pub type SharedWorld = Arc<Mutex<World>>;

/// Locks the world; a panic elsewhere while it was held leaves data that is still usable.
pub fn lock(world: &SharedWorld) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The largest request body read (STS forms and control commands are small).
const BODY_LIMIT: usize = 4 << 20;

type Reply = Response<Full<Bytes>>;

/// Serves connections from `listener` until the task is dropped.
pub async fn serve<F, Fut>(listener: TcpListener, world: SharedWorld, clock: Clock, handler: F)
where
    F: Fn(HttpRequest<Incoming>, SharedWorld, Clock) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(%error, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (world, clock) = (world.clone(), clock.clone());
        let handler = handler.clone();
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let reply = handler(request, world.clone(), clock.clone());
                async move { Ok::<_, Infallible>(reply.await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_static("00000000-0000-4000-8000-000000000000"),
    );
    response
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    reply(status, "application/json", body.to_string())
}

/// An EKS error: the status, `x-amzn-ErrorType` and a JSON `message`.
fn eks_error(status: StatusCode, code: &'static str, message: &str) -> Reply {
    let mut response = json_reply(status, &json!({ "message": message }));
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(code));
    response
}

/// An STS error document.
fn sts_error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error>\
         <RequestId>00000000-0000-4000-8000-000000000000</RequestId></ErrorResponse>",
        xml_escape(code),
        xml_escape(message)
    );
    reply(status, "text/xml", body)
}

/// Handles one request to the AWS port.
pub async fn handle_aws(request: HttpRequest<Incoming>, world: SharedWorld, clock: Clock) -> Reply {
    let _in_flight = InFlight::begin(&world);
    let (parts, body) = request.into_parts();
    let form = if parts.method == Method::POST {
        match Limited::new(body, BODY_LIMIT).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return sts_error(StatusCode::BAD_REQUEST, "InvalidRequest", "body too large");
            }
        }
    } else {
        // The Query protocol also allows its parameters in a GET's query string.
        Bytes::copy_from_slice(parts.uri.query().unwrap_or("").as_bytes())
    };
    let route = match route(&parts.method, parts.uri.path(), &form) {
        Ok(route) => route,
        Err(unrouted) => return unrouted.reply(),
    };
    let (access_key_id, region) = signing_scope(&parts.headers);
    let mut request = Request {
        operation: route.operation,
        access_key_id,
        account_id: None,
        region,
        cluster: route.cluster.clone(),
        profile: route
            .name
            .clone()
            .filter(|_| route.operation == Operation::DescribeFargateProfile),
        name: route.name.clone(),
    };
    let query = parts.uri.query().unwrap_or("");
    let (delay, reply) = answer(&mut lock(&world), &mut request, &route, query, &clock);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    reply
}

/// Counts a request as in progress until it is dropped, answered or abandoned.
struct InFlight(SharedWorld);

impl InFlight {
    fn begin(world: &SharedWorld) -> Self {
        lock(world).begin_request();
        Self(world.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).end_request();
    }
}

/// What a request asks for.
struct Route {
    operation: Operation,
    cluster: Option<String>,
    /// The described resource (for `DescribeCluster`, the cluster).
    name: Option<String>,
    /// STS form parameters.
    params: Vec<(String, String)>,
}

/// Why a request names no operation.
enum Unrouted {
    /// An STS form with an `Action` we do not serve.
    Action(String),
    Path,
}

impl Unrouted {
    fn reply(&self) -> Reply {
        match self {
            Unrouted::Action(action) => sts_error(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                &format!("Could not find operation {action}"),
            ),
            Unrouted::Path => eks_error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                "The requested operation is not recognized by the service.",
            ),
        }
    }
}

fn route(method: &Method, path: &str, form: &[u8]) -> Result<Route, Unrouted> {
    let route = |operation, cluster: Option<&str>, name: Option<&str>| Route {
        operation,
        cluster: cluster.map(percent_decode),
        name: name.map(percent_decode),
        params: Vec::new(),
    };
    if (method == Method::POST || method == Method::GET) && path == "/" {
        let params: Vec<(String, String)> =
            url::form_urlencoded::parse(form).into_owned().collect();
        let action = params
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.as_str());
        let operation = match action {
            Some("GetCallerIdentity") => Operation::GetCallerIdentity,
            Some("AssumeRole") => Operation::AssumeRole,
            other => return Err(Unrouted::Action(other.unwrap_or_default().to_owned())),
        };
        return Ok(Route {
            params,
            ..route(operation, None, None)
        });
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let found = match (method, segments.as_slice()) {
        (&Method::GET, ["clusters"]) => Some(route(Operation::ListClusters, None, None)),
        (&Method::GET, ["clusters", cluster]) => Some(route(
            Operation::DescribeCluster,
            Some(cluster),
            Some(cluster),
        )),
        (&Method::GET, ["clusters", cluster, collection]) => {
            let kind = collection_kind(collection)?;
            Some(route(kind.spec().list, Some(cluster), None))
        }
        (&Method::GET, ["clusters", cluster, collection, name]) => {
            let kind = collection_kind(collection)?;
            Some(route(kind.spec().describe, Some(cluster), Some(name)))
        }
        _ => None,
    };
    found.ok_or(Unrouted::Path)
}

/// The kind of a cluster's collection path segment, as the SDK writes it.
fn collection_kind(segment: &str) -> Result<Kind, Unrouted> {
    match segment {
        "fargate-profiles" => Ok(Kind::FARGATE_PROFILE),
        "node-groups" => Ok(Kind::NODEGROUP),
        "addons" => Ok(Kind::ADDON),
        "capabilities" => Ok(Kind::CAPABILITY),
        _ => Err(Unrouted::Path),
    }
}

/// Answers a routed request, with faults applied, and logs it; also returns how long to delay
/// the answer, in milliseconds.
fn answer(
    world: &mut World,
    request: &mut Request,
    route: &Route,
    query: &str,
    clock: &Clock,
) -> (u64, Reply) {
    let (delay, reply) = respond(world, request, route, query, clock);
    world.log(request, reply.status().as_u16(), clock.now());
    (delay, reply)
}

fn respond(
    world: &mut World,
    request: &mut Request,
    route: &Route,
    query: &str,
    clock: &Clock,
) -> (u64, Reply) {
    let sts = super::world::is_sts(request.operation);
    if request.access_key_id.is_none() || request.region.is_none() {
        let reply = match sts {
            true => sts_error(
                StatusCode::FORBIDDEN,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ),
            false => eks_error(
                StatusCode::FORBIDDEN,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
        };
        return (0, reply);
    }
    let Some(account) = world.authenticate(request) else {
        let message = "The security token included in the request is invalid.";
        let reply = match sts {
            true => sts_error(StatusCode::FORBIDDEN, "InvalidClientTokenId", message),
            false => eks_error(
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
                message,
            ),
        };
        return (0, reply);
    };
    let (delay, fault) = world.faults_for(request, clock.now());
    if let Some(fault) = fault {
        return (delay, fault_reply(fault, sts));
    }
    let region = request.region.clone().unwrap_or_default();
    let cluster = route.cluster.as_deref().unwrap_or_default();
    let reply = match request.operation {
        Operation::GetCallerIdentity => caller_identity(request, &account),
        Operation::AssumeRole => assume_role(world, &route.params, clock),
        Operation::ListClusters => page_reply(
            paging(query).and_then(|(max, token)| {
                world.list_clusters(&account, &region, max, token.as_deref())
            }),
            "clusters",
        ),
        Operation::ListFargateProfiles
        | Operation::ListNodegroups
        | Operation::ListAddons
        | Operation::ListCapabilities => {
            let kind = list_kind(request.operation);
            let key = ResourceKey::new(kind, account, region, cluster, "");
            let page =
                paging(query).and_then(|(max, token)| world.list(&key, max, token.as_deref()));
            match (page, kind.name()) {
                (Ok(page), "capability") => capabilities_page(world, &key, page),
                (page, _) => page_reply(page, list_member(kind)),
            }
        }
        Operation::DescribeCluster => {
            let key = ResourceKey::new(Kind::CLUSTER, account, region, cluster, cluster);
            described(world.describe_cluster(&key), "cluster", |found| {
                cluster_json(&key, found)
            })
        }
        Operation::DescribeFargateProfile
        | Operation::DescribeNodegroup
        | Operation::DescribeAddon
        | Operation::DescribeCapability => {
            let name = route.name.as_deref().unwrap_or_default();
            let kind = describe_kind(request.operation);
            let key = ResourceKey::new(kind, account, region, cluster, name);
            match kind.name() {
                "nodegroup" => described(world.describe_nodegroup(&key), "nodegroup", |found| {
                    nodegroup_json(world, &key, found)
                }),
                "addon" => described(world.describe_addon(&key), "addon", |found| {
                    addon_json(&key, found)
                }),
                "capability" => described(world.describe_capability(&key), "capability", |found| {
                    capability_json(&key, found)
                }),
                _ => described(world.describe(&key), "fargateProfile", |found| {
                    profile_json(&key, found)
                }),
            }
        }
    };
    (delay, reply)
}

/// The faults' answers, per protocol.
fn fault_reply(failure: Failure, sts: bool) -> Reply {
    match (failure, sts) {
        (Failure::Throttle, false) => eks_error(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Rate exceeded",
        ),
        (Failure::Throttle, true) => {
            sts_error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded")
        }
        (Failure::ServerError, false) => eks_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerException",
            "An internal error occurred.",
        ),
        (Failure::ServerError, true) => sts_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "An internal error occurred.",
        ),
        (Failure::AccessDenied, false) => eks_error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "User is not authorized to perform this action",
        ),
        (Failure::AccessDenied, true) => sts_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "User is not authorized to perform this action",
        ),
        (Failure::Malformed, false) => reply(
            StatusCode::OK,
            "application/json",
            "{\"fargateProfile\": {\"fargateProfileName\": ",
        ),
        (Failure::Malformed, true) => reply(StatusCode::OK, "text/xml", "<GetCallerIdentityResp"),
    }
}

fn refusal_reply(refusal: &Refusal) -> Reply {
    match refusal {
        Refusal::NotFound(message) => {
            eks_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
        }
        Refusal::InvalidParameter(message) => eks_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            message,
        ),
    }
}

fn paging(query: &str) -> Result<(Option<usize>, Option<String>), Refusal> {
    let mut max = None;
    let mut token = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "maxResults" => {
                max = Some(value.parse().map_err(|_| {
                    Refusal::InvalidParameter(format!("maxResults is not a number: {value}"))
                })?);
            }
            "nextToken" => token = Some(value.into_owned()),
            _ => {}
        }
    }
    Ok((max, token))
}

fn page_reply(page: Result<Page, Refusal>, member: &str) -> Reply {
    match page {
        Ok(page) => {
            let mut body = serde_json::Map::new();
            body.insert(member.to_owned(), json!(page.names));
            if let Some(token) = page.next_token {
                body.insert("nextToken".to_owned(), json!(token));
            }
            json_reply(StatusCode::OK, &Value::Object(body))
        }
        Err(refusal) => refusal_reply(&refusal),
    }
}

/// The kind listed by a list operation.
fn list_kind(operation: Operation) -> Kind {
    match operation {
        Operation::ListNodegroups => Kind::NODEGROUP,
        Operation::ListAddons => Kind::ADDON,
        Operation::ListCapabilities => Kind::CAPABILITY,
        _ => Kind::FARGATE_PROFILE,
    }
}

/// The kind described by a describe operation (but `DescribeCluster`).
fn describe_kind(operation: Operation) -> Kind {
    match operation {
        Operation::DescribeNodegroup => Kind::NODEGROUP,
        Operation::DescribeAddon => Kind::ADDON,
        Operation::DescribeCapability => Kind::CAPABILITY,
        _ => Kind::FARGATE_PROFILE,
    }
}

/// The member of a list answer that holds the names.
fn list_member(kind: Kind) -> &'static str {
    match kind.name() {
        "nodegroup" => "nodegroups",
        "addon" => "addons",
        _ => "fargateProfileNames",
    }
}

/// A describe answer: `{"<member>": {...}}`, or the refusal.
fn described<T>(
    found: Result<&T, Refusal>,
    member: &str,
    to_json: impl FnOnce(&T) -> Value,
) -> Reply {
    match found {
        Ok(found) => {
            let mut body = serde_json::Map::new();
            body.insert(member.to_owned(), to_json(found));
            json_reply(StatusCode::OK, &Value::Object(body))
        }
        Err(refusal) => refusal_reply(&refusal),
    }
}

/// `ListCapabilities` answers with summaries, not names.
fn capabilities_page(world: &World, key: &ResourceKey, page: Page) -> Reply {
    let summaries: Vec<Value> = page
        .names
        .iter()
        .filter_map(|name| {
            let key = ResourceKey::new(
                Kind::CAPABILITY,
                &key.account_id,
                &key.region,
                &key.cluster,
                name,
            );
            let capability = world.describe_capability(&key).ok()?;
            Some(json!({
                "capabilityName": capability.name,
                "arn": capability.arn,
                "type": capability.capability_type,
                "status": capability.status,
                "createdAt": capability.created_at,
                "modifiedAt": capability.created_at,
            }))
        })
        .collect();
    let mut body = json!({ "capabilities": summaries });
    if let Some(token) = page.next_token {
        body["nextToken"] = json!(token);
    }
    json_reply(StatusCode::OK, &body)
}

/// `health` as EKS serves it, when present; capabilities' issues have no resource ids.
fn health_json(health: &Health, with_resource_ids: bool) -> Option<Value> {
    let Health::Issues(issues) = health else {
        return None;
    };
    let issues: Vec<Value> = issues
        .iter()
        .map(
            |IssueSpec {
                 code,
                 message,
                 resource_ids,
             }| match with_resource_ids {
                true => json!({ "code": code, "message": message, "resourceIds": resource_ids }),
                false => json!({ "code": code, "message": message }),
            },
        )
        .collect();
    Some(json!({ "issues": issues }))
}

/// A `cluster` member as EKS serves it.
fn cluster_json(key: &ResourceKey, cluster: &Cluster) -> Value {
    let mut body = json!({
        "name": cluster.name,
        "arn": cluster.arn,
        "createdAt": cluster.created_at,
        "version": cluster.version,
        "endpoint": format!("https://{}.sim.{}.eks.amazonaws.com", key.cluster, key.region),
        "roleArn": format!("arn:aws:iam::{}:role/{}-cluster", key.account_id, key.cluster),
        "resourcesVpcConfig": {
            "subnetIds": [],
            "securityGroupIds": [],
            "endpointPublicAccess": false,
            "endpointPrivateAccess": true,
        },
        "kubernetesNetworkConfig": { "serviceIpv4Cidr": "10.100.0.0/16", "ipFamily": "ipv4" },
        "status": cluster.status,
        "certificateAuthority": { "data": "c2ltdWxhdGVk" },
        "platformVersion": cluster.platform_version,
        "tags": {},
        "accessConfig": { "authenticationMode": "API" },
        "upgradePolicy": { "supportType": "STANDARD" },
    });
    if let Some(health) = health_json(&cluster.health, true) {
        body["health"] = health;
    }
    body
}

/// A `nodegroup` member as EKS serves it.
fn nodegroup_json(world: &World, key: &ResourceKey, group: &Nodegroup) -> Value {
    let version = world
        .cluster(key)
        .map(|cluster| cluster.version.clone())
        .unwrap_or_default();
    let mut body = json!({
        "nodegroupName": group.name,
        "nodegroupArn": group.arn,
        "clusterName": key.cluster,
        "version": version,
        "releaseVersion": group.release_version,
        "createdAt": group.created_at,
        "modifiedAt": group.created_at,
        "status": group.status,
        "capacityType": group.capacity_type,
        "scalingConfig": {
            "minSize": group.scaling.min_size,
            "maxSize": group.scaling.max_size,
            "desiredSize": group.scaling.desired_size,
        },
        "instanceTypes": ["m5.large"],
        "subnets": [],
        "amiType": "AL2023_x86_64_STANDARD",
        "nodeRole": group.node_role,
        "labels": {},
        "resources": {
            "autoScalingGroups": [{ "name": format!("eks-{}-{}", key.cluster, group.name) }],
        },
        "diskSize": 20,
        "updateConfig": { "maxUnavailable": 1 },
        "tags": {},
    });
    if let Some(health) = health_json(&group.health, true) {
        body["health"] = health;
    }
    body
}

/// An `addon` member as EKS serves it.
fn addon_json(key: &ResourceKey, addon: &Addon) -> Value {
    let mut body = json!({
        "addonName": addon.name,
        "clusterName": key.cluster,
        "status": addon.status,
        "addonVersion": addon.addon_version,
        "addonArn": addon.arn,
        "createdAt": addon.created_at,
        "modifiedAt": addon.created_at,
        "tags": {},
    });
    if let Some(health) = health_json(&addon.health, true) {
        body["health"] = health;
    }
    body
}

/// A `capability` member as EKS serves it.
fn capability_json(key: &ResourceKey, capability: &Capability) -> Value {
    let mut body = json!({
        "capabilityName": capability.name,
        "arn": capability.arn,
        "clusterName": key.cluster,
        "type": capability.capability_type,
        "roleArn": capability.role_arn,
        "status": capability.status,
        "tags": {},
        "createdAt": capability.created_at,
        "modifiedAt": capability.created_at,
    });
    if let Some(health) = health_json(&capability.health, false) {
        body["health"] = health;
    }
    body
}

/// A `fargateProfile` member as EKS serves it.
fn profile_json(key: &ResourceKey, profile: &Profile) -> Value {
    let mut body = json!({
        "fargateProfileName": profile.name,
        "fargateProfileArn": profile.arn,
        "clusterName": key.cluster,
        "createdAt": profile.created_at,
        "podExecutionRoleArn": profile.pod_execution_role_arn,
        "subnets": profile.subnets,
        "selectors": [{ "namespace": profile.namespace, "labels": {} }],
        "status": profile.status,
        "tags": {},
    });
    if let Some(health) = health_json(&profile.health, true) {
        body["health"] = health;
    }
    body
}

fn caller_identity(request: &Request, account: &str) -> Reply {
    let key = request.access_key_id.as_deref().unwrap_or_default();
    let body = format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <GetCallerIdentityResult><Arn>arn:aws:iam::{account}:user/simulated</Arn>\
         <UserId>{}</UserId><Account>{account}</Account></GetCallerIdentityResult>\
         <ResponseMetadata><RequestId>00000000-0000-4000-8000-000000000000</RequestId>\
         </ResponseMetadata></GetCallerIdentityResponse>",
        xml_escape(key)
    );
    reply(StatusCode::OK, "text/xml", body)
}

fn assume_role(world: &mut World, params: &[(String, String)], clock: &Clock) -> Reply {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(role_arn), Some(session)) = (param("RoleArn"), param("RoleSessionName")) else {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "RoleArn and RoleSessionName are required",
        );
    };
    // At most a year, so the expiration stays formattable.
    let lifetime = Duration::from_secs(world.credential_lifetime().min(365 * 86_400));
    match world.assume_role(role_arn, session, param("ExternalId")) {
        Ok(creds) => {
            let expiration = humantime::format_rfc3339_seconds(clock.system_time() + lifetime);
            let mut body = String::new();
            let _ = write!(
                body,
                "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                 <AssumeRoleResult><AssumedRoleUser><Arn>{}</Arn>\
                 <AssumedRoleId>{}</AssumedRoleId></AssumedRoleUser>\
                 <Credentials><AccessKeyId>{}</AccessKeyId>\
                 <SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken>\
                 <Expiration>{expiration}</Expiration></Credentials></AssumeRoleResult>\
                 <ResponseMetadata><RequestId>00000000-0000-4000-8000-000000000000</RequestId>\
                 </ResponseMetadata></AssumeRoleResponse>",
                xml_escape(&creds.assumed_role_arn),
                xml_escape(&creds.assumed_role_id),
                creds.access_key_id,
                creds.secret_access_key,
                creds.session_token,
            );
            reply(StatusCode::OK, "text/xml", body)
        }
        Err(message) => sts_error(StatusCode::FORBIDDEN, "AccessDenied", &message),
    }
}

/// The access key id and region of a SigV4 `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=AKID/20261124/us-east-1/eks/aws4_request, SignedHeaders=…`.
fn signing_scope(headers: &http::HeaderMap) -> (Option<String>, Option<String>) {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return (None, None);
    };
    let Some(credential) = value
        .split([' ', ','])
        .find_map(|part| part.strip_prefix("Credential="))
    else {
        return (None, None);
    };
    let mut scope = credential.split('/');
    let key = scope.next().filter(|k| !k.is_empty()).map(str::to_owned);
    let region = scope.nth(1).filter(|r| !r.is_empty()).map(str::to_owned);
    (key, region)
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Handles one request to the control port.
pub async fn handle_control(
    request: HttpRequest<Incoming>,
    world: SharedWorld,
    clock: Clock,
) -> Reply {
    let (parts, body) = request.into_parts();
    match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/v1/commands") => {
            let body = match Limited::new(body, BODY_LIMIT).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return control_error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
            };
            let commands: Vec<Command> = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(items)) => {
                    match items.into_iter().map(serde_json::from_value).collect() {
                        Ok(commands) => commands,
                        Err(error) => {
                            return control_error(StatusCode::BAD_REQUEST, &error.to_string());
                        }
                    }
                }
                Ok(item) => match serde_json::from_value(item) {
                    Ok(command) => vec![command],
                    Err(error) => {
                        return control_error(StatusCode::BAD_REQUEST, &error.to_string());
                    }
                },
                Err(error) => return control_error(StatusCode::BAD_REQUEST, &error.to_string()),
            };
            let mut world = lock(&world);
            let count = commands.len();
            for (index, command) in commands.into_iter().enumerate() {
                if let Err(error) = world.apply(command, clock.now()) {
                    return control_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &format!("command {index}: {error}"),
                    );
                }
            }
            json_reply(StatusCode::OK, &json!({ "applied": count }))
        }
        (&Method::GET, "/v1/requests") => {
            let world = lock(&world);
            let requests: Vec<_> = world.requests().collect();
            json_reply(StatusCode::OK, &json!(requests))
        }
        (&Method::GET, "/v1/profiles") => {
            let world = lock(&world);
            let profiles: Vec<Value> = world
                .profiles()
                .map(|(key, profile)| json!({ "key": key, "profile": profile }))
                .collect();
            json_reply(StatusCode::OK, &json!(profiles))
        }
        (&Method::GET, "/v1/resources") => {
            let world = lock(&world);
            json_reply(StatusCode::OK, &resources_json(&world))
        }
        (&Method::GET, "/v1/stats") => {
            let world = lock(&world);
            let mut per_operation = BTreeMap::new();
            for request in world.requests() {
                *per_operation
                    .entry(request.operation.as_str())
                    .or_insert(0u64) += 1;
            }
            let resources: BTreeMap<&str, usize> = super::world::KINDS
                .into_iter()
                .map(|kind| (kind.name(), world.count(kind)))
                .collect();
            let body = json!({
                "profiles": world.profiles().count(),
                "resources": resources,
                "max_in_flight": world.max_in_flight(),
                "requests": per_operation,
            });
            json_reply(StatusCode::OK, &body)
        }
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
        _ => control_error(
            StatusCode::NOT_FOUND,
            "not found: POST /v1/commands, GET /v1/requests, GET /v1/profiles, \
             GET /v1/resources, GET /v1/stats",
        ),
    }
}

/// Every resource of every kind: `key` (with its `kind`) and the simulated `resource`.
fn resources_json(world: &World) -> Value {
    fn entries<T: serde::Serialize>(
        out: &mut Vec<Value>,
        cluster: &ResourceKey,
        kind: Kind,
        resources: &BTreeMap<String, T>,
    ) {
        for (name, resource) in resources {
            let key = ResourceKey::new(
                kind,
                &cluster.account_id,
                &cluster.region,
                &cluster.cluster,
                name,
            );
            out.push(json!({ "key": key, "resource": resource }));
        }
    }
    let mut out = Vec::new();
    for (key, cluster) in world.clusters() {
        let own = json!({
            "name": cluster.name,
            "arn": cluster.arn,
            "created_at": cluster.created_at,
            "status": cluster.status,
            "version": cluster.version,
            "platform_version": cluster.platform_version,
            "health": cluster.health,
        });
        out.push(json!({ "key": key, "resource": own }));
        entries(&mut out, &key, Kind::FARGATE_PROFILE, &cluster.profiles);
        entries(&mut out, &key, Kind::NODEGROUP, &cluster.nodegroups);
        entries(&mut out, &key, Kind::ADDON, &cluster.addons);
        entries(&mut out, &key, Kind::CAPABILITY, &cluster.capabilities);
    }
    Value::Array(out)
}

fn control_error(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_scope_gives_the_key_and_region() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/eu-west-1/eks/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abc",
            ),
        );
        assert_eq!(
            signing_scope(&headers),
            (Some("AKIDEXAMPLE".into()), Some("eu-west-1".into()))
        );
        assert_eq!(signing_scope(&http::HeaderMap::new()), (None, None));
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb%zz"), "a/b%zz");
    }
}
