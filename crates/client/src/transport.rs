//! How the client's HTTP requests reach the server: directly (development, tests) or wrapped in
//! Oblivious HTTP to a gateway, as Apple's relay delivers them in production.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;

/// A response as the client sees it: status, content type and the whole body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body, decompressed if the server used gzip.
    pub body: Bytes,
}

impl HttpResponse {
    /// The body as text for error messages (lossy, truncated to 512 bytes).
    pub fn body_text(&self) -> String {
        let end = self.body.len().min(512);
        String::from_utf8_lossy(&self.body[..end]).into_owned()
    }
}

/// Plain HTTPS (or HTTP for development) straight to the service, with HTTP/2 where offered.
#[derive(Clone)]
pub struct Transport {
    http: reqwest::Client,
}

impl Transport {
    /// A transport trusting the system roots plus `extra_ca_pem` (a test CA, say), with a
    /// request timeout so a stuck server cannot hang a check.
    pub fn new(extra_ca_pem: Option<&[u8]>, timeout: Duration) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().timeout(timeout).gzip(true);
        if let Some(pem) = extra_ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).context("reading the CA certificate")?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(Self {
            http: builder.build().context("building the HTTP client")?,
        })
    }

    /// The underlying HTTP client, for callers that need HTTP-level details (ALPN, version).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> anyhow::Result<HttpResponse> {
        let mut req = self.http.request(method.clone(), url).body(body);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("reading {method} {url}"))?;
        Ok(HttpResponse {
            status,
            content_type,
            body,
        })
    }
}
