//! Tracing setup shared by every function, and how an error is rendered for logs and Lambda
//! error messages.

use std::str::FromStr;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{optional, Env, ProcessEnv};

/// How a function logs, read from the environment the way Lambda's own runtime subscriber reads
/// it: `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging controls) or else `RUST_LOG` sets the
/// level, `RUST_LOG`'s directives refine it, and `AWS_LAMBDA_LOG_FORMAT=JSON` (the template's
/// `LoggingConfig: LogFormat: JSON`) selects JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub level: LevelFilter,
    pub json: bool,
}

impl LogSettings {
    pub fn from_env(env: &impl Env) -> LogSettings {
        let level = optional(env, "AWS_LAMBDA_LOG_LEVEL")
            .or_else(|| optional(env, "RUST_LOG"))
            .and_then(|level| LevelFilter::from_str(&level).ok())
            .unwrap_or(LevelFilter::INFO);
        let json = optional(env, "AWS_LAMBDA_LOG_FORMAT")
            .is_some_and(|format| format.eq_ignore_ascii_case("json"));
        LogSettings { level, json }
    }
}

/// The libraries that log what passes through them at DEBUG or TRACE: the Lambda runtime prints
/// every raw event (a bearer token, a file's key), the HTTP and TLS stacks and the SDK's runtime
/// print requests and bodies. However verbose a function is set to be, these stay at INFO.
const CLAMPED: [&str; 10] = [
    "lambda_runtime",
    "lambda_runtime_api_client",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sigv4",
    "aws_config",
];

/// The filter for `settings`: their level, `RUST_LOG`'s directives, and the clamps, which are
/// added last so that no directive of `RUST_LOG` can lift them.
pub fn filter(settings: LogSettings, rust_log: Option<&str>) -> EnvFilter {
    let mut filter = EnvFilter::builder()
        .with_default_directive(settings.level.into())
        .parse_lossy(rust_log.unwrap_or_default());
    for target in CLAMPED {
        if let Ok(clamp) = format!("{target}=info").parse() {
            filter = filter.add_directive(clamp);
        }
    }
    filter
}

/// Initialises tracing once per process with [`LogSettings`]. Spans carry the ids a line is
/// about (the job, the batch), so JSON lines include the current span's fields: CloudWatch Logs
/// Insights can query every line of one job by `span.job_id`.
pub fn init() {
    let settings = LogSettings::from_env(&ProcessEnv);
    let rust_log = optional(&ProcessEnv, "RUST_LOG");
    let builder = fmt()
        .with_env_filter(filter(settings, rust_log.as_deref()))
        .with_target(false)
        .without_time();
    // `try_init` so a second call (tests, benches) is harmless rather than a panic.
    let _ = if settings.json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_s_log_level_wins_over_rust_log_and_info_is_the_default() {
        let both = [("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("RUST_LOG", "debug")];
        assert_eq!(LogSettings::from_env(&both).level, LevelFilter::WARN);
        let rust_log = [("RUST_LOG", "debug")];
        assert_eq!(LogSettings::from_env(&rust_log).level, LevelFilter::DEBUG);
        let none: [(&str, &str); 0] = [];
        assert_eq!(LogSettings::from_env(&none).level, LevelFilter::INFO);
        let nonsense = [("AWS_LAMBDA_LOG_LEVEL", "loud")];
        assert_eq!(LogSettings::from_env(&nonsense).level, LevelFilter::INFO);
    }

    #[test]
    fn the_chatty_libraries_stay_at_info_whatever_rust_log_says() {
        let settings = LogSettings::from_env(&[("AWS_LAMBDA_LOG_LEVEL", "TRACE")]);
        let text = filter(settings, Some("trace,lambda_runtime=trace,hyper=trace")).to_string();
        for target in CLAMPED {
            assert!(text.contains(&format!("{target}=info")), "{text}");
        }
        assert!(!text.contains("lambda_runtime=trace"), "{text}");
    }

    #[test]
    fn json_lines_when_lambda_s_log_format_says_so() {
        assert!(LogSettings::from_env(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]).json);
        assert!(LogSettings::from_env(&[("AWS_LAMBDA_LOG_FORMAT", "json")]).json);
        assert!(!LogSettings::from_env(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]).json);
        assert!(!LogSettings::from_env(&[("AWS_LAMBDA_FUNCTION_NAME", "f")]).json);
    }
}
