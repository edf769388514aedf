//! Tracing setup shared by every function, and how an error is rendered for logs and Lambda
//! error messages.

use tracing_subscriber::{fmt, EnvFilter};

/// Initialises tracing once per process: JSON lines on Lambda (CloudWatch Logs Insights can query
/// the fields), human-readable text elsewhere. `RUST_LOG` (or the Lambda advanced logging level
/// `AWS_LAMBDA_LOG_LEVEL`) sets the level; the default is `info`.
pub fn init() {
    let level = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let on_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = fmt().with_env_filter(filter).with_target(false);
    // `try_init` so a second call (tests, benches) is harmless rather than a panic.
    let _ = if on_lambda {
        builder
            .json()
            .with_current_span(false)
            .without_time()
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The error and its sources, so a log line or a Lambda error message (and the workflow history
/// that keeps it) carries the service's own message, not only our summary of it.
pub fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    // Three levels reach the service's message; deeper ones are SDK plumbing.
    for _ in 0..3 {
        let Some(s) = source else { break };
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
