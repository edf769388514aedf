//! HealthLake's identity-provider Lambda contract: the event it sends and the response it expects.

use serde::Serialize;
use serde_json::Value;

use super::claims::Granted;
use super::reason::DenyReason;

/// The fields of HealthLake's event, borrowed from the raw JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthEvent<'a> {
    /// `https://healthlake.<region>.amazonaws.com/datastore/<id>/r4/`.
    pub datastore_endpoint: &'a str,
    pub bearer_token: &'a str,
    /// HealthLake's action name (`ReadResource`, `SearchWithGet`, ...), for the logs only.
    pub operation_name: Option<&'a str>,
}

impl<'a> AuthEvent<'a> {
    /// Reads the event from raw JSON. The handler takes a `serde_json::Value` rather than a typed
    /// struct so that a malformed event becomes a logged deny, not a runtime deserialization error.
    pub fn from_value(value: &'a Value) -> Result<Self, DenyReason> {
        let field = |name: &str| value.get(name);
        let datastore_endpoint = field("datastoreEndpoint")
            .and_then(Value::as_str)
            .ok_or(DenyReason::MalformedEvent)?;
        let bearer_token = match field("bearerToken") {
            None | Some(Value::Null) => return Err(DenyReason::MissingToken),
            Some(Value::String(token)) => token.as_str(),
            Some(_) => return Err(DenyReason::MalformedEvent),
        };
        Ok(AuthEvent {
            datastore_endpoint,
            bearer_token,
            operation_name: field("operationName").and_then(Value::as_str),
        })
    }
}

/// The response HealthLake reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthResponse {
    #[serde(rename = "authPayload")]
    pub auth_payload: AuthPayload,
    #[serde(rename = "iamRoleARN")]
    pub iam_role_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthPayload {
    pub iss: String,
    /// The event's data store endpoint (HealthLake requires it here, whatever the token's `aud`).
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// A JSON boolean, as AWS's own decoder returns it.
    #[serde(rename = "isAuthorized")]
    pub is_authorized: bool,
    pub uid: String,
    pub scope: String,
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

impl AuthResponse {
    pub fn allow(granted: Granted, datastore_endpoint: &str, role_arn: &str) -> Self {
        AuthResponse {
            auth_payload: AuthPayload {
                iss: granted.iss,
                aud: datastore_endpoint.to_owned(),
                iat: granted.iat,
                nbf: granted.nbf,
                exp: granted.exp,
                is_authorized: true,
                uid: granted.sub,
                scope: granted.scope,
                fhir_user: granted.fhir_user,
                patient: granted.patient,
            },
            iam_role_arn: role_arn.to_owned(),
        }
    }

    /// A well-formed refusal: every required field present, nothing from the (untrusted) token.
    /// The times are "now" and the scope is empty, so even a consumer that ignored
    /// `isAuthorized` would find nothing to grant.
    pub fn deny(issuer: &str, datastore_endpoint: &str, role_arn: &str, now: i64) -> Self {
        AuthResponse {
            auth_payload: AuthPayload {
                iss: issuer.to_owned(),
                aud: datastore_endpoint.to_owned(),
                iat: now,
                nbf: now,
                exp: now,
                is_authorized: false,
                uid: String::new(),
                scope: String::new(),
                fhir_user: None,
                patient: None,
            },
            iam_role_arn: role_arn.to_owned(),
        }
    }

    pub fn is_authorized(&self) -> bool {
        self.auth_payload.is_authorized
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_healthlake_event() {
        let raw = json!({
            "datastoreEndpoint": "https://healthlake.us-east-1.amazonaws.com/datastore/abc/r4/",
            "bearerToken": "Bearer a.b.c",
            "operationName": "SearchWithGet",
        });
        let event = AuthEvent::from_value(&raw).expect("valid");
        assert_eq!(event.bearer_token, "Bearer a.b.c");
        assert_eq!(event.operation_name, Some("SearchWithGet"));
        assert!(event.datastore_endpoint.ends_with("/r4/"));
    }

    #[test]
    fn malformed_events_are_named() {
        let cases = [
            (json!(null), DenyReason::MalformedEvent),
            (json!([]), DenyReason::MalformedEvent),
            (json!({"bearerToken": "x"}), DenyReason::MalformedEvent),
            (
                json!({"datastoreEndpoint": 1, "bearerToken": "x"}),
                DenyReason::MalformedEvent,
            ),
            (
                json!({"datastoreEndpoint": "e", "bearerToken": 1}),
                DenyReason::MalformedEvent,
            ),
            (json!({"datastoreEndpoint": "e"}), DenyReason::MissingToken),
            (
                json!({"datastoreEndpoint": "e", "bearerToken": null}),
                DenyReason::MissingToken,
            ),
        ];
        for (raw, reason) in cases {
            assert_eq!(AuthEvent::from_value(&raw), Err(reason), "{raw}");
        }
    }

    #[test]
    fn response_shape_matches_healthlake_contract() {
        let granted = Granted {
            iss: "https://idp".into(),
            sub: "u1".into(),
            iat: 1,
            nbf: 2,
            exp: 3,
            scope: "launch patient/*.rs".into(),
            fhir_user: Some("https://fhir/Patient/1".into()),
            patient: None,
        };
        let allow = serde_json::to_value(AuthResponse::allow(granted, "https://ep/", "arn:role"))
            .expect("json");
        assert_eq!(
            allow,
            json!({
                "authPayload": {
                    "iss": "https://idp", "aud": "https://ep/", "iat": 1, "nbf": 2, "exp": 3,
                    "isAuthorized": true, "uid": "u1", "scope": "launch patient/*.rs",
                    "fhirUser": "https://fhir/Patient/1"
                },
                "iamRoleARN": "arn:role"
            })
        );
        let deny = serde_json::to_value(AuthResponse::deny(
            "https://idp",
            "https://ep/",
            "arn:role",
            9,
        ))
        .expect("json");
        assert_eq!(deny["authPayload"]["isAuthorized"], json!(false));
        assert_eq!(deny["authPayload"]["scope"], json!(""));
        assert_eq!(deny["authPayload"]["exp"], json!(9));
        assert_eq!(deny["iamRoleARN"], json!("arn:role"));
    }
}
