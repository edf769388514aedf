//! The deployed binary, at the most verbose log level Lambda can be set to, never writes a bearer
//! token (whole, or its payload or signature part) to its output. `lambda_runtime` logs every raw
//! event at TRACE and the HTTP stack logs bodies: the binary's telemetry must clamp them.
//!
//! The binary runs against a fake Lambda Runtime API on loopback that hands it one event per
//! token and collects the answers; the test reads everything the process printed.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use healthimport_auth_testing::{jwks, unsigned_token, TestKey};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, Notify};

const ISSUER: &str = "https://idp.example.com";
const ENDPOINT: &str = "https://healthlake.us-east-1.amazonaws.com/datastore/abc/r4/";

/// The invocations still to hand out, and where the answers go.
#[derive(Clone)]
struct FakeRuntime {
    events: Arc<Mutex<VecDeque<Value>>>,
    more: Arc<Notify>,
    answers: mpsc::UnboundedSender<(String, Value)>,
}

async fn next_invocation(State(runtime): State<FakeRuntime>) -> (HeaderMap, String) {
    loop {
        let next = runtime.events.lock().expect("lock").pop_front();
        if let Some(event) = next {
            let id = format!("req-{}", next_request_id());
            let mut headers = HeaderMap::new();
            let deadline = now() * 1000 + 60_000;
            for (name, value) in [
                ("lambda-runtime-aws-request-id", id),
                ("lambda-runtime-deadline-ms", deadline.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:token-decoder".to_owned(),
                ),
            ] {
                headers.insert(name, HeaderValue::from_str(&value).expect("header"));
            }
            return (headers, event.to_string());
        }
        // Long-poll, as Lambda's API does between invocations.
        runtime.more.notified().await;
    }
}

async fn answer(
    State(runtime): State<FakeRuntime>,
    Path((_id, kind)): Path<(String, String)>,
    body: String,
) -> &'static str {
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = runtime.answers.send((kind, body));
    "{\"status\":\"OK\"}"
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A distinct request id per invocation, as Lambda gives.
fn next_request_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn no_token_reaches_the_output_at_trace_level() {
    let key = TestKey::rsa("rsa-1");
    let now = now() as i64;
    let claims = json!({
        "iss": ISSUER, "sub": "subject-4711", "aud": ENDPOINT, "iat": now, "exp": now + 300,
        "scope": "patient/Observation.read",
    });
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 3600);
    let tokens = [
        key.token(&claims),
        key.token(&expired),
        TestKey::rsa("unknown-kid").token(&claims),
        unsigned_token(&json!({"alg": "none", "typ": "JWT"}), &claims),
        format!("Bearer {}", key.token(&claims)),
    ];
    let events: VecDeque<Value> = tokens
        .iter()
        .map(|token| {
            json!({"datastoreEndpoint": ENDPOINT, "bearerToken": token, "operationName": "ReadResource"})
        })
        .collect();

    let (answers, mut received) = mpsc::unbounded_channel();
    let runtime = FakeRuntime {
        events: Arc::new(Mutex::new(events)),
        more: Arc::new(Notify::new()),
        answers,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answer))
        .with_state(runtime);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("fake runtime API") });

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_token-decoder"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "token-decoder")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_LEVEL", "TRACE")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("RUST_LOG", "trace")
        .env("TOKEN_ISSUER", ISSUER)
        .env("JWKS_JSON", jwks(&[&key]).to_string())
        .env("HEALTHLAKE_ROLE_ARN", "arn:aws:iam::123456789012:role/r")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the token-decoder binary starts");

    let mut decisions = Vec::new();
    while decisions.len() < tokens.len() {
        let (kind, body) = received.recv().await.expect("an answer per event");
        assert_eq!(kind, "response", "{body}");
        decisions.push(body["authPayload"]["isAuthorized"].clone());
    }
    assert_eq!(
        decisions,
        [true, false, false, false, true].map(Value::Bool),
        "the first and the Bearer-prefixed token are valid, the others are not"
    );
    child.kill().await.expect("stop the binary");
    let mut output = String::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let mut stream = stream;
        stream.read_to_string(&mut output).await.expect("output");
    }

    assert!(
        output.contains("token decision"),
        "the decisions are logged:\n{output}"
    );
    // One EMF line per decision on stdout, which Lambda ships to CloudWatch Logs.
    let metric_lines: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    let verdicts: Vec<_> = metric_lines
        .iter()
        .map(|v| (v["Decision"].as_str(), v["TokenDecisions"].as_u64()))
        .collect();
    assert_eq!(
        verdicts,
        [
            (Some("allow"), Some(1)),
            (Some("deny"), Some(1)),
            (Some("deny"), Some(1)),
            (Some("deny"), Some(1)),
            (Some("allow"), Some(1)),
        ],
        "{output}"
    );
    assert!(metric_lines
        .iter()
        .all(|v| v["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "healthimport"));
    for token in &tokens {
        let token = token.trim_start_matches("Bearer ");
        let mut secrets = vec![token];
        secrets.extend(token.split('.').skip(1).filter(|part| part.len() > 8));
        for secret in secrets {
            assert!(
                !output.contains(secret),
                "the output holds a token or a part of one ({} bytes of output)",
                output.len()
            );
        }
    }
}
