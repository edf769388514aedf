//! `healthimport export [--incremental]`: an on-demand export of the FHIR data store, requested
//! from the exporter function as any on-demand caller does (`{"requestId", "mode"}`), so it is
//! recorded, admitted to HealthLake's one-job lane and tracked like the scheduled ones.

use healthimport::domain::export::ExportTrigger;
use healthimport::domain::job::Timestamp;
use serde_json::{json, Value};

use crate::error::CliError;
use crate::exporter::{ExportRequests, ExporterAnswer};

/// The request id an operator's export gets unless one is given: the instant, which the
/// exporter's request ids allow (`A-Z a-z 0-9 . _ : -`).
pub fn default_request_id(now: Timestamp) -> String {
    format!("cli-{now}")
}

/// Asks the exporter for an export; its answer (the job it recorded and whether it started).
#[tracing::instrument(skip(exporter))]
pub async fn export(
    exporter: &impl ExportRequests,
    request_id: &str,
    incremental: bool,
) -> Result<Value, CliError> {
    // The exporter checks this too; checking first gives the operator a usage error, not a
    // function error.
    ExportTrigger::on_demand(request_id)
        .map_err(|e| CliError::Usage(format!("--request-id {request_id:?}: {e}")))?;
    let event = json!({
        "requestId": request_id,
        "mode": if incremental { "incremental" } else { "full" },
    });
    match exporter.request(&event).await? {
        ExporterAnswer::Response(response) => {
            tracing::info!(job_id = %response["jobId"], outcome = %response["outcome"], "export requested");
            Ok(response)
        }
        ExporterAnswer::Failed {
            error_type,
            message,
        } => Err(CliError::ExportRefused {
            error_type,
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::InvokeError;
    use async_trait::async_trait;
    use std::sync::Mutex;

    #[derive(Default)]
    struct RecordingExporter {
        events: Mutex<Vec<Value>>,
        fail: bool,
    }

    #[async_trait]
    impl ExportRequests for RecordingExporter {
        async fn request(&self, event: &Value) -> Result<ExporterAnswer, InvokeError> {
            self.events.lock().unwrap().push(event.clone());
            Ok(if self.fail {
                ExporterAnswer::Failed {
                    error_type: "InvalidExportEvent".into(),
                    message: "no export is configured".into(),
                }
            } else {
                ExporterAnswer::Response(json!({"jobId": "j", "outcome": "STARTED"}))
            })
        }
    }

    #[tokio::test]
    async fn an_incremental_export_is_requested_with_its_mode_and_id() {
        let exporter = RecordingExporter::default();
        let answer = export(&exporter, "nightly-1", true).await.unwrap();
        assert_eq!(answer["outcome"], "STARTED");
        assert_eq!(
            exporter.events.lock().unwrap().as_slice(),
            &[json!({"requestId": "nightly-1", "mode": "incremental"})]
        );
    }

    #[tokio::test]
    async fn a_bad_id_is_a_usage_error_and_a_refusal_exits_1() {
        let exporter = RecordingExporter {
            fail: true,
            ..RecordingExporter::default()
        };
        let err = export(&exporter, "no spaces", false).await.unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            exporter.events.lock().unwrap().is_empty(),
            "nothing was sent"
        );
        let err = export(&exporter, &default_request_id(Timestamp::now()), false)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("no export is configured"), "{err}");
    }
}
