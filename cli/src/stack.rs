//! `--stack NAME`: the stack's Outputs and Parameters (CloudFormation DescribeStacks), as the
//! variables the functions read, so the rest of the CLI reads one kind of setting.

use std::collections::HashMap;

use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::types::Stack;

use crate::config::{StackSource, STACK_NAMES};

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(
        "stack {stack} does not exist in this account and Region; check --stack and AWS_REGION"
    )]
    NotFound { stack: String },
    #[error("could not describe stack {stack}; check your credentials and region")]
    Describe {
        stack: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StackError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StackError::NotFound { .. })
    }
}

/// The variables `stack` gives, by the functions' names (`JOBS_TABLE`, ...).
pub async fn stack_settings(
    client: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<HashMap<String, String>, StackError> {
    let described = client.describe_stacks().stack_name(stack).send().await;
    let output = match described {
        Ok(output) => output,
        // CloudFormation answers a missing stack with a ValidationError naming it.
        Err(SdkError::ServiceError(e))
            if e.err().code() == Some("ValidationError")
                && e.err()
                    .message()
                    .is_some_and(|m| m.contains("does not exist")) =>
        {
            return Err(StackError::NotFound {
                stack: stack.to_owned(),
            })
        }
        Err(e) => {
            return Err(StackError::Describe {
                stack: stack.to_owned(),
                source: e.into(),
            })
        }
    };
    let found = output
        .stacks()
        .first()
        .ok_or_else(|| StackError::NotFound {
            stack: stack.to_owned(),
        })?;
    Ok(variables_of(found))
}

/// The Outputs and Parameters of `stack` that the CLI reads, by variable name.
pub fn variables_of(stack: &Stack) -> HashMap<String, String> {
    let outputs: HashMap<&str, &str> = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?, o.output_value()?)))
        .collect();
    let parameters: HashMap<&str, &str> = stack
        .parameters()
        .iter()
        .filter_map(|p| {
            // A parameter left at its default has no value of its own: the function gets the
            // default, which the CLI's defaults equal.
            Some((p.parameter_key()?, p.parameter_value()?))
        })
        .collect();
    STACK_NAMES
        .iter()
        .filter_map(|(variable, source)| {
            let value = match source {
                StackSource::Output(name) => outputs.get(name),
                StackSource::Parameter(name) => parameters.get(name),
            }?;
            Some(((*variable).to_owned(), (*value).to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudformation::types::{Output, Parameter};

    #[test]
    fn outputs_and_parameters_become_the_functions_variables() {
        let stack = Stack::builder()
            .outputs(
                Output::builder()
                    .output_key("JobsTableName")
                    .output_value("jobs")
                    .build(),
            )
            .outputs(
                Output::builder()
                    .output_key("Unrelated")
                    .output_value("x")
                    .build(),
            )
            .parameters(
                Parameter::builder()
                    .parameter_key("BatchQuietSeconds")
                    .parameter_value("30")
                    .build(),
            )
            .build();
        let variables = variables_of(&stack);
        assert_eq!(variables["JOBS_TABLE"], "jobs");
        assert_eq!(variables["BATCH_QUIET_SECONDS"], "30");
        assert_eq!(variables.len(), 2);
    }
}
