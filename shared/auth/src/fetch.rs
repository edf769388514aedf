//! Fetching the JWK Set over HTTP(S), with a hard deadline and a size cap. This is the only
//! network code of the token decoder, and it runs at init, hourly, and on a rate-limited unknown
//! `kid` — never on the warm path.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Default whole-request deadline (`JWKS_TIMEOUT_MS` overrides it): DNS, connect, TLS, response
/// and body. HealthLake gives the function one second per request, cold start included; this
/// leaves room for init and the decision.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_millis(400);

/// Largest JWK Set accepted. Real ones are a few KB; the cap bounds memory if the URL serves
/// something else.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Where the JWK Set is fetched from. Only `https`, except on a loopback host (tests, local runs):
/// keys fetched over plain HTTP could be swapped by anyone on the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUrl(Uri);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksUrlError {
    #[error("not an absolute URL: {0}")]
    Invalid(String),
    #[error("must use https (plain http is accepted only for 127.0.0.1, ::1 or localhost)")]
    NotHttps,
}

impl JwksUrl {
    pub fn parse(raw: &str) -> Result<Self, JwksUrlError> {
        let uri: Uri = raw
            .parse()
            .map_err(|e: http::uri::InvalidUri| JwksUrlError::Invalid(e.to_string()))?;
        let host = uri
            .host()
            .ok_or_else(|| JwksUrlError::Invalid("no host".into()))?;
        match uri.scheme_str() {
            Some("https") => Ok(JwksUrl(uri)),
            Some("http") if matches!(host, "127.0.0.1" | "[::1]" | "localhost") => Ok(JwksUrl(uri)),
            Some("http") => Err(JwksUrlError::NotHttps),
            _ => Err(JwksUrlError::Invalid("scheme must be https".into())),
        }
    }

    pub fn uri(&self) -> &Uri {
        &self.0
    }

    fn is_https(&self) -> bool {
        self.0.scheme_str() == Some("https")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("request failed")]
    Request(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the response body failed")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Building the HTTP client failed (init only).
#[derive(Debug, thiserror::Error)]
pub enum FetcherInitError {
    #[error("loading the TLS root certificates failed")]
    TlsRoots(#[source] std::io::Error),
}

/// A source of JWK Set documents. The cache is generic over it so tests can count and script
/// fetches without a network.
pub trait JwksFetcher: Send + Sync {
    fn fetch(&self) -> impl Future<Output = Result<Bytes, FetchError>> + Send;
}

impl<F: JwksFetcher + ?Sized> JwksFetcher for Arc<F> {
    fn fetch(&self) -> impl Future<Output = Result<Bytes, FetchError>> + Send {
        (**self).fetch()
    }
}

/// The fetcher of an inline `JWKS_JSON`: there is nothing to fetch, and the cache never calls it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFetch;

impl JwksFetcher for NoFetch {
    async fn fetch(&self) -> Result<Bytes, FetchError> {
        Err(FetchError::Request("no JWKS URL is configured".into()))
    }
}

enum Transport {
    Plain(Client<HttpConnector, Empty<Bytes>>),
    Tls(Client<HttpsConnector<HttpConnector>, Empty<Bytes>>),
}

/// Fetches the JWK Set with hyper over rustls (aws-lc crypto, the OS trust store).
pub struct HttpJwksFetcher {
    url: JwksUrl,
    transport: Transport,
    timeout: Duration,
}

impl HttpJwksFetcher {
    pub fn new(url: JwksUrl, timeout: Duration) -> Result<Self, FetcherInitError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let mut builder = Client::builder(TokioExecutor::new());
        // No idle connections: refreshes are an hour apart and Lambda freezes the process in
        // between, so a pooled connection would almost always be dead when reused.
        builder.pool_max_idle_per_host(0);
        let transport = if url.is_https() {
            // The OS trust store (not a bundled list) so a private CA can be added with
            // SSL_CERT_FILE. Loaded only for https URLs: it costs a few ms of cold start.
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let https = HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(FetcherInitError::TlsRoots)?
                .https_only()
                .enable_http1()
                .wrap_connector(http);
            Transport::Tls(builder.build(https))
        } else {
            Transport::Plain(builder.build(http))
        };
        Ok(HttpJwksFetcher {
            url,
            transport,
            timeout,
        })
    }

    async fn fetch_untimed(&self) -> Result<Bytes, FetchError> {
        let request = Request::get(self.url.uri().clone())
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .header(header::USER_AGENT, "healthimport-token-decoder")
            .body(Empty::new())
            .map_err(|e| FetchError::Request(e.into()))?;
        let response = match &self.transport {
            Transport::Plain(client) => client.request(request).await,
            Transport::Tls(client) => client.request(request).await,
        }
        .map_err(|e| FetchError::Request(e.into()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status));
        }
        match Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
        {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(FetchError::TooLarge(MAX_JWKS_BYTES))
            }
            Err(e) => Err(FetchError::Body(e)),
        }
    }
}

impl JwksFetcher for HttpJwksFetcher {
    async fn fetch(&self) -> Result<Bytes, FetchError> {
        tokio::time::timeout(self.timeout, self.fetch_untimed())
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_url_requires_https_off_loopback() {
        assert!(JwksUrl::parse("https://idp.example.com/.well-known/jwks.json").is_ok());
        assert!(JwksUrl::parse("http://127.0.0.1:8080/jwks").is_ok());
        assert!(JwksUrl::parse("http://localhost/jwks").is_ok());
        assert!(JwksUrl::parse("http://[::1]:9/jwks").is_ok());
        assert_eq!(
            JwksUrl::parse("http://idp.example.com/jwks"),
            Err(JwksUrlError::NotHttps)
        );
        assert_eq!(
            JwksUrl::parse("http://127.0.0.1.evil.com/jwks"),
            Err(JwksUrlError::NotHttps)
        );
        for bad in [
            "idp.example.com/jwks",
            "/jwks",
            "ftp://idp/jwks",
            "https://",
        ] {
            assert!(
                matches!(JwksUrl::parse(bad), Err(JwksUrlError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
