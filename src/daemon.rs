//! The daemon, wired: the admin server bound first, then the state, the metrics, one set of AWS
//! clients per target and the scheduler. Used by `run`, `demo` and the tests.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::diff::Rules;
use crate::eks::{AwsSettings, Connector};
use crate::metrics::Metrics;
use crate::scheduler::{self, Settings, Watched};
use crate::server::{self, App, BindError};
use crate::state::State;

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: CancellationToken,
    scheduler: JoinHandle<()>,
    server: JoinHandle<()>,
}

impl Daemon {
    /// Binds `config.server.listen` (or `listen`), connects every target and starts polling.
    /// `aws` gives the timeout, credentials for the simulator, and no observer: the daemon's
    /// metrics observe every call.
    pub async fn start(
        config: &Config,
        aws: AwsSettings,
        listen: Option<SocketAddr>,
    ) -> Result<Self, BindError> {
        let bound = server::bind(listen.unwrap_or(config.server.listen)).await?;
        let addr = bound.local_addr();
        let state = Arc::new(State::new(Rules {
            resolve_after: config.alerts.resolve_after,
        }));
        let metrics = Arc::new(Metrics::new(state.clone()));
        let mut connector = Connector::new(AwsSettings {
            observer: Some(metrics.api()),
            ..aws
        });
        let mut watched = Vec::with_capacity(config.targets.len());
        for target in &config.targets {
            let client = connector.connect(target).await;
            watched.push(Watched {
                target: target.clone(),
                client,
            });
        }
        let shutdown = CancellationToken::new();
        let app = Arc::new(App {
            state: state.clone(),
            metrics,
        });
        let server = tokio::spawn(bound.serve(app, shutdown.clone()));
        tracing::info!(
            %addr,
            targets = config.targets.len(),
            interval = %humantime::format_duration(config.poll.interval),
            "serving /metrics, /api/v1/profiles, /readyz and /healthz"
        );
        let scheduler = tokio::spawn(scheduler::run(
            watched,
            Settings::new(&config.poll),
            state.clone(),
            scheduler::wall_clock(),
            shutdown.clone(),
        ));
        Ok(Self {
            addr,
            state,
            shutdown,
            scheduler,
            server,
        })
    }

    /// Where the admin server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Stops polling and serving; in-flight describes get [`scheduler::SHUTDOWN_GRACE`].
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Err(error) = self.scheduler.await {
            tracing::error!(%error, "the scheduler ended abnormally");
        }
        let _ = self.server.await;
        tracing::info!("stopped");
    }
}
