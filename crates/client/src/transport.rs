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

/// HTTPS (or HTTP for development) with HTTP/2 where offered: straight to the service, or
/// through an Oblivious HTTP gateway as Apple's relay delivers device requests.
#[derive(Clone)]
pub struct Transport {
    http: reqwest::Client,
    gateway: Option<std::sync::Arc<GatewayRoute>>,
}

/// Where encapsulated requests go and the key they are sealed to.
struct GatewayRoute {
    url: String,
    key_configs: Vec<u8>,
}

/// Largest response body accepted from a server (evaluation keys and responses are far smaller).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

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
            gateway: None,
        })
    }

    /// The same transport, but every request is encapsulated with Oblivious HTTP (RFC 9458)
    /// for the gateway at `gateway_url`, using its published `key_configs`
    /// (`application/ohttp-keys`).
    pub fn via_gateway(mut self, gateway_url: &str, key_configs: &[u8]) -> anyhow::Result<Self> {
        sift_ohttp::ClientRequest::from_encoded_config_list(key_configs)
            .context("the gateway's key configuration")?;
        self.gateway = Some(std::sync::Arc::new(GatewayRoute {
            url: gateway_url.to_owned(),
            key_configs: key_configs.to_vec(),
        }));
        Ok(self)
    }

    /// Fetches a gateway's key configuration from `<gateway_url>/ohttp-keys`, directly (a
    /// device gets it out of band; it is public).
    pub async fn fetch_gateway_keys(&self, gateway_url: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}/ohttp-keys", gateway_url.trim_end_matches('/'));
        let resp = self
            .direct(http::Method::GET, &url, &[], Bytes::new())
            .await?;
        if resp.status != 200 {
            anyhow::bail!("GET {url}: HTTP {}: {}", resp.status, resp.body_text());
        }
        Ok(resp.body.to_vec())
    }

    /// The underlying HTTP client, for callers that need HTTP-level details (ALPN, version).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends one request and reads the whole response, through the gateway when one is set.
    pub async fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> anyhow::Result<HttpResponse> {
        match &self.gateway {
            None => self.direct(method, url, headers, body).await,
            Some(gw) => self.oblivious(gw, method, url, headers, body).await,
        }
    }

    /// Encapsulates the request for the gateway, posts it, and opens the response.
    async fn oblivious(
        &self,
        gw: &GatewayRoute,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> anyhow::Result<HttpResponse> {
        let mut inner = http::Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            inner = inner.header(*name, value);
        }
        let inner = inner
            .body(body)
            .with_context(|| format!("building {method} {url}"))?;
        let key = sift_ohttp::ClientRequest::from_encoded_config_list(&gw.key_configs)?;
        let (encapsulated, pending) = key
            .encapsulate(&inner)
            .context("encapsulating the request")?;
        let outer = self
            .direct(
                http::Method::POST,
                &gw.url,
                &[("Content-Type", sift_ohttp::REQUEST_MEDIA_TYPE.to_owned())],
                encapsulated,
            )
            .await
            .with_context(|| format!("{method} {url} through the gateway"))?;
        if outer.status != 200 {
            anyhow::bail!(
                "gateway {} refused {method} {url}: HTTP {}: {}",
                gw.url,
                outer.status,
                outer.body_text()
            );
        }
        let resp = pending
            .decapsulate(&outer.body)
            .with_context(|| format!("opening the gateway's response to {method} {url}"))?;
        let content_type = content_type(resp.headers());
        let gzip = resp
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        if gzip {
            body = gunzip(&body)?;
        }
        Ok(HttpResponse {
            status,
            content_type,
            body,
        })
    }

    /// Sends one request straight to `url`.
    async fn direct(
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
        let mut resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let content_type = content_type(resp.headers());
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            anyhow::bail!("{method} {url}: response larger than {MAX_RESPONSE_BYTES} bytes");
        }
        // Read with the cap applied to the decoded bytes too: the HTTP client decompresses gzip
        // itself, so a small compressed body could otherwise expand without bound.
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .with_context(|| format!("reading {method} {url}"))?
        {
            anyhow::ensure!(
                body.len() + chunk.len() <= MAX_RESPONSE_BYTES,
                "{method} {url}: response larger than {MAX_RESPONSE_BYTES} bytes once decompressed"
            );
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            content_type,
            body: Bytes::from(body),
        })
    }
}

/// The `Content-Type` of a response, when present and readable as text.
fn content_type(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Decompresses a gzip body (responses inside OHTTP bypass the HTTP client's decoding), with
/// the same size cap as any response.
fn gunzip(body: &[u8]) -> anyhow::Result<Bytes> {
    gunzip_capped(body, MAX_RESPONSE_BYTES)
}

/// [`gunzip`] with the cap as a parameter: an error, not memory exhaustion, when the body
/// decompresses to more than `cap` bytes (a gzip bomb).
fn gunzip_capped(body: &[u8], cap: usize) -> anyhow::Result<Bytes> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .context("decompressing a gzip response")?;
    anyhow::ensure!(
        out.len() <= cap,
        "decompressed response larger than {cap} bytes: refused (the server or the relay is \
         misbehaving)"
    );
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_round_trips_and_refuses_a_bomb() {
        let data = vec![7u8; 4096];
        let gz = gzip(&data);
        assert_eq!(gunzip(&gz).unwrap(), data);
        assert_eq!(gunzip_capped(&gz, 4096).unwrap(), data);
        // One byte over the cap is refused, and saying why.
        let err = gunzip_capped(&gz, 4095).unwrap_err().to_string();
        assert!(err.contains("larger than 4095 bytes"), "{err}");
        // The real cap: 64 MiB + 1 zeros compress to about 64 KiB; decompression stops at the
        // cap instead of allocating whatever the bomb holds.
        let bomb = gzip(&vec![0u8; MAX_RESPONSE_BYTES + 1]);
        assert!(bomb.len() < MAX_RESPONSE_BYTES / 100);
        assert!(gunzip(&bomb).is_err());
        // Not gzip at all: an error, not a panic.
        assert!(gunzip(b"not gzip").is_err());
    }
}
