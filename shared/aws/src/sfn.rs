//! Step Functions adapters: the [`TrackingWorkflow`] port (one execution per job) and the
//! [`WaitingExecutions`] port (releasing an execution that waits for its job's end).

use async_trait::async_trait;
use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::operation::send_task_failure::SendTaskFailureError;
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::Client;
use healthimport::domain::job::JobId;
use healthimport::ports::completion::{Release, ReleaseError, WaitingExecutions};
use healthimport::ports::workflow::{
    TrackingError, TrackingInput, TrackingOutcome, TrackingWorkflow,
};
use serde_json::Value;

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
    async fn track(
        &self,
        job_id: &JobId,
        first_wait_seconds: u64,
    ) -> Result<TrackingOutcome, TrackingError> {
        let input = serde_json::to_string(&TrackingInput {
            job_id: job_id.clone(),
            next_wait_seconds: first_wait_seconds,
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

/// [`WaitingExecutions`] on Step Functions: `SendTaskSuccess` / `SendTaskFailure` with the token
/// the waiting task handed out. A token whose wait has ended (released before, timed out, or its
/// execution gone) is answered InvalidToken, TaskDoesNotExist or TaskTimedOut: all three mean
/// "already released".
#[derive(Debug, Clone)]
pub struct StepFunctionsWaits {
    client: Client,
}

impl StepFunctionsWaits {
    pub fn new(client: Client) -> Self {
        StepFunctionsWaits { client }
    }
}

/// Step Functions' answers for a token whose wait is over.
trait WaitOver {
    fn wait_over(&self) -> bool;
}

impl WaitOver for SendTaskSuccessError {
    fn wait_over(&self) -> bool {
        matches!(
            self,
            SendTaskSuccessError::InvalidToken(_)
                | SendTaskSuccessError::TaskDoesNotExist(_)
                | SendTaskSuccessError::TaskTimedOut(_)
        )
    }
}

impl WaitOver for SendTaskFailureError {
    fn wait_over(&self) -> bool {
        matches!(
            self,
            SendTaskFailureError::InvalidToken(_)
                | SendTaskFailureError::TaskDoesNotExist(_)
                | SendTaskFailureError::TaskTimedOut(_)
        )
    }
}

fn released<T, E>(job_id: &JobId, result: Result<T, SdkError<E>>) -> Result<Release, ReleaseError>
where
    E: WaitOver + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(Release::Released),
        Err(SdkError::ServiceError(e)) if e.err().wait_over() => Ok(Release::AlreadyReleased),
        Err(e) => Err(ReleaseError {
            job_id: job_id.clone(),
            source: Box::new(e),
        }),
    }
}

#[async_trait]
impl WaitingExecutions for StepFunctionsWaits {
    async fn succeed(
        &self,
        job_id: &JobId,
        token: &str,
        output: &Value,
    ) -> Result<Release, ReleaseError> {
        let result = self
            .client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await;
        released(job_id, result)
    }

    async fn fail(
        &self,
        job_id: &JobId,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<Release, ReleaseError> {
        let result = self
            .client
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(cause)
            .send()
            .await;
        released(job_id, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
    use aws_sdk_sfn::types::error::{InvalidToken, TaskDoesNotExist, TaskTimedOut};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn waits(error: Option<fn() -> SendTaskSuccessError>) -> StepFunctionsWaits {
        let rule = match error {
            Some(error) => mock!(Client::send_task_success).then_error(error),
            None => mock!(Client::send_task_success)
                .match_requests(|r| {
                    r.task_token() == Some("token") && r.output() == Some(r#"{"jobId":"j"}"#)
                })
                .then_output(|| SendTaskSuccessOutput::builder().build()),
        };
        StepFunctionsWaits::new(mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&rule]))
    }

    #[tokio::test]
    async fn a_released_wait_is_released_and_an_ended_one_is_already_released() {
        let job = JobId::from_stored("j");
        let output = serde_json::json!({"jobId": "j"});
        assert_eq!(
            waits(None).succeed(&job, "token", &output).await.unwrap(),
            Release::Released
        );
        // Each of Step Functions' three answers for a token whose wait is over.
        let answers: [fn() -> SendTaskSuccessError; 3] = [
            || SendTaskSuccessError::InvalidToken(InvalidToken::builder().build()),
            || SendTaskSuccessError::TaskDoesNotExist(TaskDoesNotExist::builder().build()),
            || SendTaskSuccessError::TaskTimedOut(TaskTimedOut::builder().build()),
        ];
        for ended in answers {
            assert_eq!(
                waits(Some(ended))
                    .succeed(&job, "token", &output)
                    .await
                    .unwrap(),
                Release::AlreadyReleased
            );
        }
    }
}
