//! The operator CLI's side of a running coordinator: the token a command
//! presents (a viewer token reads; an operator token also starts runs), the
//! CA a coordinator serving HTTPS has its certificate from, and requests
//! whose refusals say what to do. A token never goes over plain `http://`
//! to another host.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How to prove who is asking a coordinator.
#[derive(Debug, Args)]
pub struct Credentials {
    /// The coordinator token file: a viewer token reads; an operator token also starts runs.
    #[arg(long, env = "LIFEBOAT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA certificate (PEM) of a coordinator that serves HTTPS with a private CA.
    #[arg(long, env = "LIFEBOAT_COORDINATOR_CA_FILE")]
    pub coordinator_ca: Option<PathBuf>,
}

/// A running coordinator, asked with the caller's token.
pub struct Remote {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Remote {
    pub fn new(base: &str, credentials: &Credentials) -> Result<Remote> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("https://") && !base.starts_with("http://") {
            bail!("--coordinator {base:?} is not an http(s) URL");
        }
        let token = match &credentials.token_file {
            Some(path) => Some(lifeboat_secrets::read_file(path, "coordinator token")?),
            None => None,
        };
        if token.is_some() && base.starts_with("http://") && !lifeboat_client::is_loopback_url(&base) {
            bail!("refusing to send a token over plain http to {base}: serve the coordinator with --tls-cert/--tls-key and use https://");
        }
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = &credentials.coordinator_ca {
            http = http.add_root_certificate(lifeboat_client::read_ca(ca, "the coordinator's").map_err(anyhow::Error::msg)?.1);
        }
        Ok(Remote { base, token, http: http.build().context("an HTTP client")? })
    }

    /// `GET path` with `query`, as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query)).await
    }

    /// `POST path` with a JSON body, as `T`.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    async fn send<T: DeserializeOwned>(&self, mut req: reqwest::RequestBuilder) -> Result<T> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| format!("asking the coordinator at {}", self.base))?;
        let status = resp.status();
        let body = resp.bytes().await.context("reading the coordinator's answer")?;
        if !status.is_success() {
            let reason =
                serde_json::from_slice::<lifeboat_api::ErrorBody>(&body).map(|e| e.error).unwrap_or_else(|_| "no reason given".into());
            let hint = match (status.as_u16(), &self.token) {
                (401, None) => " (give --token-file F or LIFEBOAT_TOKEN_FILE)",
                (401, Some(_)) => " (the token file does not hold a token this coordinator accepts)",
                _ => "",
            };
            bail!("coordinator: {status}: {reason}{hint}");
        }
        serde_json::from_slice(&body).context("the coordinator's answer has an unexpected shape (is it the same version?)")
    }
}
