//! Privacy Pass tokens as the device gets them: the issuer's key for our user token, a blinded
//! token request, and the unblinded token sent as `Authorization: PrivateToken token=…`.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use sift_privacypass::{IssuerPublicKey, TokenChallenge, TokenResponse, client_request};

use crate::transport::Transport;

/// Where and how to get tokens: the issuer's base URL and the app's Bearer user token.
#[derive(Clone, Debug)]
pub struct TokenSource {
    /// Issuer base URL, e.g. `https://issuer.example.com`.
    pub issuer_url: String,
    /// The user token sent as `Authorization: Bearer …`.
    pub user_token: String,
}

impl TokenSource {
    /// Fetches one fresh token and returns the `Authorization` header value for it.
    pub async fn fetch(&self, transport: &Transport) -> anyhow::Result<String> {
        let base = self.issuer_url.trim_end_matches('/');
        let bearer = [("Authorization", format!("Bearer {}", self.user_token))];
        let key = transport
            .send(
                http::Method::GET,
                &format!("{base}/token-key-for-user-token"),
                &bearer,
                Bytes::new(),
            )
            .await?;
        if key.status != 200 {
            bail!("token key: HTTP {}: {}", key.status, key.body_text());
        }
        let key = IssuerPublicKey::from_spki(&key.body)
            .map_err(|e| anyhow::anyhow!("issuer key: {e}"))?;
        let issuer_name = url::Url::parse(base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .context("issuer URL has no host")?;
        let (req, pending) = client_request(&key, &TokenChallenge::new(&issuer_name))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let resp = transport
            .send(
                http::Method::POST,
                &format!("{base}/issue"),
                &bearer,
                Bytes::from(req.to_bytes()),
            )
            .await?;
        if resp.status != 200 {
            bail!("issue: HTTP {}: {}", resp.status, resp.body_text());
        }
        let resp =
            TokenResponse::parse(&resp.body).map_err(|e| anyhow::anyhow!("token response: {e}"))?;
        let token = pending
            .finalize(&resp)
            .map_err(|e| anyhow::anyhow!("finalizing token: {e}"))?;
        Ok(token.to_header())
    }
}
