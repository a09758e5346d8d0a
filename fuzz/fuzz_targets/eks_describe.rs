//! A describe answer of arbitrary bytes, for every kind (`DescribeFargateProfile`,
//! `DescribeNodegroup`, `DescribeAddon`, `DescribeCluster`, `DescribeCapability`), through the
//! official SDK's parser and the conversion into the project's model: every answer is a
//! resource or a classified error, never a panic. The first byte picks the HTTP status and
//! error type (`% 8`) and the operation (`/ 8 % 5`); the rest is the body.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use aws_credential_types::Credentials;
use aws_sdk_eks::config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use fargate_health_monitor::eks;
use libfuzzer_sys::fuzz_target;

/// The answer the next request gets: status, error type header, body.
type Answer = (u16, Option<&'static str>, Vec<u8>);

/// Answers every request with the answer set for this input.
#[derive(Debug, Clone, Default)]
struct Scripted(Arc<Mutex<Answer>>);

impl HttpConnector for Scripted {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let (status, error_type, body) = self.0.lock().map(|a| a.clone()).unwrap_or_default();
        HttpConnectorFuture::new(async move {
            let mut response = http::Response::builder()
                .status(status)
                .header("content-type", "application/json");
            if let Some(error_type) = error_type {
                response = response.header("x-amzn-ErrorType", error_type);
            }
            Ok(response
                .body(SdkBody::from(body))
                .expect("a valid response")
                .try_into()
                .expect("an http 1.x response converts"))
        })
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_eks::Client,
    answer: Scripted,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let answer = Scripted::default();
        let connector = SharedHttpConnector::new(answer.clone());
        let config = aws_sdk_eks::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::for_tests())
            .endpoint_url("http://127.0.0.1:1")
            .http_client(http_client_fn(move |_, _| connector.clone()))
            .retry_config(aws_sdk_eks::config::retry::RetryConfig::disabled())
            .build();
        Harness {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            client: aws_sdk_eks::Client::from_conf(config),
            answer,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (status, error_type) = match selector % 8 {
        0 => (404, Some("ResourceNotFoundException")),
        1 => (429, Some("ThrottlingException")),
        2 => (500, None),
        3 => (403, Some("AccessDeniedException")),
        _ => (200, None),
    };
    let harness = harness();
    if let Ok(mut answer) = harness.answer.0.lock() {
        *answer = (status, error_type, body.to_vec());
    }
    let client = &harness.client;
    // The outcome: converted, absent or classified; only a panic would be a finding.
    let _ = harness.runtime.block_on(async {
        match selector / 8 % 5 {
            0 => client
                .describe_fargate_profile()
                .cluster_name("prod")
                .fargate_profile_name("default")
                .send()
                .await
                .map(|o| o.fargate_profile().map(eks::profile_from_sdk).is_some())
                .map_err(|e| eks::classify(&e)),
            1 => client
                .describe_nodegroup()
                .cluster_name("prod")
                .nodegroup_name("ng")
                .send()
                .await
                .map(|o| o.nodegroup().map(eks::nodegroup_from_sdk).is_some())
                .map_err(|e| eks::classify(&e)),
            2 => client
                .describe_addon()
                .cluster_name("prod")
                .addon_name("coredns")
                .send()
                .await
                .map(|o| o.addon().map(eks::addon_from_sdk).is_some())
                .map_err(|e| eks::classify(&e)),
            3 => client
                .describe_cluster()
                .name("prod")
                .send()
                .await
                .map(|o| o.cluster().map(eks::cluster_from_sdk).is_some())
                .map_err(|e| eks::classify(&e)),
            _ => client
                .describe_capability()
                .cluster_name("prod")
                .capability_name("argocd")
                .send()
                .await
                .map(|o| o.capability().map(eks::capability_from_sdk).is_some())
                .map_err(|e| eks::classify(&e)),
        }
    });
});
