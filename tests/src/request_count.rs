//! Counts the requests the SDK clients send, by operation, for figures such as "DynamoDB writes
//! per upload": an HTTP client wrapped around the `SdkConfig`'s own, so every client built from
//! that config is counted and nothing else changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// Requests by operation: the `X-Amz-Target` of JSON protocols (`DynamoDB_20120810.PutItem`,
/// `HealthLake.StartFHIRImportJob`, `AWSStepFunctions.StartExecution`), else `METHOD host/path`.
#[derive(Debug, Clone, Default)]
pub struct RequestCount(Arc<Mutex<BTreeMap<String, u64>>>);

impl RequestCount {
    /// `sdk` with every request counted here.
    pub fn counting(&self, sdk: &SdkConfig) -> SdkConfig {
        // The local stack speaks plain HTTP on loopback, so a plain HTTP client serves when the
        // config leaves the choice to each service client.
        let inner = sdk
            .http_client()
            .unwrap_or_else(|| aws_smithy_http_client::Builder::new().build_http());
        sdk.to_builder()
            .http_client(SharedHttpClient::new(CountingClient {
                inner,
                count: self.clone(),
            }))
            .build()
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("counter lock").clone()
    }

    /// Requests so far whose operation is `prefix` followed by one of `operations` (any, when
    /// empty).
    pub fn of(&self, prefix: &str, operations: &[&str]) -> u64 {
        count_of(&self.snapshot(), prefix, operations)
    }

    fn add(&self, operation: String) {
        *self
            .0
            .lock()
            .expect("counter lock")
            .entry(operation)
            .or_default() += 1;
    }
}

#[derive(Debug)]
struct CountingClient {
    inner: SharedHttpClient,
    count: RequestCount,
}

impl HttpClient for CountingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(CountingConnector {
            inner: self.inner.http_connector(settings, components),
            count: self.count.clone(),
        })
    }
}

#[derive(Debug)]
struct CountingConnector {
    inner: SharedHttpConnector,
    count: RequestCount,
}

impl HttpConnector for CountingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = match request.headers().get("x-amz-target") {
            Some(target) => target.to_owned(),
            None => format!("{} {}", request.method(), request.uri()),
        };
        self.count.add(operation);
        self.inner.call(request)
    }
}

/// In a snapshot: requests whose operation is `prefix` followed by one of `operations` (any, when
/// empty).
pub fn count_of(snapshot: &BTreeMap<String, u64>, prefix: &str, operations: &[&str]) -> u64 {
    snapshot
        .iter()
        .filter(|(op, _)| {
            op.strip_prefix(prefix)
                .is_some_and(|name| operations.is_empty() || operations.contains(&name))
        })
        .map(|(_, n)| n)
        .sum()
}
