//! The daemon's long-lived tasks, supervised: each is spawned with a name and the token that
//! asks it to stop, and one that panics, or ends before it was asked to, is reported as a
//! [`Failure`]: an ERROR naming the task is logged, and `run` stops and exits 70
//! ([`crate::exit::FAILURE`]) so systemd or Kubernetes restarts it. A monitor that keeps
//! serving `/readyz` 200 while it polls nothing is worse than one that restarts.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Spawns supervised tasks; cheap to clone.
#[derive(Clone, Debug)]
pub struct Supervisor {
    failures: Arc<watch::Sender<Option<Failure>>>,
}

/// Where the failure of a task shows; cheap to clone.
#[derive(Clone, Debug)]
pub struct Failures {
    rx: watch::Receiver<Option<Failure>>,
}

/// A task that panicked or ended before it was asked to stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The task's name, e.g. `scheduler` or `sink webhook-1`.
    pub task: String,
    /// The panic's message, or `None` when it ended without one.
    pub panic: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.panic {
            Some(message) => write!(f, "task {} panicked: {message}", self.task),
            None => write!(f, "task {} ended unexpectedly", self.task),
        }
    }
}

/// A supervisor and the receiving end of its failures.
pub fn new() -> (Supervisor, Failures) {
    let (failures, rx) = watch::channel(None);
    let failures = Arc::new(failures);
    (Supervisor { failures }, Failures { rx })
}

impl Supervisor {
    /// Spawns `task`, which should run until `stop` is cancelled. The handle resolves when the
    /// task is over, however it ended; a panic or an early end is also sent to [`Failures`].
    pub fn spawn<F>(
        &self,
        name: impl Into<String>,
        stop: CancellationToken,
        task: F,
    ) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let failures = self.failures.clone();
        let task = tokio::spawn(task);
        tokio::spawn(async move {
            let panic = match task.await {
                Ok(()) if stop.is_cancelled() => return,
                Ok(()) => None,
                Err(error) if error.is_panic() => Some(panic_message(error.into_panic())),
                // Aborted: the runtime is shutting down.
                Err(_) => return,
            };
            let failure = Failure { task: name, panic };
            tracing::error!(task = %failure.task, "{failure}");
            failures.send_replace(Some(failure));
        })
    }
}

impl Failures {
    /// The latest failure, once there is one; pending forever while there is none.
    pub async fn next(&mut self) -> Failure {
        let failure = match self.rx.wait_for(Option::is_some).await {
            Ok(failure) => failure.clone(),
            Err(_) => None,
        };
        match failure {
            Some(failure) => failure,
            None => std::future::pending().await,
        }
    }
}

/// The text a panic carried, when it was a string.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_ends_early_is_a_failure_and_one_asked_to_stop_is_not() {
        let (supervisor, mut failures) = new();
        let stop = CancellationToken::new();
        let broken = std::hint::black_box(true);
        let panicking = supervisor.spawn("scheduler", stop.clone(), async move {
            if broken {
                panic!("limiter broke: {}", 0);
            }
        });
        panicking.await.unwrap();
        assert_eq!(
            failures.next().await,
            Failure {
                task: "scheduler".into(),
                panic: Some("limiter broke: 0".into()),
            }
        );
        let (supervisor, mut failures) = new();
        supervisor
            .spawn("sink log", stop.clone(), async {})
            .await
            .unwrap();
        let ended = failures.next().await;
        assert_eq!((ended.task.as_str(), ended.panic), ("sink log", None));
        assert_eq!(
            Failure {
                task: "server".into(),
                panic: None
            }
            .to_string(),
            "task server ended unexpectedly"
        );

        // Asked to stop, it ends quietly.
        let (supervisor, mut failures) = new();
        let running = {
            let stop = stop.clone();
            supervisor.spawn("state writer", stop.clone(), async move {
                stop.cancelled().await
            })
        };
        stop.cancel();
        running.await.unwrap();
        drop(supervisor);
        let more = tokio::time::timeout(std::time::Duration::from_millis(200), failures.next());
        assert!(more.await.is_err(), "no failure for a task asked to stop");
    }
}
