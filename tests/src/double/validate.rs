//! The errors both protocols answer with. The input constraints themselves (patterns, lengths,
//! enums, required members) come from the services' own models: see [`super::service_model`].

use axum::http::StatusCode;

/// An error answer of either service. The variant names are the wire error types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    /// The body is not the JSON the operation expects.
    #[error("{0}")]
    Serialization(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Throttling(String),
    #[error("{0}")]
    ServiceQuotaExceeded(String),
    #[error("{0}")]
    InternalServer(String),
    #[error("{0}")]
    UnknownOperation(String),
    /// Both services' AccessDeniedException (HealthImaging: HTTP 403).
    #[error("{0}")]
    AccessDenied(String),
}

impl ApiError {
    /// The error type both protocols put on the wire (`__type` or `x-amzn-ErrorType`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Validation(_) => "ValidationException",
            Self::Serialization(_) => "SerializationException",
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::Conflict(_) => "ConflictException",
            Self::Throttling(_) => "ThrottlingException",
            Self::ServiceQuotaExceeded(_) => "ServiceQuotaExceededException",
            Self::InternalServer(_) => "InternalServerException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::AccessDenied(_) => "AccessDeniedException",
        }
    }

    /// awsJson1.0 answers every client error with 400 and server errors with 500.
    pub fn healthlake_status(&self) -> StatusCode {
        match self {
            Self::InternalServer(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// restJson1 carries each error's own HTTP status (from the HealthImaging model).
    pub fn imaging_status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::Serialization(_) => StatusCode::BAD_REQUEST,
            Self::ResourceNotFound(_) | Self::UnknownOperation(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Throttling(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceQuotaExceeded(_) => StatusCode::PAYMENT_REQUIRED,
            Self::InternalServer(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::AccessDenied(_) => StatusCode::FORBIDDEN,
        }
    }

    pub fn is_validation(&self) -> bool {
        matches!(self, Self::Validation(_) | Self::Serialization(_))
    }
}

/// The member was absent or null: AWS's wording, naming the member.
pub fn required<T>(value: Option<T>, member: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| {
        ApiError::Validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_members_are_named() {
        let err = required::<()>(None, "InputDataConfig").unwrap_err();
        assert!(err.to_string().contains("'InputDataConfig'"));
        assert_eq!(err.type_name(), "ValidationException");
    }
}
