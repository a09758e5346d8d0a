//! A simulated EKS and STS on loopback, for `demo`, the tests and the benchmark.
//!
//! One port speaks the AWS wire formats the official SDK parses: EKS REST-JSON
//! (`GET /clusters`, `GET /clusters/{name}`, and `GET /clusters/{name}/{collection}[/{item}]`
//! for `fargate-profiles`, `node-groups`, `addons` and `capabilities`) and STS Query/XML on `POST /`
//! (`GetCallerIdentity`, `AssumeRole`). Point the SDK's `endpoint_url` and `sts_endpoint_url` at
//! [`Simulator::endpoint_url`]. Requests act in the account of the access key id that signed
//! them, so credentials from `AssumeRole` see the role's account. A second port takes
//! [`Command`]s as JSON (`POST /v1/commands`) and serves the request log (`GET /v1/requests`),
//! for use from another process; Rust code calls [`Simulator::apply`].

mod populate;
mod server;
mod world;

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use populate::{Population, account_id, reader_role};
pub use world::{
    Addon, AssumedCredentials, Capability, Cluster, Command, CommandError, Fault, FaultKind,
    Health, IssueSpec, LoggedRequest, Nodegroup, NodegroupSettings, Profile, Scaling, Scope, World,
};

use crate::clock::Clock;
use crate::model::{Operation, ResourceKey};
use server::SharedWorld;

/// The access key id that [`Simulator::start`] maps to [`DEFAULT_ACCOUNT`].
pub const DEFAULT_ACCESS_KEY_ID: &str = "AKIASIMULATEDEXAMPLE";
/// Any secret works with the simulator; this one is used by the tests and `demo`.
pub const DEFAULT_SECRET_ACCESS_KEY: &str = "simulated-secret-access-key";

/// The simulator's default access key pair, which signs as [`DEFAULT_ACCOUNT`].
pub fn credentials() -> crate::eks::StaticCredentials {
    crate::eks::StaticCredentials::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
}
/// The account of [`DEFAULT_ACCESS_KEY_ID`].
pub const DEFAULT_ACCOUNT: &str = "111122223333";

/// A running simulator; its servers stop when it is dropped.
#[derive(Debug)]
pub struct Simulator {
    world: SharedWorld,
    /// "Now" for the world: faults' windows, the request log, credentials' expiry.
    clock: Clock,
    aws_addr: SocketAddr,
    control_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    /// Starts both ports on `127.0.0.1`, on ports the OS picks, on the wall clock, with
    /// [`DEFAULT_ACCESS_KEY_ID`] mapped to [`DEFAULT_ACCOUNT`] and nothing else.
    pub async fn start() -> io::Result<Self> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::bind(loopback, loopback, Clock::wall()).await
    }

    /// Starts the AWS port and the control port on the given addresses.
    pub async fn bind(aws: SocketAddr, control: SocketAddr, clock: Clock) -> io::Result<Self> {
        let aws_listener = TcpListener::bind(aws).await?;
        let control_listener = TcpListener::bind(control).await?;
        let world = SharedWorld::default();
        let simulator = Self {
            aws_addr: aws_listener.local_addr()?,
            control_addr: control_listener.local_addr()?,
            tasks: vec![
                tokio::spawn(server::serve(
                    aws_listener,
                    world.clone(),
                    clock.clone(),
                    server::handle_aws,
                )),
                tokio::spawn(server::serve(
                    control_listener,
                    world.clone(),
                    clock.clone(),
                    server::handle_control,
                )),
            ],
            world,
            clock,
        };
        // Adding an access key cannot fail.
        let _ = simulator.apply(Command::AddAccessKey {
            access_key_id: DEFAULT_ACCESS_KEY_ID.to_owned(),
            account_id: DEFAULT_ACCOUNT.to_owned(),
        });
        Ok(simulator)
    }

    /// The URL for the SDK's `endpoint_url` and `sts_endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.aws_addr)
    }

    /// The address of the AWS port.
    pub fn aws_addr(&self) -> SocketAddr {
        self.aws_addr
    }

    /// The address of the control port.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The base URL of the JSON control API.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// Applies one command to the world.
    pub fn apply(&self, command: Command) -> Result<(), CommandError> {
        let now = self.clock.now();
        server::lock(&self.world).apply(command, now)
    }

    /// Applies one command and returns the length of the request log at that moment, under one
    /// lock: the requests logged before that position saw the world without the command, the
    /// rest with it (exact while the log stays below its limit of 200,000 requests).
    pub fn apply_logged(&self, command: Command) -> Result<usize, CommandError> {
        let now = self.clock.now();
        let mut world = server::lock(&self.world);
        world.apply(command, now)?;
        Ok(world.logged())
    }

    /// Adds a generated population of accounts, clusters and profiles.
    pub fn populate(&self, population: &Population) -> Result<(), CommandError> {
        let now = self.clock.now();
        let mut world = server::lock(&self.world);
        for command in population.commands() {
            world.apply(command, now)?;
        }
        Ok(())
    }

    /// Adds (or replaces) a profile with a status and health, creating its cluster if needed.
    pub fn add_profile(&self, key: &ResourceKey, status: &str, health: Health) {
        let command = Command::AddProfile {
            key: key.clone(),
            status: status.to_owned(),
            health,
        };
        // Adding a profile cannot fail.
        let _ = self.apply(command);
    }

    /// Adds (or replaces) a resource of any kind with a status and health and generated
    /// settings, creating its cluster if needed; for a cluster, sets its status and health.
    pub fn add_resource(&self, key: &ResourceKey, status: &str, health: Health) {
        let status = status.to_owned();
        let key = key.clone();
        let command = match key.kind.name() {
            "nodegroup" => Command::AddNodegroup {
                key,
                status,
                health,
                settings: NodegroupSettings::default(),
            },
            "addon" => Command::AddAddon {
                key,
                status,
                health,
                addon_version: None,
            },
            "capability" => Command::AddCapability {
                key,
                status,
                health,
                capability_type: None,
                role_arn: None,
            },
            "cluster" => Command::AddCluster {
                account_id: key.account_id,
                region: key.region,
                cluster: key.cluster,
                status: Some(status),
                health: Some(health),
                version: None,
                platform_version: None,
            },
            _ => Command::AddProfile {
                key,
                status,
                health,
            },
        };
        // Adding cannot fail.
        let _ = self.apply(command);
    }

    /// Injects a fault.
    pub fn add_fault(&self, scope: Scope, kind: FaultKind, remaining: Option<u32>) {
        let _ = self.apply(Command::AddFault {
            fault: Fault {
                scope,
                kind,
                remaining,
                accepted: Default::default(),
            },
        });
    }

    /// Reads the world under its lock.
    pub fn with_world<R>(&self, read: impl FnOnce(&World) -> R) -> R {
        read(&server::lock(&self.world))
    }

    /// A copy of the request log, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.with_world(|world| world.requests().cloned().collect())
    }

    /// The most requests the AWS port had in progress at once (since the last
    /// [`Command::ClearRequestLog`]).
    pub fn max_in_flight(&self) -> usize {
        self.with_world(World::max_in_flight)
    }

    /// How many logged requests were of this operation.
    pub fn count(&self, operation: Operation) -> usize {
        self.with_world(|world| {
            world
                .requests()
                .filter(|request| request.operation == operation)
                .count()
        })
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
