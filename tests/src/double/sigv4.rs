//! AWS Signature Version 4 verification for the service double: the `Authorization` header of an
//! incoming request is checked against the double's known credentials the way AWS's JSON and
//! REST-JSON services (HealthLake, HealthImaging) check it, so a signing bug fails locally.
//!
//! The canonical request is rebuilt from the request as received:
//! - canonical URI: the raw path (percent-encoding kept), dot segments and empty segments
//!   removed, then every byte outside the RFC 3986 unreserved set and `/` percent-encoded once
//!   more (services other than S3 sign the already-encoded path, so `%` becomes `%25`);
//! - canonical query: every `key=value` of the raw query percent-decoded (`+` as a space, as
//!   the SDKs parse it), then key and value re-encoded with only the unreserved characters
//!   `A-Z a-z 0-9 - _ . ~` left as they are, sorted by encoded key then encoded value;
//! - canonical headers: the `SignedHeaders` list in its order, lowercase names, values trimmed
//!   with inner whitespace runs collapsed to one space, repeated headers joined with `,`;
//! - payload hash: `x-amz-content-sha256` when present (and then it must match the body unless
//!   it is `UNSIGNED-PAYLOAD`), else the SHA-256 of the body.
//!
//! The string to sign uses the credential scope from the header (`date/region/service/
//! aws4_request`); the signing key is the HMAC-SHA256 chain `AWS4<secret>` → date → region →
//! service → `aws4_request`; the signatures are compared in constant time.
//!
//! Refusals carry AWS's error type, message and HTTP status ([`SigV4Error`]). What this does not
//! do: IAM policy evaluation, session-token validation, presigned (query-string) signatures,
//! the `Date` header as a fallback for `X-Amz-Date`, SigV4a.

use sha2::{Digest, Sha256};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far `X-Amz-Date` may be from the server's clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// An incoming request, as received.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The raw path as received (`Uri::path()`), percent-encoding kept.
    pub path: &'a str,
    /// The raw query as received (`Uri::query().unwrap_or("")`), without the `?`.
    pub query: &'a str,
    /// Every header as received (names in any case; a repeated header appears once per value).
    pub headers: &'a [(String, String)],
    /// The request body.
    pub body: &'a [u8],
}

/// Which refusal: the error type AWS answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigV4ErrorKind {
    /// No `Authorization` header (403).
    MissingAuthenticationToken,
    /// The access key id is unknown (403).
    UnrecognizedClient,
    /// The `Authorization` header is malformed or incomplete (400).
    IncompleteSignature,
    /// The signature is wrong, expired, or does not sign `host` (403).
    InvalidSignature,
}

/// A refused request: AWS's error type, message and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4Error {
    kind: SigV4ErrorKind,
    message: String,
}

impl SigV4Error {
    fn new(kind: SigV4ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn incomplete(message: impl Into<String>) -> Self {
        Self::new(SigV4ErrorKind::IncompleteSignature, message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(SigV4ErrorKind::InvalidSignature, message)
    }

    /// Which refusal.
    pub fn kind(&self) -> SigV4ErrorKind {
        self.kind
    }

    /// The error type AWS answers with (`__type` for awsJson, `x-amzn-ErrorType` for REST).
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            SigV4ErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            SigV4ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            SigV4ErrorKind::IncompleteSignature => "IncompleteSignatureException",
            SigV4ErrorKind::InvalidSignature => "InvalidSignatureException",
        }
    }

    /// The message AWS answers with.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status AWS answers with.
    pub fn status(&self) -> u16 {
        match self.kind {
            SigV4ErrorKind::IncompleteSignature => 400,
            _ => 403,
        }
    }
}

impl fmt::Display for SigV4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type(), self.message)
    }
}

impl std::error::Error for SigV4Error {}

/// The credential scope of a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The access key id that signed.
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    /// e.g. `us-east-1`.
    pub region: String,
    /// The signing name, e.g. `healthlake` or `medical-imaging`.
    pub service: String,
}

/// Verifies the request's SigV4 `Authorization` header; `credentials(access_key_id)` gives the
/// secret access key of a known key; `now` is the server's clock.
pub fn verify(
    request: &SignedRequest<'_>,
    credentials: &dyn Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Result<(), SigV4Error> {
    verify_scope(request, credentials, now).map(|_| ())
}

/// [`verify`], then checks the credential scope names `region` and `service` (AWS refuses a
/// request signed for another service or Region with InvalidSignatureException).
pub fn verify_for(
    request: &SignedRequest<'_>,
    credentials: &dyn Fn(&str) -> Option<String>,
    now: SystemTime,
    region: &str,
    service: &str,
) -> Result<Scope, SigV4Error> {
    let scope = verify_scope(request, credentials, now)?;
    if scope.service != service {
        return Err(SigV4Error::invalid(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if scope.region != region {
        return Err(SigV4Error::invalid(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            scope.region
        )));
    }
    Ok(scope)
}

/// [`verify`], returning the credential scope of the verified request.
pub fn verify_scope(
    request: &SignedRequest<'_>,
    credentials: &dyn Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Result<Scope, SigV4Error> {
    let authorization = header_values(request.headers, "authorization");
    let Some(authorization) = authorization.first() else {
        return Err(SigV4Error::new(
            SigV4ErrorKind::MissingAuthenticationToken,
            "Missing Authentication Token",
        ));
    };
    let auth = parse_authorization(authorization)?;

    // The date: X-Amz-Date, in ISO 8601 basic format.
    let amz_date = header_values(request.headers, "x-amz-date");
    let Some(amz_date) = amz_date.first().map(|v| v.trim().to_owned()) else {
        return Err(SigV4Error::incomplete(format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header. Authorization={authorization}"
        )));
    };
    let Some(request_time) = parse_amz_date(&amz_date) else {
        return Err(SigV4Error::incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See \
             http://en.wikipedia.org/wiki/ISO_8601"
        )));
    };

    let Some(secret) = credentials(&auth.scope.access_key_id) else {
        return Err(SigV4Error::new(
            SigV4ErrorKind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        ));
    };

    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(SigV4Error::invalid(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }

    // The clock: at most 15 minutes either way.
    let now_secs = unix_seconds(now);
    if request_time + (MAX_SKEW.as_secs() as i64) < now_secs {
        return Err(SigV4Error::invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            format_amz_date(now_secs - MAX_SKEW.as_secs() as i64),
            format_amz_date(now_secs)
        )));
    }
    if request_time - (MAX_SKEW.as_secs() as i64) > now_secs {
        return Err(SigV4Error::invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            format_amz_date(now_secs + MAX_SKEW.as_secs() as i64),
            format_amz_date(now_secs)
        )));
    }
    if !amz_date.starts_with(&auth.scope.date) {
        return Err(SigV4Error::invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.scope.date,
            &amz_date[..8]
        )));
    }

    let canonical = canonical_request(request, &auth.signed_headers);
    let credential_scope = format!(
        "{}/{}/{}/aws4_request",
        auth.scope.date, auth.scope.region, auth.scope.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{credential_scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(
        &secret,
        &auth.scope.date,
        &auth.scope.region,
        &auth.scope.service,
    );
    let expected = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(SigV4Error::invalid(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details.",
        ));
    }
    Ok(auth.scope)
}

struct Authorization {
    scope: Scope,
    signed_headers: Vec<String>,
    signature: String,
}

fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let value = value.trim();
    let Some(rest) = value.strip_prefix(ALGORITHM) else {
        // AWS answers an unknown scheme as an incomplete signature.
        let scheme = value.split_whitespace().next().unwrap_or("");
        return Err(SigV4Error::incomplete(format!(
            "Unsupported AWS 'algorithm': '{scheme}'"
        )));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some((name, v)) = part.split_once('=') {
            match name.trim() {
                "Credential" => credential = Some(v.trim()),
                "SignedHeaders" => signed_headers = Some(v.trim()),
                "Signature" => signature = Some(v.trim()),
                _ => {}
            }
        }
    }
    let mut missing = String::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ] {
        if v.is_none_or(str::is_empty) {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(SigV4Error::incomplete(format!(
            "{missing}Authorization={value}"
        )));
    };
    if !missing.is_empty() {
        return Err(SigV4Error::incomplete(format!(
            "{missing}Authorization={value}"
        )));
    }
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 {
        return Err(SigV4Error::incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{credential}'"
        )));
    }
    if parts[4] != "aws4_request" {
        return Err(SigV4Error::incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
            parts[4]
        )));
    }
    if parts[1].len() != 8 || !parts[1].bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigV4Error::incomplete(format!(
            "Date in Credential scope must be in YYYYMMDD format, got '{}'. ",
            parts[1]
        )));
    }
    if parts[0].is_empty() || parts[2].is_empty() || parts[3].is_empty() {
        return Err(SigV4Error::incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{credential}'"
        )));
    }
    Ok(Authorization {
        scope: Scope {
            access_key_id: parts[0].to_owned(),
            date: parts[1].to_owned(),
            region: parts[2].to_owned(),
            service: parts[3].to_owned(),
        },
        signed_headers: signed_headers
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        signature: signature.to_owned(),
    })
}

/// The canonical request (exposed for diagnostics and tests).
pub fn canonical_request(request: &SignedRequest<'_>, signed_headers: &[String]) -> String {
    let mut out = String::new();
    out.push_str(request.method);
    out.push('\n');
    out.push_str(&canonical_uri(request.path));
    out.push('\n');
    out.push_str(&canonical_query(request.query));
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        let values: Vec<String> = header_values(request.headers, name)
            .iter()
            .map(|v| collapse_whitespace(v))
            .collect();
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(&payload_hash(request));
    out
}

fn payload_hash(request: &SignedRequest<'_>) -> String {
    let body_hash = hex::encode(Sha256::digest(request.body));
    match header_values(request.headers, "x-amz-content-sha256").first() {
        // The declared hash is what was signed; a body that does not match it is refused by the
        // signature check (the declared hash is replaced by the body's own).
        Some(declared) if declared.trim() == UNSIGNED_PAYLOAD => UNSIGNED_PAYLOAD.to_owned(),
        Some(declared) if declared.trim().eq_ignore_ascii_case(&body_hash) => {
            declared.trim().to_owned()
        }
        _ => body_hash,
    }
}

/// The canonical URI of a raw (already percent-encoded) path, for services other than S3.
pub fn canonical_uri(raw_path: &str) -> String {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = String::from("/");
    normalized.push_str(&segments.join("/"));
    let ends_with_slash = ["/", "/.", "/./", "/..", "/../"]
        .iter()
        .any(|s| path.ends_with(s));
    if ends_with_slash && !normalized.ends_with('/') {
        normalized.push('/');
    }
    uri_encode(normalized.as_bytes(), false)
}

/// The canonical query string of a raw query (without `?`).
pub fn canonical_query(raw_query: &str) -> String {
    let mut params: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&form_decode(k), true),
                uri_encode(&form_decode(v), true),
            )
        })
        .collect();
    params.sort();
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-decodes a query component, `+` as a space (as the SDKs parse the query they sign).
fn form_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// URI-encodes: RFC 3986 unreserved characters as they are, `/` as it is unless `encode_slash`,
/// every other byte as `%XX` (uppercase hex).
fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else if b == b'/' && !encode_slash {
            out.push('/');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn collapse_whitespace(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn header_values(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Parses `YYYYMMDDTHHMMSSZ` to Unix seconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, m, d) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hh, mm, ss) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3_600 + mm * 60 + ss)
}

/// Formats Unix seconds as `YYYYMMDDTHHMMSSZ`.
fn format_amz_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

// Howard Hinnant's proleptic Gregorian day algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

    const HOST: &str = "localhost:4599";
    const IMPORT_ID: &str = "0123456789abcdef0123456789abcdef";

    fn creds(key: &str) -> Option<String> {
        (key == "testing").then(|| "testing".to_owned())
    }

    /// A request as received, signed with the real `aws-sigv4` as the SDK clients sign.
    struct Received {
        method: String,
        path: String,
        query: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Received {
        fn as_signed(&self) -> SignedRequest<'_> {
            SignedRequest {
                method: &self.method,
                path: &self.path,
                query: &self.query,
                headers: &self.headers,
                body: &self.body,
            }
        }

        fn set_header(&mut self, name: &str, value: &str) {
            self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            self.headers.push((name.to_owned(), value.to_owned()));
        }

        fn header(&self, name: &str) -> String {
            header_values(&self.headers, name).remove(0)
        }
    }

    fn signed(
        service: &str,
        secret: &str,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        at: SystemTime,
    ) -> Received {
        let uri = format!("http://{HOST}{path_and_query}");
        let identity = Credentials::new("testing", secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(service)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            method,
            &uri,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut request = http::Request::builder().method(method).uri(&uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut request = request.body(()).unwrap();
        instructions.apply_to_request_http1x(&mut request);
        // The HTTP client adds Host from the URI.
        let mut received: Vec<(String, String)> = vec![("host".to_owned(), HOST.to_owned())];
        for (k, v) in request.headers() {
            received.push((k.as_str().to_owned(), v.to_str().unwrap().to_owned()));
        }
        Received {
            method: method.to_owned(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or("").to_owned(),
            headers: received,
            body: body.to_vec(),
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_000_000)
    }

    fn healthlake_json(at: SystemTime) -> Received {
        signed(
            "healthlake",
            "testing",
            "POST",
            "/",
            &[
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", "HealthLake.DescribeFHIRImportJob"),
            ],
            br#"{"DatastoreId":"0123456789abcdef0123456789abcdef","JobId":"j1"}"#,
            at,
        )
    }

    fn export_request(secret: &str) -> Received {
        signed(
            "healthlake",
            secret,
            "POST",
            "/datastore/0123456789abcdef0123456789abcdef/r4/$export\
             ?_since=2026-11-30T06:00:00.123Z&_type=Patient",
            &[
                ("accept", "application/fhir+json"),
                ("prefer", "respond-async"),
            ],
            b"",
            now(),
        )
    }

    fn expect(received: &Received, kind: SigV4ErrorKind) -> SigV4Error {
        let err = verify(&received.as_signed(), &creds, now()).unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        err
    }

    const MISMATCH: &str = "The request signature we calculated does not match the signature \
                            you provided. Check your AWS Secret Access Key and signing method. \
                            Consult the service documentation for details.";

    #[test]
    fn healthlake_json_request_verifies() {
        let r = healthlake_json(now());
        let scope = verify_for(&r.as_signed(), &creds, now(), "us-east-1", "healthlake").unwrap();
        assert_eq!(scope.access_key_id, "testing");
        assert!(verify_for(
            &r.as_signed(),
            &creds,
            now(),
            "us-east-1",
            "medical-imaging"
        )
        .is_err());
    }

    #[test]
    fn healthimaging_rest_get_verifies() {
        let path = format!("/getDICOMImportJob/datastore/{IMPORT_ID}/job/{IMPORT_ID}");
        let r = signed("medical-imaging", "testing", "GET", &path, &[], b"", now());
        verify_for(
            &r.as_signed(),
            &creds,
            now(),
            "us-east-1",
            "medical-imaging",
        )
        .unwrap();
    }

    #[test]
    fn healthimaging_rest_list_with_query_verifies() {
        let path = format!(
            "/listDICOMImportJobs/datastore/{IMPORT_ID}?maxResults=5&jobStatus=IN_PROGRESS"
        );
        let r = signed("medical-imaging", "testing", "GET", &path, &[], b"", now());
        verify(&r.as_signed(), &creds, now()).unwrap();
    }

    #[test]
    fn fhir_export_with_dollar_path_and_colon_query_verifies() {
        let r = export_request("testing");
        assert!(r.path.ends_with("/r4/$export"), "{}", r.path);
        verify(&r.as_signed(), &creds, now()).unwrap();
    }

    #[test]
    fn percent_encoded_unreserved_in_query_canonicalises_like_aws() {
        // `%2D` and `%2E` are decoded and re-encoded as `-` and `.`: the same canonical query
        // whichever way the client wrote them, as the SDK signer and AWS both canonicalise.
        let plain = canonical_query("_since=2026-11-30T06%3A00%3A00.123Z&_type=Patient");
        let encoded = canonical_query("_type=Patient&_since=2026%2D11%2D30T06:00:00%2E123Z");
        assert_eq!(plain, encoded);
        assert_eq!(plain, "_since=2026-11-30T06%3A00%3A00.123Z&_type=Patient");
    }

    #[test]
    fn canonical_uri_double_encodes_and_normalises() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a%20b/$export"), "/a%2520b/%24export");
        assert_eq!(canonical_uri("/a//b/./c/../d/"), "/a/b/d/");
    }

    #[test]
    fn canonical_query_sorts_by_key_then_value_and_encodes() {
        assert_eq!(canonical_query("b=2&a=2&a=1&c"), "a=1&a=2&b=2&c=");
        assert_eq!(canonical_query("k=a+b&k2=%7e~"), "k=a%20b&k2=~~");
    }

    #[test]
    fn headers_are_trimmed_and_whitespace_collapsed() {
        let mut r = healthlake_json(now());
        let target = r.header("x-amz-target");
        r.set_header("X-Amz-Target", &format!("  {target}  "));
        verify(&r.as_signed(), &creds, now()).unwrap();
    }

    #[test]
    fn missing_authorization_header() {
        let mut r = healthlake_json(now());
        r.headers.retain(|(n, _)| n != "authorization");
        let err = expect(&r, SigV4ErrorKind::MissingAuthenticationToken);
        assert_eq!(err.error_type(), "MissingAuthenticationTokenException");
        assert_eq!(err.message(), "Missing Authentication Token");
        assert_eq!(err.status(), 403);
    }

    #[test]
    fn credential_garbage_is_incomplete() {
        let mut r = healthlake_json(now());
        let auth = r.header("authorization");
        let rest = auth.split_once(", SignedHeaders").unwrap().1;
        r.set_header(
            "authorization",
            &format!("AWS4-HMAC-SHA256 Credential=garbage, SignedHeaders{rest}"),
        );
        let err = expect(&r, SigV4ErrorKind::IncompleteSignature);
        assert_eq!(err.error_type(), "IncompleteSignatureException");
        assert_eq!(err.status(), 400);
        assert!(
            err.message().starts_with("Credential must have exactly 5"),
            "{err}"
        );
    }

    #[test]
    fn missing_signature_part_is_incomplete() {
        let mut r = healthlake_json(now());
        let auth = r.header("authorization");
        let without = auth.split_once(", Signature=").unwrap().0.to_owned();
        r.set_header("authorization", &without);
        let err = expect(&r, SigV4ErrorKind::IncompleteSignature);
        assert!(
            err.message().contains("requires 'Signature' parameter"),
            "{err}"
        );
        r.set_header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/healthlake/aws4_request",
        );
        let err = expect(&r, SigV4ErrorKind::IncompleteSignature);
        assert!(
            err.message().contains("requires 'SignedHeaders' parameter"),
            "{err}"
        );
    }

    #[test]
    fn unknown_access_key() {
        let mut r = healthlake_json(now());
        let auth = r
            .header("authorization")
            .replace("Credential=testing/", "Credential=AKIDUNKNOWN/");
        r.set_header("authorization", &auth);
        let err = expect(&r, SigV4ErrorKind::UnrecognizedClient);
        assert_eq!(err.error_type(), "UnrecognizedClientException");
        assert_eq!(
            err.message(),
            "The security token included in the request is invalid."
        );
    }

    #[test]
    fn wrong_secret() {
        let r = export_request("not-the-secret");
        let err = expect(&r, SigV4ErrorKind::InvalidSignature);
        assert_eq!(err.error_type(), "InvalidSignatureException");
        assert_eq!(err.message(), MISMATCH);
        assert_eq!(err.status(), 403);
    }

    #[test]
    fn tampered_body() {
        let mut r = healthlake_json(now());
        r.body = br#"{"DatastoreId":"ffffffffffffffffffffffffffffffff","JobId":"j1"}"#.to_vec();
        assert_eq!(
            expect(&r, SigV4ErrorKind::InvalidSignature).message(),
            MISMATCH
        );
    }

    #[test]
    fn tampered_body_with_declared_payload_hash() {
        let mut r = healthlake_json(now());
        let declared = hex::encode(Sha256::digest(&r.body));
        r.set_header("x-amz-content-sha256", &declared);
        verify(&r.as_signed(), &creds, now()).unwrap();
        r.body.push(b' ');
        expect(&r, SigV4ErrorKind::InvalidSignature);
    }

    #[test]
    fn tampered_query() {
        let mut r = export_request("testing");
        r.query = r.query.replace("_type=Patient", "_type=Observation");
        assert_eq!(
            expect(&r, SigV4ErrorKind::InvalidSignature).message(),
            MISMATCH
        );
    }

    #[test]
    fn tampered_path() {
        let mut r = export_request("testing");
        r.path = r.path.replace("0123", "4567");
        expect(&r, SigV4ErrorKind::InvalidSignature);
    }

    #[test]
    fn tampered_signed_header() {
        let mut r = healthlake_json(now());
        r.set_header("x-amz-target", "HealthLake.StartFHIRImportJob");
        expect(&r, SigV4ErrorKind::InvalidSignature);
    }

    #[test]
    fn missing_date_header() {
        let mut r = healthlake_json(now());
        r.headers.retain(|(n, _)| n != "x-amz-date");
        let err = expect(&r, SigV4ErrorKind::IncompleteSignature);
        assert!(err.message().starts_with("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."), "{err}");
    }

    #[test]
    fn expired_date() {
        let r = healthlake_json(now() - Duration::from_secs(16 * 60));
        let err = expect(&r, SigV4ErrorKind::InvalidSignature);
        assert_eq!(
            err.message(),
            format!(
                "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                r.header("x-amz-date"),
                format_amz_date(unix_seconds(now()) - 900),
                format_amz_date(unix_seconds(now()))
            )
        );
        // 14 minutes old is still fine.
        let r = healthlake_json(now() - Duration::from_secs(14 * 60));
        verify(&r.as_signed(), &creds, now()).unwrap();
    }

    #[test]
    fn future_date() {
        let r = healthlake_json(now() + Duration::from_secs(16 * 60));
        let err = expect(&r, SigV4ErrorKind::InvalidSignature);
        assert!(
            err.message().starts_with("Signature not yet current: "),
            "{err}"
        );
    }

    #[test]
    fn unsigned_host() {
        let mut r = healthlake_json(now());
        let auth = r.header("authorization");
        let (head, rest) = auth.split_once("SignedHeaders=").unwrap();
        let (list, tail) = rest.split_once(',').unwrap();
        let without_host: Vec<&str> = list.split(';').filter(|h| *h != "host").collect();
        r.set_header(
            "authorization",
            &format!("{head}SignedHeaders={},{tail}", without_host.join(";")),
        );
        let err = expect(&r, SigV4ErrorKind::InvalidSignature);
        assert_eq!(
            err.message(),
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        );
    }

    #[test]
    fn wrong_host_value() {
        let mut r = healthlake_json(now());
        r.set_header("host", "evil.example:4599");
        expect(&r, SigV4ErrorKind::InvalidSignature);
    }

    #[test]
    fn date_round_trip() {
        let s = "20261130T060000Z";
        assert_eq!(format_amz_date(parse_amz_date(s).unwrap()), s);
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("2026-11-30T06:00:00Z"), None);
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
