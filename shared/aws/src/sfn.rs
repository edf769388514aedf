//! Step Functions adapter of the [`TrackingWorkflow`] port.

use async_trait::async_trait;
use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::Client;
use healthimport::domain::job::JobId;
use healthimport::ports::workflow::{
    TrackingError, TrackingInput, TrackingOutcome, TrackingWorkflow,
};

/// [`TrackingWorkflow`] on a Step Functions Standard state machine. The execution is named after
/// the job id: Standard workflows refuse a second execution of the same name (and accept a
/// repeat with identical input as the same execution) for 90 days.
#[derive(Debug, Clone)]
pub struct StepFunctionsTracking {
    client: Client,
    state_machine_arn: String,
}

impl StepFunctionsTracking {
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        StepFunctionsTracking {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }
}

#[async_trait]
impl TrackingWorkflow for StepFunctionsTracking {
    async fn track(&self, job_id: &JobId) -> Result<TrackingOutcome, TrackingError> {
        let input = serde_json::to_string(&TrackingInput {
            job_id: job_id.clone(),
        })
        .map_err(|e| TrackingError {
            job_id: job_id.clone(),
            source: Box::new(e),
        })?;
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(job_id.execution_name())
            .input(input)
            .send()
            .await;
        match result {
            Ok(output) => Ok(TrackingOutcome::Started {
                execution_arn: output.execution_arn().to_owned(),
            }),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), StartExecutionError::ExecutionAlreadyExists(_)) =>
            {
                Ok(TrackingOutcome::AlreadyTracking)
            }
            Err(e) => Err(TrackingError {
                job_id: job_id.clone(),
                source: Box::new(e),
            }),
        }
    }
}
