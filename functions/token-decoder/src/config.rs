//! What a failed init does. The configuration itself is `healthimport_auth::TokenDecoderConfig`,
//! read once at init by [`crate::wiring::init`]: a missing or invalid variable stops the function
//! there, and the error, named by its `errorType` and naming the variable, goes to the log and to
//! Lambda's init report.

use std::time::Duration;

use bytes::Bytes;
use healthimport::config::ConfigError;
use healthimport_auth::cache::error_chain;
use healthimport_auth::fetch::FetcherInitError;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lambda_runtime::Diagnostic;
use tracing::error;

/// What can stop the function at init. A bad token is never an error (it is a deny); only a
/// deployment problem is, and it is reported to Lambda with an `errorType` that says which.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("building the JWKS HTTP client failed")]
    HttpClient(#[from] FetcherInitError),
}

impl InitError {
    pub fn error_type(&self) -> &'static str {
        match self {
            InitError::Config(_) => "TokenDecoder.InvalidConfiguration",
            InitError::HttpClient(_) => "TokenDecoder.HttpClient",
        }
    }
}

impl From<&InitError> for Diagnostic {
    fn from(error: &InitError) -> Self {
        let mut message = error.to_string();
        let chain = error_chain(error);
        if !chain.is_empty() {
            message = format!("{message}: {chain}");
        }
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: message,
        }
    }
}

impl From<InitError> for Diagnostic {
    fn from(error: InitError) -> Self {
        Diagnostic::from(&error)
    }
}

/// Logs an init failure, reports it to the Lambda Runtime API when running on Lambda, and returns
/// the error for `main` to exit with.
pub async fn init_failed(error: InitError) -> lambda_runtime::Error {
    let diagnostic = Diagnostic::from(&error);
    error!(error_type = %diagnostic.error_type, error = %diagnostic.error_message, "init failed");
    if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
        report_init_error(&api, &diagnostic).await;
    }
    error.into()
}

/// Tells Lambda why init failed (`POST /runtime/init/error`), so the init report carries our
/// `errorType` rather than a bare `Runtime.ExitError`. Best effort: the process exits next anyway.
pub async fn report_init_error(runtime_api: &str, diagnostic: &Diagnostic) {
    let body = match serde_json::to_vec(diagnostic) {
        Ok(body) => body,
        Err(e) => {
            error!(error = %e, "could not serialise the init error");
            return;
        }
    };
    // Lambda sets `host:port`; local emulators (cargo lambda) set a full `http://` base URL.
    let base = if runtime_api.starts_with("http://") {
        runtime_api.trim_end_matches('/').to_owned()
    } else {
        format!("http://{runtime_api}")
    };
    let request = http::Request::post(format!("{base}/2018-06-01/runtime/init/error"))
        .header(
            "Lambda-Runtime-Function-Error-Type",
            diagnostic.error_type.as_str(),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)));
    let request = match request {
        Ok(request) => request,
        Err(e) => {
            error!(error = %e, "could not build the init error report");
            return;
        }
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    match tokio::time::timeout(Duration::from_secs(2), client.request(request)).await {
        Ok(Ok(response)) if response.status().is_success() => {}
        Ok(Ok(response)) => {
            error!(status = %response.status(), "the runtime API refused the init error report")
        }
        Ok(Err(e)) => error!(error = %e, "reporting the init error failed"),
        Err(_) => error!("reporting the init error timed out"),
    }
}
