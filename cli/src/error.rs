//! The CLI's errors: each says what went wrong and what to do, keeps its source, and maps to an
//! exit code scripts can tell apart: 1 not found or refused, 2 usage or configuration, 3 an AWS
//! call that failed (try again).

use healthimport::domain::retry::RetryRefused;
use healthimport::intake::IntakeError;
use healthimport::ports::store::StoreError;

use crate::config::ConfigError;
use crate::exporter::InvokeError;
use crate::stack::StackError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error("{0}")]
    Usage(String),
    #[error("{what}")]
    NotFound { what: String },
    /// The refusal is the message (not a source), so it is printed once.
    #[error("cannot retry {target}: {reason}")]
    Refused {
        target: String,
        reason: RetryRefused,
    },
    #[error("the jobs table could not be read or written (the causes below say why: a ResourceNotFoundException means JOBS_TABLE or --stack names a table that does not exist in this account and Region; an access error, your credentials); then try again")]
    Store(#[from] StoreError),
    #[error("the retry could not be recorded; it is safe to run the same retry again")]
    Intake(#[from] IntakeError),
    #[error("the exporter function could not be invoked; check EXPORTER_FUNCTION_NAME and your credentials")]
    Invoke(#[from] InvokeError),
    #[error("the exporter refused the request ({error_type}): {message}")]
    ExportRefused { error_type: String, message: String },
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process's exit code: 1 not found or refused, 2 usage or configuration, 3 AWS failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NotFound { .. }
            | CliError::Refused { .. }
            | CliError::ExportRefused { .. } => 1,
            CliError::Config(_) | CliError::Usage(_) => 2,
            CliError::Stack(e) if e.is_not_found() => 2,
            CliError::Stack(_)
            | CliError::Store(_)
            | CliError::Intake(_)
            | CliError::Invoke(_)
            | CliError::Output(_) => 3,
        }
    }
}

/// The error and each of its causes, one per line, as the CLI prints it.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("error: {error}");
    let mut cause = error.source();
    while let Some(source) = cause {
        text.push_str(&format!("\n  caused by: {source}"));
        cause = source.source();
    }
    text
}
