//! A small blocking HTTP client for the node API.

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Reads a response body of up to 256 MiB (raw blocks and bundles can be large).
fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> Result<Vec<u8>> {
    Ok(resp
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_vec()?)
}

/// A client for one node.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    fn check(status: u16, body: &[u8], what: &str) -> Result<()> {
        if status >= 400 {
            let msg = serde_json::from_slice::<Value>(body)
                .ok()
                .map(|v| {
                    format!(
                        "{} ({})",
                        v["message"].as_str().unwrap_or(""),
                        v["code"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            bail!("{what}: HTTP {status}: {msg}");
        }
        Ok(())
    }

    /// GET returning bytes, or `None` on 404.
    pub fn get_bytes_opt(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let url = format!("{}{}", self.base, path);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = read_body(&mut resp)?;
        if status == 404 {
            return Ok(None);
        }
        Self::check(status, &body, &format!("GET {path}"))?;
        Ok(Some(body))
    }

    /// GET returning bytes.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        self.get_bytes_opt(path)?
            .with_context(|| format!("GET {path}: not found"))
    }

    /// GET returning JSON, or `None` on 404.
    pub fn get_json_opt(&self, path: &str) -> Result<Option<Value>> {
        match self.get_bytes_opt(path)? {
            None => Ok(None),
            Some(b) => Ok(Some(
                serde_json::from_slice(&b).context("response is not JSON")?,
            )),
        }
    }

    /// GET returning JSON.
    pub fn get_json(&self, path: &str) -> Result<Value> {
        self.get_json_opt(path)?
            .with_context(|| format!("GET {path}: not found"))
    }

    /// POSTs a FHIR resource (e.g. a Bundle to `/fhir`) with a bearer token; returns status
    /// and JSON body.
    pub fn post_fhir(&self, path: &str, token: &str, body: &[u8]) -> Result<(u16, Value)> {
        let url = format!("{}{}", self.base, path);
        let mut resp = self
            .agent
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/fhir+json")
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = read_body(&mut resp)?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// GETs `path` with a bearer token; status and JSON body (any status).
    pub fn get_authed(&self, path: &str, token: &str) -> Result<(u16, Value)> {
        let url = format!("{}{}", self.base, path);
        let mut resp = self
            .agent
            .get(&url)
            .header("authorization", format!("Bearer {token}"))
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = read_body(&mut resp)?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// POSTs `body` with a bearer token and extra headers; status, headers' `Location` and
    /// JSON body (any status).
    pub fn post_authed(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Option<String>, Value)> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .agent
            .post(&url)
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.send(body).with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_body(&mut resp)?;
        Ok((
            status,
            location,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        ))
    }

    /// POSTs a JSON body; returns status and JSON body (any status).
    pub fn post_json(&self, path: &str, body: &[u8]) -> Result<(u16, Value)> {
        let url = format!("{}{}", self.base, path);
        let mut resp = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = read_body(&mut resp)?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Exchanges a client assertion for an access token.
    pub fn token(&self, assertion: &str, scope: &str) -> Result<Value> {
        let url = format!("{}/auth/token", self.base);
        let mut resp = self
            .agent
            .post(&url)
            .send_form([
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
                ("scope", scope),
            ])
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_vec()?;
        if status != 200 {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            bail!(
                "token: HTTP {status}: {} ({})",
                v["error_description"].as_str().unwrap_or(""),
                v["error"].as_str().unwrap_or("")
            );
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// POSTs a raw signed transaction and waits for its receipt.
    pub fn submit(&self, raw: &[u8]) -> Result<Value> {
        let url = format!("{}/v1/txs?wait=true&timeout_ms=30000", self.base);
        let mut resp = self
            .agent
            .post(&url)
            .header("content-type", "application/octet-stream")
            .send(raw)
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_vec()?;
        Self::check(status, &body, "submit")?;
        Ok(serde_json::from_slice(&body)?)
    }
}
