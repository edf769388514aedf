//! Input constraints from the two service models, checked by hand (no regex engine needed for
//! these small patterns), and the errors both protocols answer with.

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

fn constraint(member: &str, value: &str, rule: &str) -> ApiError {
    ApiError::Validation(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {rule}"
    ))
}

/// HealthLake ClientToken: `^[a-zA-Z0-9-]+$`, 1 to 64 characters.
pub fn healthlake_client_token(member: &str, token: &str) -> Result<(), ApiError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-';
    if token.is_empty() || token.len() > 64 || !token.chars().all(allowed) {
        return Err(constraint(
            member,
            token,
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9-]+$ and have length between 1 and 64",
        ));
    }
    Ok(())
}

/// HealthImaging clientToken: `[A-Za-z0-9._-]+`, 1 to 64 characters.
pub fn imaging_client_token(member: &str, token: &str) -> Result<(), ApiError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if token.is_empty() || token.len() > 64 || !token.chars().all(allowed) {
        return Err(constraint(
            member,
            token,
            "Member must satisfy regular expression pattern: [A-Za-z0-9._-]+ and have length between 1 and 64",
        ));
    }
    Ok(())
}

/// Both services: `s3://[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9](/.*)?`, at most 1024 characters.
pub fn s3_uri(member: &str, uri: &str) -> Result<(), ApiError> {
    if uri.len() > 1024 || !is_s3_uri(uri) {
        return Err(constraint(
            member,
            uri,
            r"Member must satisfy regular expression pattern: s3://[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9](/.*)? and have length at most 1024",
        ));
    }
    Ok(())
}

fn is_s3_uri(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("s3://") else {
        return false;
    };
    let bucket = rest.split('/').next().unwrap_or_default();
    let edge_ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let inner_ok = |c: u8| edge_ok(c) || c == b'.' || c == b'-';
    let bytes = bucket.as_bytes();
    match bytes {
        [first, middle @ .., last] if (1..=61).contains(&middle.len()) => {
            edge_ok(*first) && edge_ok(*last) && middle.iter().all(|c| inner_ok(*c))
        }
        _ => false,
    }
}

/// Both services: `arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+`, 20 to 2048 characters.
pub fn role_arn(member: &str, arn: &str) -> Result<(), ApiError> {
    if !(20..=2048).contains(&arn.len()) || !is_role_arn(arn) {
        return Err(constraint(
            member,
            arn,
            "Member must satisfy regular expression pattern: arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+",
        ));
    }
    Ok(())
}

fn is_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws") else {
        return false;
    };
    // An optional partition suffix such as `-cn` or `-us-gov` runs up to the next colon.
    let rest = match rest.strip_prefix('-') {
        Some(suffix) => match suffix.split_once(':') {
            Some((partition, after)) if !partition.is_empty() => after,
            _ => return false,
        },
        None => match rest.strip_prefix(':') {
            Some(after) => after,
            None => return false,
        },
    };
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let (account, role) = rest.split_at(rest.len().min(12));
    account.len() == 12
        && account.bytes().all(|c| c.is_ascii_digit())
        && role
            .strip_prefix(":role/")
            .is_some_and(|name| !name.is_empty())
}

/// Job and data store names: 1 to 64 characters (the pattern admits nearly everything).
pub fn name(member: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.chars().count() > 64 {
        return Err(constraint(
            member,
            value,
            "Member must have length between 1 and 64",
        ));
    }
    Ok(())
}

/// HealthImaging's `JobName`: 1 to 64 of `[A-Za-z0-9._/#-]` (its service model's pattern).
pub fn imaging_job_name(member: &str, value: &str) -> Result<(), ApiError> {
    name(member, value)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '#' | '-');
    if !value.chars().all(allowed) {
        return Err(constraint(
            member,
            value,
            "Member must satisfy regular expression pattern: [A-Za-z0-9._/#-]+",
        ));
    }
    Ok(())
}

/// The ids this double hands out and accepts for pre-seeding: 32 characters `[0-9a-z]`.
pub fn is_datastore_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
}

/// HealthImaging datastoreId: `[0-9a-z]{32}`.
pub fn imaging_datastore_id(id: &str) -> Result<(), ApiError> {
    if !is_datastore_id(id) {
        return Err(constraint(
            "datastoreId",
            id,
            "Member must satisfy regular expression pattern: [0-9a-z]{32}",
        ));
    }
    Ok(())
}

/// HealthImaging jobId: `[0-9a-z]{1,32}`.
pub fn imaging_job_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
    if !ok {
        return Err(constraint(
            "jobId",
            id,
            "Member must satisfy regular expression pattern: [0-9a-z]{1,32}",
        ));
    }
    Ok(())
}

/// HealthLake DatastoreId / JobId: 1 to 32 characters.
pub fn healthlake_id(member: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 32 {
        return Err(constraint(
            member,
            id,
            "Member must have length between 1 and 32",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris_follow_the_model_pattern() {
        for ok in ["s3://abc", "s3://my-bucket/prefix/", "s3://a.b-c/x.ndjson"] {
            assert!(is_s3_uri(ok), "{ok}");
        }
        for bad in [
            "s3://ab",
            "s3://Bucket/x",
            "s3://-bucket/x",
            "s3://bucket-/x",
            "https://bucket/x",
            "s3:///x",
            "s3://bu_cket",
        ] {
            assert!(!is_s3_uri(bad), "{bad}");
        }
        assert!(s3_uri("S3Uri", &format!("s3://bucket/{}", "k".repeat(1020))).is_err());
    }

    #[test]
    fn role_arns_follow_the_model_pattern() {
        for ok in [
            "arn:aws:iam::123456789012:role/import",
            "arn:aws-us-gov:iam::123456789012:role/a/b",
        ] {
            assert!(role_arn("DataAccessRoleArn", ok).is_ok(), "{ok}");
        }
        for bad in [
            "arn:aws:iam::12345678901:role/import",
            "arn:aws:iam::123456789012:user/import",
            "arn:aws:iam::123456789012:role/",
            "arn:aws-:iam::123456789012:role/x",
        ] {
            assert!(role_arn("DataAccessRoleArn", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_tokens_differ_between_services() {
        assert!(healthlake_client_token("ClientToken", "abc-123").is_ok());
        assert!(healthlake_client_token("ClientToken", "abc_123").is_err());
        assert!(healthlake_client_token("ClientToken", &"a".repeat(65)).is_err());
        assert!(imaging_client_token("clientToken", "abc_1.2-3").is_ok());
        assert!(imaging_client_token("clientToken", "abc 1").is_err());
        assert!(imaging_client_token("clientToken", "").is_err());
    }

    #[test]
    fn missing_members_are_named() {
        let err = required::<()>(None, "InputDataConfig").unwrap_err();
        assert!(err.to_string().contains("'InputDataConfig'"));
        assert_eq!(err.type_name(), "ValidationException");
    }
}
