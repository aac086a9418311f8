//! The supply chain from the command line: assign company prefixes (operators), capture
//! EPCIS documents and follow the capture job, query events and a product's journey, verify a
//! pack at dispense (`verify-pack`), and check returned events offline (`verify-event`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::Value;

use crate::client::Client;
use crate::keyfile;
use crate::txcmd::{Conn, print_json, send};

#[derive(Subcommand)]
pub enum EpcisCmd {
    /// Assign a GS1 company prefix to an organization (signed by an operator): it alone may
    /// commission the GTINs and capture at the GLNs under it.
    Prefix {
        /// The operator's key file.
        #[arg(long)]
        key: PathBuf,
        /// The prefix (6 to 12 digits).
        #[arg(long)]
        prefix: String,
        /// The organization (did:key); omit to withdraw the prefix.
        #[arg(long)]
        organization: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Capture an EPCISDocument (JSON/JSON-LD, or XML for a `.xml` file) as the organization
    /// of KEY; waits for the capture job and prints it.
    Capture {
        /// The document.
        file: PathBuf,
        /// The key file of the organization (or a member of it).
        #[arg(long)]
        key: PathBuf,
        /// `rollback` (any error captures nothing) or `proceed`.
        #[arg(long, default_value = "rollback")]
        behaviour: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Query events (`--param EQ_bizStep=shipping`, repeatable); prints the query document.
    Events {
        /// The key file of the organization (or a member of it).
        #[arg(long)]
        key: PathBuf,
        /// A query parameter, NAME=VALUE.
        #[arg(long = "param")]
        params: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// A product's journey: the ledger's custody record and its events.
    Journey {
        /// The product (EPC URN or GS1 Digital Link).
        uri: String,
        /// The key file of the organization (or a member of it).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// The organization's alerts (suspected clones and diversions, recalls).
    Alerts {
        /// The key file of the organization (or a member of it).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
}

fn token(c: &Client, conn: &Conn, key: &std::path::Path) -> Result<String> {
    let key = keyfile::read(key)?;
    let aud = format!("{}/auth/token", conn.url.trim_end_matches('/'));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let assertion = carechain_service::make_assertion(&key, &aud, now);
    let v = c.token(&assertion, "user/*.rs")?;
    v["access_token"]
        .as_str()
        .map(str::to_string)
        .context("the token endpoint gave no access token")
}

fn ok(status: u16, v: Value, what: &str) -> Result<Value> {
    if status >= 400 {
        bail!(
            "{what}: HTTP {status}: {}",
            v["detail"].as_str().unwrap_or(&v.to_string())
        );
    }
    Ok(v)
}

pub fn run(cmd: EpcisCmd) -> Result<()> {
    match cmd {
        EpcisCmd::Prefix {
            key,
            prefix,
            organization,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let organization = organization
                .map(|d| crate::txcmd::parse_did(&d).map(|d| d.public_key()))
                .transpose()?;
            send(&Client::new(&conn.url), &key, None, |_, _, _| {
                Ok(carechain_types::Payload::AssignCompanyPrefix {
                    prefix,
                    organization,
                })
            })
        }
        EpcisCmd::Capture {
            file,
            key,
            behaviour,
            conn,
        } => {
            let c = Client::new(&conn.url);
            let t = token(&c, &conn, &key)?;
            let body =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let xml = file
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
            let content_type = if xml {
                "application/xml"
            } else {
                "application/ld+json"
            };
            let (s, location, v) = c.post_authed(
                "/epcis/capture",
                &t,
                &[
                    ("content-type", content_type),
                    ("GS1-Capture-Error-Behaviour", &behaviour),
                ],
                &body,
            )?;
            let v = ok(s, v, "capture")?;
            let job_url = location.unwrap_or_else(|| {
                format!(
                    "/epcis/capture/{}",
                    v["captureID"].as_str().unwrap_or_default()
                )
            });
            // Follow the job until it finishes.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            loop {
                let (s, job) = c.get_authed(&job_url, &t)?;
                let job = ok(s, job, "capture job")?;
                if job["running"] == false {
                    print_json(&job)?;
                    if job["success"] != true {
                        bail!("the capture had errors");
                    }
                    return Ok(());
                }
                if std::time::Instant::now() > deadline {
                    bail!("the capture job is still running: {job_url}");
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        EpcisCmd::Events { key, params, conn } => {
            let c = Client::new(&conn.url);
            let t = token(&c, &conn, &key)?;
            let mut qs = form_urlencoded::Serializer::new(String::new());
            for p in &params {
                let (k, v) = p.split_once('=').context("a parameter is NAME=VALUE")?;
                qs.append_pair(k, v);
            }
            let (s, v) = c.get_authed(&format!("/epcis/events?{}", qs.finish()), &t)?;
            print_json(&ok(s, v, "events")?)
        }
        EpcisCmd::Journey { uri, key, conn } => {
            let c = Client::new(&conn.url);
            let t = token(&c, &conn, &key)?;
            let path: String = form_urlencoded::byte_serialize(uri.as_bytes()).collect();
            let (s, v) = c.get_authed(&format!("/epcis/products/{path}"), &t)?;
            print_json(&ok(s, v, "journey")?)
        }
        EpcisCmd::Alerts { key, conn } => {
            let c = Client::new(&conn.url);
            let t = token(&c, &conn, &key)?;
            let (s, v) = c.get_authed("/epcis/alerts", &t)?;
            print_json(&ok(s, v, "alerts")?)
        }
    }
}

/// `carechain verify-pack`: a scanned pack verified as the organization of KEY.
#[derive(clap::Args)]
pub struct VerifyPackArgs {
    /// The pack's GS1 Digital Link (with `?17=YYMMDD&10=LOT` as scanned).
    pub uri: String,
    /// The key file of the scanning organization (or a member of it).
    #[arg(long)]
    pub key: PathBuf,
    #[command(flatten)]
    pub conn: Conn,
}

pub fn verify_pack(a: &VerifyPackArgs) -> Result<()> {
    let c = Client::new(&a.conn.url);
    let t = token(&c, &a.conn, &a.key)?;
    let q: String = form_urlencoded::byte_serialize(a.uri.as_bytes()).collect();
    let (s, v) = c.get_authed(&format!("/verify?uri={q}"), &t)?;
    let v = ok(s, v, "verify")?;
    print_json(&v)?;
    if v["carechain"]["dispensable"] != true {
        bail!(
            "do not dispense: {}",
            v["carechain"]["status"].as_str().unwrap_or("not verified")
        );
    }
    Ok(())
}

/// `carechain verify-event`: events returned by a query checked offline.
#[derive(clap::Args)]
pub struct VerifyEventArgs {
    /// An EPCISQueryDocument (or one event) as returned by `/epcis/events`.
    pub file: PathBuf,
    /// The node's checkpoint verifier key (`/v1/status` → `checkpoint_key`).
    #[arg(long)]
    pub checkpoint_key: String,
}

pub fn verify_event(a: &VerifyEventArgs) -> Result<()> {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?,
    )
    .context("the file is not JSON")?;
    let verifier = carechain_log::NoteVerifier::parse(&a.checkpoint_key)
        .map_err(|e| anyhow::anyhow!("checkpoint key: {e}"))?;
    let checks = carechain_supply::verify_events(&doc, &verifier);
    let report = carechain_supply::proof::report(&checks);
    print_json(&report)?;
    if report["ok"] != true {
        bail!("some events do not verify");
    }
    Ok(())
}
