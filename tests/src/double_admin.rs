//! A client of the admin endpoints of the stack's service double (`scripts/local-stack.sh` exports
//! their base URL as `HEALTHIMPORT_DOUBLE_ADMIN`), for tests that drive the double the real
//! functions talk to. An in-process double has `ServiceDouble::set_faults` instead.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::double::Faults;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
pub struct DoubleAdmin {
    /// `host:port` of the double.
    address: String,
    /// The admin endpoints' path prefix, e.g. `/_double`.
    prefix: String,
}

impl DoubleAdmin {
    /// Panics without `HEALTHIMPORT_DOUBLE_ADMIN`: a test must fail, not pass, without the stack.
    pub fn from_env() -> DoubleAdmin {
        let url = std::env::var("HEALTHIMPORT_DOUBLE_ADMIN").expect(
            "HEALTHIMPORT_DOUBLE_ADMIN is not set: run inside scripts/local-stack.sh (make test does)",
        );
        let rest = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("HEALTHIMPORT_DOUBLE_ADMIN {url} is not http://"));
        let (address, path) = rest.split_once('/').unwrap_or((rest, ""));
        DoubleAdmin {
            address: address.to_owned(),
            prefix: format!("/{}", path.trim_end_matches('/')),
        }
    }

    /// The double's current fault injection (the job event faults included), e.g. to change
    /// one member and put the rest back with [`DoubleAdmin::set_faults`].
    pub async fn faults(&self) -> Result<Faults, BoxError> {
        let (status, response) = self.request("GET", "/faults", &[]).await?;
        if status != 200 {
            return Err(format!("GET {}/faults answered {status}: {response}", self.prefix).into());
        }
        Ok(serde_json::from_str(&response)?)
    }

    /// Replaces the double's fault injection, the job event faults included
    /// (`Faults::dropping_every_event()`, ...).
    pub async fn set_faults(&self, faults: &Faults) -> Result<(), BoxError> {
        let body = serde_json::to_vec(faults)?;
        let (status, response) = self.request("POST", "/faults", &body).await?;
        if status != 204 && status != 200 {
            return Err(
                format!("POST {}/faults answered {status}: {response}", self.prefix).into(),
            );
        }
        Ok(())
    }

    /// The double's counters, as JSON.
    pub async fn stats(&self) -> Result<serde_json::Value, BoxError> {
        let (status, response) = self.request("GET", "/stats", &[]).await?;
        if status != 200 {
            return Err(format!("GET {}/stats answered {status}: {response}", self.prefix).into());
        }
        Ok(serde_json::from_str(&response)?)
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, String), BoxError> {
        let mut stream = TcpStream::connect(&self.address).await?;
        let head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.prefix,
            self.address,
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {text:.80}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }
}
