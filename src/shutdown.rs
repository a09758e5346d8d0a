//! One shutdown path: SIGINT or SIGTERM cancels one token, which stops polling and serving; a
//! second signal exits at once. SIGHUP asks for a config reload.

use tokio_util::sync::CancellationToken;

/// The exit code after a second signal (128 + SIGINT, as shells report it).
pub const ABORTED: i32 = 130;

/// A token cancelled by the first SIGINT or SIGTERM; a second one exits the process at once.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut signals = Signals::new();
        signals.next().await;
        tracing::info!("shutting down; a second signal exits at once");
        cancel.cancel();
        signals.next().await;
        tracing::warn!("second signal; exiting now");
        std::process::exit(ABORTED);
    });
    token
}

/// Resolves on the first Ctrl-C or SIGTERM.
pub async fn signal() {
    Signals::new().next().await;
}

/// SIGINT and SIGTERM, listened to for as long as this lives.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        Self {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .ok(),
        }
    }

    async fn next(&mut self) {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(terminate) = &mut self.terminate {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
            return;
        }
        let _ = interrupt.await;
    }
}

/// SIGHUP, listened to from creation on (so a hangup during start-up does not kill the process).
#[derive(Debug)]
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    pub fn new() -> Self {
        Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Resolves on the next SIGHUP (never where there are none).
    pub async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

impl Default for Hangups {
    fn default() -> Self {
        Self::new()
    }
}
