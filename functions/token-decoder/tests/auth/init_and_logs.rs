//! Init failures (named variables, Lambda `errorType`, the `/init/error` report) and what a
//! decision writes to the logs.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use healthimport::fakes::RecordingMetrics;
use healthimport::metrics::Observation;
use healthimport_auth::TokenDecoderConfig;
use healthimport_auth_testing::{jwks, ManualClock, TestKey};
use lambda_runtime::Diagnostic;
use serde_json::{json, Value};
use token_decoder::config::{self, InitError};
use token_decoder::{handler, wiring};

const ISSUER: &str = "https://idp.example.com";
const ENDPOINT: &str = "https://healthlake.us-east-1.amazonaws.com/datastore/abc/r4/";
const NOW: i64 = 1_750_000_000;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn missing_or_invalid_variables_stop_init_naming_them() {
    let cases = [
        (
            env(&[
                ("JWKS_URL", "https://idp/jwks"),
                ("HEALTHLAKE_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
            ]),
            "TOKEN_ISSUER",
        ),
        (
            env(&[
                ("TOKEN_ISSUER", ISSUER),
                ("HEALTHLAKE_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
            ]),
            "JWKS_URL",
        ),
        (
            env(&[("TOKEN_ISSUER", ISSUER), ("JWKS_URL", "https://idp/jwks")]),
            "HEALTHLAKE_ROLE_ARN",
        ),
        (
            env(&[
                ("TOKEN_ISSUER", ISSUER),
                ("JWKS_URL", "https://idp/jwks"),
                ("HEALTHLAKE_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
                ("ALLOWED_ALGORITHMS", "HS256"),
            ]),
            "ALLOWED_ALGORITHMS",
        ),
        (
            env(&[
                ("TOKEN_ISSUER", ISSUER),
                ("JWKS_URL", "https://idp/jwks"),
                ("HEALTHLAKE_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
                ("JWKS_TIMEOUT_MS", "1000"),
            ]),
            "JWKS_TIMEOUT_MS",
        ),
    ];
    for (env, name) in cases {
        let error = match wiring::init(&env).await {
            Err(error) => error,
            Ok(_) => panic!("init should fail without a valid {name}"),
        };
        assert!(matches!(error, InitError::Config(_)), "{error:?}");
        let diagnostic = Diagnostic::from(&error);
        assert_eq!(diagnostic.error_type, "TokenDecoder.InvalidConfiguration");
        assert!(
            diagnostic.error_message.contains(name),
            "{}",
            diagnostic.error_message
        );
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(String, Value)>>>);

#[tokio::test]
async fn init_errors_are_reported_to_the_runtime_api() {
    let captured = Captured::default();
    let sink = captured.clone();
    let app = Router::new().route(
        "/2018-06-01/runtime/init/error",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let error_type = headers
                    .get("lambda-runtime-function-error-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                sink.0.lock().expect("lock").push((error_type, body));
                "{\"status\":\"OK\"}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("fake runtime API") });

    let error = match wiring::init(&env(&[("TOKEN_ISSUER", ISSUER)])).await {
        Err(error) => error,
        Ok(_) => panic!("init should fail"),
    };
    // Lambda's `host:port` form, then the `http://` base URL local emulators set.
    config::report_init_error(&api, &Diagnostic::from(&error)).await;
    config::report_init_error(&format!("http://{api}/"), &Diagnostic::from(&error)).await;

    let reports = captured.0.lock().expect("lock").clone();
    assert_eq!(reports.len(), 2);
    for (error_type, body) in &reports {
        assert_eq!(error_type, "TokenDecoder.InvalidConfiguration");
        assert_eq!(
            body["errorType"],
            json!("TokenDecoder.InvalidConfiguration")
        );
        assert!(body["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("HEALTHLAKE_ROLE_ARN"));
    }
}

/// A `MakeWriter` collecting everything the subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn decisions_log_codes_and_context_but_never_the_token_or_claims() {
    let (logs, _guard) = capture_logs();

    let key = TestKey::rsa("rsa-1");
    let inline = jwks(&[&key]).to_string();
    let config = TokenDecoderConfig::from_env(&env(&[
        ("TOKEN_ISSUER", ISSUER),
        ("JWKS_JSON", &inline),
        ("HEALTHLAKE_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
    ]))
    .expect("config");
    let clock = ManualClock::at(NOW);
    let decoder = wiring::init_with(config, clock).await.expect("init");

    let claims = json!({
        "iss": ISSUER, "sub": "secret-subject-4711", "aud": ENDPOINT, "iat": NOW, "exp": NOW + 60,
        "scope": "patient/Secretscope.rs", "email": "someone@example.com",
    });
    let good = key.token(&claims);
    let mut expired_claims = claims.clone();
    expired_claims["exp"] = json!(NOW - 3600);
    let expired = key.token(&expired_claims);
    let metrics = RecordingMetrics::default();
    for token in [&good, &expired] {
        let event = json!({"datastoreEndpoint": ENDPOINT, "bearerToken": token, "operationName": "ReadResource"});
        let _ = handler::handle(&decoder, &metrics, event).await;
    }
    let verdicts: Vec<_> = metrics
        .observed()
        .into_iter()
        .map(|o| match o {
            Observation::TokenDecision {
                allowed,
                reason,
                latency_us,
            } => {
                assert!(latency_us < 1_000_000, "within the 1 s budget");
                (allowed, reason)
            }
            other => panic!("not a token decision: {other:?}"),
        })
        .collect();
    assert_eq!(verdicts, [(true, "none"), (false, "expired")]);

    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8 logs");
    let decisions: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == json!("token decision"))
        .collect();
    assert_eq!(decisions.len(), 2, "{text}");
    let fields = |i: usize, name: &str| decisions[i]["fields"][name].clone();
    assert_eq!(fields(0, "decision"), json!("allow"));
    assert_eq!(fields(0, "reason"), json!("-"));
    assert_eq!(fields(1, "decision"), json!("deny"));
    assert_eq!(fields(1, "reason"), json!("expired"));
    for i in 0..2 {
        assert_eq!(fields(i, "operation"), json!("ReadResource"));
        assert_eq!(fields(i, "kid"), json!("rsa-1"));
        assert_eq!(fields(i, "issuer"), json!(ISSUER));
        assert!(fields(i, "latency_us").is_u64());
    }
    for secret in [
        "secret-subject-4711",
        "someone@example.com",
        "Secretscope",
        good.split('.').nth(1).unwrap_or_default(),
        good.split('.').nth(2).unwrap_or_default(),
    ] {
        assert!(!text.contains(secret), "logs contain {secret:?}:\n{text}");
    }
}

/// The JSON lines of a captured log.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// Captures what this test's thread logs until the guard drops.
///
/// One process-wide subscriber routes each line to the buffer of the thread that wrote it. A
/// per-test `set_default` subscriber would race other tests' subscribers over tracing's cached
/// callsite interest, and a test could then miss a line it is owed.
fn capture_logs() -> (LogBuffer, CaptureGuard) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(|| ThreadRouted)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
    let logs = LogBuffer::default();
    CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
    (logs, CaptureGuard)
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<LogBuffer>> = const { std::cell::RefCell::new(None) };
}

/// Stops this thread's capture when dropped.
struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

/// Writes to the capturing buffer of the current thread, or nowhere.
struct ThreadRouted;

impl Write for ThreadRouted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| match c.borrow_mut().as_mut() {
            Some(logs) => logs.write(buf),
            None => Ok(buf.len()),
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_refresh_without_usable_keys_is_logged_and_keeps_the_keys() {
    use healthimport_auth::{AllowedAlgorithms, CachePolicy, ClaimPolicy, JwksCache, TokenDecoder};
    use healthimport_auth_testing::ScriptedFetcher;
    use std::time::Duration;

    const SECRET: &str = "c3ltbWV0cmljLXNlY3JldC1tdXN0LW5vdC1iZS1sb2dnZWQ";
    let (logs, _guard) = capture_logs();
    let key = TestKey::rsa("rsa-1");
    let fetcher = ScriptedFetcher::serving(&jwks(&[&key]));
    let clock = ManualClock::at(NOW);
    let cache = JwksCache::remote(
        Arc::clone(&fetcher),
        Arc::clone(&clock),
        AllowedAlgorithms::default(),
        CachePolicy::default(),
    );
    cache.load().await.expect("init load");
    let decoder = TokenDecoder::new(
        ClaimPolicy {
            issuer: ISSUER.into(),
            audiences: vec![],
            clock_skew_seconds: 60,
        },
        AllowedAlgorithms::default(),
        "arn:aws:iam::123456789012:role/r".into(),
        cache,
    );

    // The TTL passes and the provider now serves a symmetric key only.
    fetcher.serve(&json!({"keys": [{"kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": SECRET}]}));
    clock.advance(Duration::from_secs(3600));
    let claims = json!({
        "iss": ISSUER, "sub": "s", "aud": ENDPOINT, "iat": NOW + 3590, "exp": NOW + 7200,
        "scope": "patient/Observation.rs",
    });
    let event = json!({"datastoreEndpoint": ENDPOINT, "bearerToken": key.token(&claims), "operationName": "ReadResource"});
    let response = handler::handle(&decoder, &RecordingMetrics::default(), event)
        .await
        .unwrap_or_else(|never| match never {});
    assert!(response.is_authorized(), "the cached key still verifies");
    assert_eq!(fetcher.calls(), 2);

    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8 logs");
    let lines = json_lines(&text);
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|v| {
            v["fields"]["message"] == json!("JWKS refresh failed; keeping the previous keys")
        })
        .collect();
    assert_eq!(refused.len(), 1, "{text}");
    assert_eq!(refused[0]["level"], json!("WARN"));
    assert_eq!(refused[0]["fields"]["cause"], json!("expired"));
    assert_eq!(refused[0]["fields"]["kept_keys"], json!(1));
    let error = refused[0]["fields"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("no usable signing key"), "{error}");
    // The skipped key is logged by kid and reason only.
    assert!(
        lines
            .iter()
            .any(|v| v["fields"]["message"] == json!("JWK skipped")
                && v["fields"]["kid"] == json!("hmac-1")),
        "{text}"
    );
    assert!(!text.contains(SECRET), "logs contain key material:\n{text}");
    assert_eq!(
        lines
            .iter()
            .filter(|v| v["fields"]["message"] == json!("JWKS loaded"))
            .count(),
        1,
        "only the init load succeeded:\n{text}"
    );
}

#[tokio::test]
async fn jwks_timeout_ms_is_the_fetch_deadline() {
    // An identity provider that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let (logs, _guard) = capture_logs();
    let url = format!("http://{addr}/jwks");
    let decoder = wiring::init(&env(&[
        ("TOKEN_ISSUER", ISSUER),
        ("JWKS_URL", &url),
        ("HEALTHLAKE_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
        ("JWKS_TIMEOUT_MS", "60"),
    ]))
    .await;
    assert!(decoder.is_ok(), "a slow provider does not stop init");

    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8 logs");
    let lines = json_lines(&text);
    let failed = lines
        .iter()
        .find(|v| {
            v["fields"]["message"] == json!("JWKS not loaded at init; denying until it loads")
        })
        .unwrap_or_else(|| panic!("no init failure logged:\n{text}"));
    assert_eq!(
        failed["fields"]["source"],
        json!("no response within 60ms"),
        "{text}"
    );
    let ready = lines
        .iter()
        .find(|v| v["fields"]["message"] == json!("token decoder ready"))
        .unwrap_or_else(|| panic!("no ready line:\n{text}"));
    assert_eq!(ready["fields"]["jwks_timeout_ms"], json!(60));
}
