//! The exporter function, invoked as an operator's on-demand request: the port the `export`
//! command uses, and its adapter on Lambda Invoke (synchronous, so the answer is the exporter's
//! own: the job it recorded and whether it started).

use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use serde_json::Value;

/// What the exporter answered.
#[derive(Debug, Clone, PartialEq)]
pub enum ExporterAnswer {
    /// Its response (`jobId`, `outcome`, ...).
    Response(Value),
    /// It failed: its `errorType` and `errorMessage`.
    Failed { error_type: String, message: String },
}

#[derive(Debug, thiserror::Error)]
#[error("Lambda Invoke of {function} failed")]
pub struct InvokeError {
    pub function: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

#[async_trait]
pub trait ExportRequests: Send + Sync {
    async fn request(&self, event: &Value) -> Result<ExporterAnswer, InvokeError>;
}

/// [`ExportRequests`] on Lambda Invoke.
pub struct LambdaExporter {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl LambdaExporter {
    pub fn new(client: aws_sdk_lambda::Client, function: impl Into<String>) -> Self {
        LambdaExporter {
            client,
            function: function.into(),
        }
    }

    fn failed(&self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> InvokeError {
        InvokeError {
            function: self.function.clone(),
            source: source.into(),
        }
    }
}

#[async_trait]
impl ExportRequests for LambdaExporter {
    async fn request(&self, event: &Value) -> Result<ExporterAnswer, InvokeError> {
        let payload = serde_json::to_vec(event).map_err(|e| self.failed(e))?;
        let response = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        let body: Value = match response.payload() {
            Some(blob) if !blob.as_ref().is_empty() => {
                serde_json::from_slice(blob.as_ref()).map_err(|e| self.failed(e))?
            }
            _ => Value::Null,
        };
        Ok(match response.function_error() {
            None => ExporterAnswer::Response(body),
            Some(kind) => ExporterAnswer::Failed {
                error_type: body["errorType"].as_str().unwrap_or(kind).to_owned(),
                message: body["errorMessage"].as_str().unwrap_or_default().to_owned(),
            },
        })
    }
}
