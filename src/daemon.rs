//! The daemon, wired: the admin server bound first, the state file loaded (and written once;
//! a path that cannot be written is retried while alerts go on from memory), then the state, the metrics, the sinks with their
//! outbox workers, one set of AWS clients per target and the scheduler. Used by `run`, `demo`
//! and the tests. Every long-lived task (server, state writer, scheduler, sinks) runs under
//! one [`Supervisor`]: one that panics or ends before it is stopped shows in
//! [`Daemon::failures`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::diff::Rules;
use crate::eks::{AwsSettings, Connector};
use crate::metrics::Metrics;
use crate::scheduler::{self, Settings, Watched};
use crate::server::{self, App, BindError, Guard};
use crate::sinks::{self, Sinks};
use crate::state::State;
use crate::store;
use crate::supervisor::{self, Failures, Supervisor};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    /// `[server.tls]` files that cannot be used.
    #[error("{0}")]
    Server(String),
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    addr: SocketAddr,
    state: Arc<State>,
    metrics: Arc<Metrics>,
    aws: AwsSettings,
    /// "Now" for every part: the scheduler, the state file, the metrics and the pages.
    clock: Clock,
    /// The config in force: what a reload compares with.
    config: Config,
    /// TLS and basic auth of the admin server.
    guard: Arc<Guard>,
    /// Spawns every long-lived task.
    supervisor: Supervisor,
    failures: Failures,
    /// Stops serving.
    stop_server: CancellationToken,
    server: JoinHandle<()>,
    /// Stops the state file writer, after a last write.
    stop_persist: CancellationToken,
    persister: JoinHandle<()>,
    /// The scheduler and the sinks of the config in force.
    running: Running,
}

/// What a reload replaces: the scheduler and the sinks.
#[derive(Debug)]
struct Running {
    /// Stops polling.
    stop_polling: CancellationToken,
    scheduler: JoinHandle<()>,
    /// Stopped after the scheduler, with their grace.
    sinks: Sinks,
}

impl Running {
    /// Starts the sinks and the scheduler of `config`.
    async fn start(
        config: &Config,
        state: &Arc<State>,
        metrics: &Metrics,
        aws: &AwsSettings,
        clock: &Clock,
        supervisor: &Supervisor,
    ) -> Self {
        let sinks = sinks::spawn_all(config, state, clock, supervisor);
        let mut connector = Connector::new(AwsSettings {
            timeout: config.poll.timeout,
            observer: Some(metrics.api()),
            ..aws.clone()
        });
        let mut watched = Vec::with_capacity(config.targets.len());
        for target in &config.targets {
            let client = connector.connect(target).await;
            watched.push(Watched {
                target: target.clone(),
                client,
            });
        }
        let stop_polling = CancellationToken::new();
        let scheduler = supervisor.spawn(
            "scheduler",
            stop_polling.clone(),
            scheduler::run(
                watched,
                Settings::new(&config.poll),
                state.clone(),
                clock.clone(),
                stop_polling.clone(),
            ),
        );
        Running {
            stop_polling,
            scheduler,
            sinks,
        }
    }

    /// Stops polling (in-flight describes get their grace), then the sinks (due events get
    /// theirs).
    async fn stop(&mut self) {
        self.stop_polling.cancel();
        // How a task ended is the supervisor's to report.
        let _ = (&mut self.scheduler).await;
        self.sinks.stop().await;
    }
}

impl Daemon {
    /// Binds `config.server.listen` (or `listen`), loads the state file, starts the sinks,
    /// connects every target and starts polling. `aws` gives the timeout and credentials for
    /// the simulator; the daemon's metrics observe every call. `clock` is "now" for every part
    /// but the sinks.
    pub async fn start(
        config: &Config,
        aws: AwsSettings,
        listen: Option<SocketAddr>,
        clock: Clock,
    ) -> Result<Self, StartError> {
        let guard = Arc::new(Guard::new(&config.server).map_err(StartError::Server)?);
        let bound = server::bind(listen.unwrap_or(config.server.listen)).await?;
        let addr = bound.local_addr();

        let state = Arc::new(State::new(
            Rules {
                resolve_after: config.alerts.resolve_after,
            },
            sinks::subscriptions(config),
        ));
        state.set_stale_after(stale_after(&config.poll));
        let path = config.state.path.clone();
        match store::load(&path, &clock) {
            store::Loaded::Found(saved) => {
                tracing::info!(
                    path = %path.display(),
                    resources = saved.resources.len(),
                    pending = saved.outbox.len(),
                    "state file loaded"
                );
                state.restore(saved, clock.now());
            }
            store::Loaded::Missing => {
                tracing::info!(path = %path.display(), "no state file: a first start, open issues are alerted once");
            }
            store::Loaded::Corrupt { .. } => {}
        }
        // Above what the file held and above the clock's floor: a lost file (or one replaced
        // by `.prev`) never makes the sequence go backwards.
        state.raise_sequence(crate::state::sequence_floor(clock.system_time()));

        let metrics = Arc::new(Metrics::new(state.clone(), clock.clone()));
        metrics.reloaded(true);
        let (supervisor, failures) = supervisor::new();
        // Written once now; a path that cannot be written is an ERROR and a metric, not a
        // reason to stop alerting: the writer retries it.
        let mut writer = store::Writer::new(path, metrics.state_write_errors());
        writer.write(&state).await;
        let stop_persist = CancellationToken::new();
        let persister = supervisor.spawn(
            "state writer",
            stop_persist.clone(),
            writer.run(state.clone(), stop_persist.clone()),
        );
        let running = Running::start(config, &state, &metrics, &aws, &clock, &supervisor).await;
        let app = Arc::new(App {
            state: state.clone(),
            metrics: metrics.clone(),
            guard: guard.clone(),
            clock: clock.clone(),
        });
        let stop_server = CancellationToken::new();
        let server = supervisor.spawn(
            "server",
            stop_server.clone(),
            bound.serve(app, stop_server.clone()),
        );
        tracing::info!(
            %addr,
            targets = config.targets.len(),
            sinks = config.sinks.len().max(1),
            interval = %humantime::format_duration(config.poll.interval),
            "serving /metrics, /api/v1/resources, /readyz and /healthz"
        );
        Ok(Self {
            addr,
            state,
            metrics,
            aws,
            clock,
            config: config.clone(),
            guard,
            supervisor,
            failures,
            stop_server,
            server,
            stop_persist,
            persister,
            running,
        })
    }

    /// Applies a new, valid config without losing state or alerting anything again: the
    /// scheduler and the sinks are replaced, the state and the server stay (with the new TLS
    /// files and users). `listen` and
    /// `[state] path` need a restart; a change to them is logged and ignored.
    pub async fn reload(&mut self, config: Config) {
        let mut config = config;
        if let Err(error) = self.guard.update(&config.server) {
            tracing::error!(%error, "[server] of the new config cannot be used; the config in force stays");
            self.reload_failed();
            return;
        }
        if config.server.listen != self.config.server.listen {
            tracing::warn!(
                listen = %config.server.listen,
                current = %self.config.server.listen,
                "[server] listen changed: it takes a restart; still listening on the old address"
            );
            config.server.listen = self.config.server.listen;
        }
        if config.state.path != self.config.state.path {
            tracing::warn!(
                path = %config.state.path.display(),
                current = %self.config.state.path.display(),
                "[state] path changed: it takes a restart; still writing the old file"
            );
            config.state.path = self.config.state.path.clone();
        }
        self.running.stop().await;
        self.state.reconfigure(
            Rules {
                resolve_after: config.alerts.resolve_after,
            },
            sinks::subscriptions(&config),
        );
        self.state.set_stale_after(stale_after(&config.poll));
        self.running = Running::start(
            &config,
            &self.state,
            &self.metrics,
            &self.aws,
            &self.clock,
            &self.supervisor,
        )
        .await;
        self.metrics.reloaded(true);
        tracing::info!(
            targets = config.targets.len(),
            sinks = config.sinks.len().max(1),
            "config reloaded"
        );
        self.config = config;
    }

    /// Records a reload that failed: the config in force stays.
    pub fn reload_failed(&self) {
        self.metrics.reloaded(false);
    }

    /// Where a task that panicked or ended before it was stopped shows: `run` exits on it.
    pub fn failures(&self) -> Failures {
        self.failures.clone()
    }

    /// Where the admin server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Every series, as `/metrics` serves them.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops polling and serving (in-flight describes get [`scheduler::SHUTDOWN_GRACE`]),
    /// delivers what is due for up to [`sinks::FLUSH_GRACE`], and writes the state file a last
    /// time.
    pub async fn stop(mut self) {
        self.state.set_ready(false);
        self.running.stop().await;
        self.stop_server.cancel();
        let _ = self.server.await;
        // After the sinks, so the last write knows what they delivered.
        self.stop_persist.cancel();
        let _ = self.persister.await;
        let (_, saved) = self.state.to_save();
        if !saved.outbox.is_empty() {
            tracing::info!(
                pending = saved.outbox.len(),
                "undelivered events saved for the next start"
            );
        }
        tracing::info!("stopped");
    }
}

/// When a profile counts as stale on the status page and in the API: not attempted for two
/// intervals and a timeout (one describe missed, with room for the next).
pub fn stale_after(poll: &crate::config::Poll) -> Duration {
    poll.interval.saturating_mul(2).saturating_add(poll.timeout)
}
