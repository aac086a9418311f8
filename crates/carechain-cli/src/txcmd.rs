//! Commands that talk to a running node: identities, transactions, blocks.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use carechain_crypto::{Did, Hash, Namespace, SecretKey};
use carechain_types::{
    EPOCH_LENGTH, GovernanceChange, Payload, Role, TxBody, encode, proposal_id,
    rotation_proof_message,
};
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
    /// Declare, signed by an organization, the node that serves its records to the network
    /// and where other nodes reach it (its API base URL, the one its users sign in at).
    RegisterNode {
        /// The organization's key file.
        #[arg(long)]
        key: PathBuf,
        /// The node's did:key (its `node.key`).
        #[arg(long)]
        node: String,
        /// The node's base URL, e.g. `https://records.cityhospital.example`.
        #[arg(long)]
        endpoint: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// A patient's record locator: the nodes that hold records of hers.
    Locator {
        /// The patient (did:key).
        did: String,
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
pub enum ValidatorCmd {
    /// Propose a governance change from a future epoch start (a multiple of the epoch
    /// length, see `validator list`): adding or removing a validator, or a token issuer;
    /// signed by a current validator, whose signature is the first approval. Prints the
    /// receipt with the proposal's id (`proposal`) and effective height.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(false)))]
    Propose {
        /// Key file of a current validator (a validator's `node.key`).
        #[arg(long)]
        key: PathBuf,
        /// The validator to add (did:key).
        #[arg(long, group = "change")]
        add: Option<String>,
        /// The validator to remove (did:key).
        #[arg(long, group = "change")]
        remove: Option<String>,
        /// An identity to let mint the care token (did:key).
        #[arg(long, group = "change")]
        add_issuer: Option<String>,
        /// A token issuer to stop (did:key).
        #[arg(long, group = "change")]
        remove_issuer: Option<String>,
        /// The first height the changed set proposes and votes at; defaults to the first
        /// epoch start at least two epochs ahead.
        #[arg(long)]
        at: Option<u64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Approve a pending proposal; signed by a current validator. The change is scheduled
    /// once two thirds of the current set approved it.
    Approve {
        /// Key file of a current validator.
        #[arg(long)]
        key: PathBuf,
        /// The proposal id (64 hex digits).
        proposal: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// The current validator set, the approval quorum and every set past and scheduled.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// A proposal with its approvals and state.
    Show {
        /// The proposal id (64 hex digits).
        proposal: String,
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

pub(crate) fn print_json(v: &Value) -> Result<()> {
    out_line(&serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(crate) fn parse_did(s: &str) -> Result<Did> {
    s.parse::<Did>()
        .with_context(|| format!("{s} is not a did:key"))
}

/// Signs and submits `payload` from the identity `signer_id` with `key`; prints the receipt.
pub(crate) fn send(
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
    let proposal = match &payload {
        Payload::ProposeChange {
            change,
            effective_height,
        } => Some((proposal_id(change, *effective_height), *effective_height)),
        _ => None,
    };
    let tx = TxBody {
        chain_id,
        signer: signer.public_key(),
        nonce,
        payload,
    }
    .sign(key);
    let mut v = client.submit(&encode(&tx))?;
    if let Some((id, at)) = proposal {
        v["proposal"] = id.to_hex().into();
        v["effective_height"] = at.into();
    }
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
        IdentityCmd::RegisterNode {
            key,
            node,
            endpoint,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let node = parse_did(&node)?.public_key();
            send(&Client::new(&conn.url), &key, None, |_, _, _| {
                Ok(Payload::RegisterNode {
                    node,
                    endpoint: endpoint.trim_end_matches('/').to_string(),
                })
            })
        }
        IdentityCmd::Locator { did, conn } => {
            let did = parse_did(&did)?;
            print_json(&Client::new(&conn.url).get_json(&format!("/v1/identities/{did}/locator"))?)
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

pub fn validator(cmd: ValidatorCmd) -> Result<()> {
    match cmd {
        ValidatorCmd::Propose {
            key,
            add,
            remove,
            add_issuer,
            remove_issuer,
            at,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let change = match (add, remove, add_issuer, remove_issuer) {
                (Some(d), None, None, None) => GovernanceChange::AddValidator {
                    key: parse_did(&d)?.public_key(),
                },
                (None, Some(d), None, None) => GovernanceChange::RemoveValidator {
                    key: parse_did(&d)?.public_key(),
                },
                (None, None, Some(d), None) => GovernanceChange::AddIssuer {
                    key: parse_did(&d)?.public_key(),
                },
                (None, None, None, Some(d)) => GovernanceChange::RemoveIssuer {
                    key: parse_did(&d)?.public_key(),
                },
                _ => bail!("give one of --add, --remove, --add-issuer or --remove-issuer"),
            };
            let client = Client::new(&conn.url);
            let effective_height = match at {
                Some(h) => h,
                None => {
                    let next = client.get_json("/v1/validators")?["next_height"]
                        .as_u64()
                        .context("validators has no next_height")?;
                    (next / EPOCH_LENGTH + 2) * EPOCH_LENGTH
                }
            };
            send(&client, &key, None, |_, _, _| {
                Ok(Payload::ProposeChange {
                    change,
                    effective_height,
                })
            })
        }
        ValidatorCmd::Approve {
            key,
            proposal,
            conn,
        } => {
            let key = keyfile::read(&key)?;
            let proposal = Hash::from_hex(&proposal)
                .map_err(|e| anyhow::anyhow!("{proposal} is not a proposal id: {e}"))?;
            send(&Client::new(&conn.url), &key, None, |_, _, _| {
                Ok(Payload::ApproveChange { proposal })
            })
        }
        ValidatorCmd::List { conn } => {
            print_json(&Client::new(&conn.url).get_json("/v1/validators")?)
        }
        ValidatorCmd::Show { proposal, conn } => {
            let v = Client::new(&conn.url)
                .get_json_opt(&format!("/v1/validators/proposals/{proposal}"))?
                .with_context(|| format!("no proposal {proposal}"))?;
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
