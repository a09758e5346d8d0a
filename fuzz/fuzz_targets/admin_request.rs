//! Raw request bytes into the admin server's HTTP handling (`server::Service::serve_io`) over an
//! in-memory stream, with a snapshot restored from a state file that has open issues. The first
//! byte picks a server with or without basic auth. Every input gets answers or a closed
//! connection within the time limit, never a panic.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fargate_health_monitor::clock::Clock;
use fargate_health_monitor::config::Server;
use fargate_health_monitor::diff::Rules;
use fargate_health_monitor::metrics::Metrics;
use fargate_health_monitor::secret::Secret;
use fargate_health_monitor::server::{App, Guard, Service};
use fargate_health_monitor::state::State;
use fargate_health_monitor::store;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A state file the simulator's profiles gave, some with open issues.
const SEED_STATE: &[u8] = include_bytes!("../seeds/state_file/two-accounts.json");
/// The user of the guarded server; its password is `fuzz`, hashed at the lowest cost so the
/// fuzzer spends its time on parsing.
const USER: &str = "prometheus";

struct Harness {
    runtime: tokio::runtime::Runtime,
    open: Service,
    guarded: Service,
}

fn service(state: &Arc<State>, guard: Guard) -> Service {
    let metrics = Arc::new(Metrics::new(state.clone(), Clock::wall()));
    Service::new(Arc::new(App {
        state: state.clone(),
        metrics,
        guard: Arc::new(guard),
        clock: Clock::wall(),
    }))
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let state = Arc::new(State::new(Rules::default(), Vec::new()));
        if let Ok(saved) = store::decode(SEED_STATE) {
            state.restore(saved, Clock::wall().now());
        }
        let hash = bcrypt::hash("fuzz", 4).expect("bcrypt hashes");
        let server = Server {
            listen: "127.0.0.1:0".parse().expect("an address"),
            tls: None,
            basic_auth: BTreeMap::from([(USER.to_owned(), Secret::new(hash))]),
            external_url: None,
        };
        let guard = Guard::new(&server).expect("a guard without TLS");
        Harness {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            open: service(&state, Guard::default()),
            guarded: service(&state, guard),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, request)) = data.split_first() else {
        return;
    };
    let harness = harness();
    let service = if selector & 1 == 0 {
        harness.open.clone()
    } else {
        harness.guarded.clone()
    };
    let request = request.to_vec();
    harness.runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serving = tokio::spawn(async move {
            service
                .serve_io(server, None, CancellationToken::new())
                .await;
        });
        let exchange = async {
            client.write_all(&request).await?;
            client.shutdown().await?;
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        // Well under libFuzzer's -timeout; a connection still open by then is dropped.
        let answered = tokio::time::timeout(Duration::from_secs(3), exchange).await;
        if let Ok(Ok(answer)) = answered {
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1."),
                "an answer that is not HTTP: {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            );
        }
        serving.abort();
        if let Err(error) = serving.await {
            assert!(!error.is_panic(), "the admin server panicked");
        }
    });
});
