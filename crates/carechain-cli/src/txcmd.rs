//! Commands that talk to a running node: identities, transactions, blocks.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use carechain_crypto::{Did, Hash, Namespace, SecretKey};
use carechain_types::{Payload, Role, TxBody, encode, rotation_proof_message};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::{client::Client, keyfile, out_line};

#[derive(Args, Clone)]
pub struct Conn {
    /// The node's API base URL.
    #[arg(long, env = "CARECHAIN_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

#[derive(Subcommand)]
pub enum IdentityCmd {
    /// Register an identity, signed by KEY (an operator, an organization for its practitioners
    /// and devices, or a patient registering itself).
    Register {
        /// Key file of the signer.
        #[arg(long)]
        key: PathBuf,
        /// The new identity (did:key). Defaults to the signer itself (patient self-registration).
        #[arg(long)]
        subject: Option<String>,
        /// Role: patient, practitioner, organization, device, validator, operator.
        #[arg(long)]
        role: String,
        /// Parent organization (did:key).
        #[arg(long)]
        parent: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Rotate the signer's key: signed by the current key, agreed to by the new one.
    Rotate {
        /// Key file of the current key.
        #[arg(long)]
        key: PathBuf,
        /// Key file of the new key.
        #[arg(long)]
        new_key: PathBuf,
        /// The identity (did:key) if the current key is not its original key.
        #[arg(long)]
        identity: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Deactivate an identity (itself, by an operator, or by its organization).
    Deactivate {
        /// Key file of the signer.
        #[arg(long)]
        key: PathBuf,
        /// The identity to deactivate.
        #[arg(long)]
        subject: String,
        /// The signer's identity (did:key) if its key was rotated.
        #[arg(long)]
        identity: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show an identity with its state proof.
    Show {
        /// The identity (did:key).
        did: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum TxCmd {
    /// Submit an already signed transaction (file with its bytes or their hex) and wait for
    /// its receipt.
    Submit {
        /// The transaction file.
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Anchor an opaque 32-byte commitment.
    Anchor {
        /// Key file of the signer.
        #[arg(long)]
        key: PathBuf,
        /// A short label for the commitment.
        #[arg(long, default_value = "anchor")]
        kind: String,
        /// The commitment (64 hex digits); defaults to the SHA-256 of --data.
        #[arg(long)]
        commitment: Option<String>,
        /// Data to commit to (hashed locally; only its hash is sent).
        #[arg(long)]
        data: Option<String>,
        /// The signer's identity (did:key) if its key was rotated.
        #[arg(long)]
        identity: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum BlockCmd {
    /// Show a block by height, hash, or `latest`.
    Show {
        /// Height, 64-hex hash, or `latest`.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

fn print_json(v: &Value) -> Result<()> {
    out_line(&serde_json::to_string_pretty(v)?);
    Ok(())
}

fn parse_did(s: &str) -> Result<Did> {
    s.parse::<Did>()
        .with_context(|| format!("{s} is not a did:key"))
}

/// Signs and submits `payload` from the identity `signer_id` with `key`; prints the receipt.
fn send(
    client: &Client,
    key: &SecretKey,
    signer_id: Option<&str>,
    payload: impl FnOnce(&str, &Did, u64) -> Result<Payload>,
) -> Result<()> {
    let status = client.get_json("/v1/status")?;
    let chain_id = status["chain_id"]
        .as_str()
        .context("status has no chain_id")?
        .to_string();
    let signer = match signer_id {
        Some(s) => parse_did(s)?,
        None => key.public().did(),
    };
    let nonce = match client.get_json_opt(&format!("/v1/identities/{signer}"))? {
        Some(v) => v["next_nonce"]
            .as_u64()
            .context("identity has no next_nonce")?,
        None => 0,
    };
    let payload = payload(&chain_id, &signer, nonce)?;
    let tx = TxBody {
        chain_id,
        signer: signer.public_key(),
        nonce,
        payload,
    }
    .sign(key);
    let v = client.submit(&encode(&tx))?;
    print_json(&v)?;
    if v["receipt"]["outcome"] == "rejected" {
        bail!(
            "transaction rejected: {}",
            v["receipt"]["reason"]["message"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub fn identity(cmd: IdentityCmd) -> Result<()> {
    match cmd {
        IdentityCmd::Register {
            key,
            subject,
            role,
            parent,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let role = Role::parse(&role).with_context(|| format!("unknown role {role}"))?;
            let subject = match subject {
                Some(s) => parse_did(&s)?,
                None => key.public().did(),
            };
            let parent = parent.map(|p| parse_did(&p)).transpose()?;
            send(&Client::new(&conn.url), &key, None, |_, _, _| {
                Ok(Payload::Register {
                    subject: subject.public_key(),
                    role,
                    parent: parent.map(|p| p.public_key()),
                })
            })
        }
        IdentityCmd::Rotate {
            key,
            new_key,
            identity,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let new_key = keyfile::read(&new_key)?;
            send(
                &Client::new(&conn.url),
                &key,
                identity.as_deref(),
                |chain, id, nonce| {
                    let msg =
                        rotation_proof_message(chain, &id.public_key(), &new_key.public(), nonce);
                    Ok(Payload::RotateKey {
                        new_key: new_key.public(),
                        proof: new_key.sign(Namespace::KeyRotation, &msg),
                    })
                },
            )
        }
        IdentityCmd::Deactivate {
            key,
            subject,
            identity,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let subject = parse_did(&subject)?;
            send(
                &Client::new(&conn.url),
                &key,
                identity.as_deref(),
                |_, _, _| {
                    Ok(Payload::Deactivate {
                        subject: subject.public_key(),
                    })
                },
            )
        }
        IdentityCmd::Show { did, conn } => {
            let did = parse_did(&did)?;
            let v = Client::new(&conn.url)
                .get_json_opt(&format!("/v1/identities/{did}"))?
                .with_context(|| format!("{did} is not registered"))?;
            print_json(&v)
        }
    }
}

pub fn tx(cmd: TxCmd) -> Result<()> {
    match cmd {
        TxCmd::Submit { file, conn } => {
            let raw =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let bytes = match std::str::from_utf8(&raw)
                .ok()
                .map(str::trim)
                .and_then(|t| hex::decode(t).ok())
            {
                Some(b) => b,
                None => raw,
            };
            let v = Client::new(&conn.url).submit(&bytes)?;
            print_json(&v)
        }
        TxCmd::Anchor {
            key,
            kind,
            commitment,
            data,
            identity,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let commitment = match (commitment, data) {
                (Some(c), _) => Hash::from_hex(&c).context("commitment must be 64 hex digits")?,
                (None, Some(d)) => carechain_crypto::sha256(d.as_bytes()),
                (None, None) => bail!("give --commitment or --data"),
            };
            send(
                &Client::new(&conn.url),
                &key,
                identity.as_deref(),
                |_, _, _| Ok(Payload::Anchor { kind, commitment }),
            )
        }
    }
}

pub fn block(cmd: BlockCmd) -> Result<()> {
    match cmd {
        BlockCmd::Show { id, conn } => {
            let v = Client::new(&conn.url).get_json(&format!("/v1/blocks/{id}"))?;
            print_json(&v)
        }
    }
}
