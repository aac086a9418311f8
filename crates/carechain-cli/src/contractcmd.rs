//! `carechain contract` (deploy, instantiate, call, query, show), `carechain token` (the care
//! token: balance, transfer, mint, burn, allowances) and `carechain claims` (a member's
//! pseudonym, a claim's offline verification).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use carechain_contracts::shipped;
use carechain_crypto::{Hash, sha256};
use carechain_types::{Account, Payload};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::Client;
use crate::keyfile;
use crate::txcmd::{Conn, parse_did, print_json, send};

#[derive(Subcommand)]
pub enum ContractCmd {
    /// Store contract code on the ledger (by its hash): a .wasm file, or a shipped contract
    /// (escrow, claims, pool).
    Deploy {
        /// The signer's key file.
        #[arg(long)]
        key: PathBuf,
        /// The module.
        #[arg(long, conflicts_with = "shipped")]
        wasm: Option<PathBuf>,
        /// A contract shipped with carechain: escrow, claims or pool.
        #[arg(long)]
        shipped: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create an instance of stored code, running its `instantiate` with MSG (JSON).
    Instantiate {
        /// The signer's key file.
        #[arg(long)]
        key: PathBuf,
        /// The code's hash (or a shipped contract's name).
        #[arg(long)]
        code: String,
        /// The instantiate message (JSON).
        #[arg(long)]
        msg: String,
        /// Tokens sent along (minor units).
        #[arg(long, default_value_t = 0)]
        funds: u64,
        /// A label.
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Execute a contract with MSG (JSON); prints the receipt with the contract's reply.
    Call {
        /// The signer's key file.
        #[arg(long)]
        key: PathBuf,
        /// The contract (`contract:<hex>`).
        #[arg(long)]
        contract: String,
        /// The message (JSON).
        #[arg(long)]
        msg: String,
        /// Tokens sent along (minor units).
        #[arg(long, default_value_t = 0)]
        funds: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// A read-only query (no transaction, no fee).
    Query {
        /// The contract (`contract:<hex>`).
        #[arg(long)]
        contract: String,
        /// The query message (JSON).
        #[arg(long)]
        msg: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// A contract instance: its code, creator, label and balance.
    Show {
        /// The contract (`contract:<hex>`).
        contract: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// The token's metadata and total supply.
    Info {
        #[command(flatten)]
        conn: Conn,
    },
    /// An account's balance (a did:key or contract:<hex>), with its state proof.
    Balance {
        /// The account.
        account: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Transfer tokens to an account.
    Transfer {
        /// The sender's key file.
        #[arg(long)]
        key: PathBuf,
        /// The receiver (did:key or contract:<hex>).
        #[arg(long)]
        to: String,
        /// Minor units.
        #[arg(long)]
        amount: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Mint tokens (a governance-approved issuer only).
    Mint {
        /// The issuer's key file.
        #[arg(long)]
        key: PathBuf,
        /// The receiver.
        #[arg(long)]
        to: String,
        /// Minor units.
        #[arg(long)]
        amount: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Burn tokens of the signer's.
    Burn {
        /// The holder's key file.
        #[arg(long)]
        key: PathBuf,
        /// Minor units.
        #[arg(long)]
        amount: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set (absolutely, not add to) what SPENDER may transfer from the signer, until a height.
    Allow {
        /// The owner's key file.
        #[arg(long)]
        key: PathBuf,
        /// The spender.
        #[arg(long)]
        spender: String,
        /// Minor units.
        #[arg(long)]
        amount: u64,
        /// The first height at which it no longer holds.
        #[arg(long)]
        expires_at: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// The latest transfers, mints and burns (of one account with --account).
    Transfers {
        /// Only those touching this account.
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub enum ClaimsCmd {
    /// The member pseudonym an insurer enrolls for a subscriber id (what claims name).
    Member {
        /// The insurer's claims contract (`contract:<hex>`).
        #[arg(long)]
        contract: String,
        /// The member's subscriber id (Coverage.subscriberId).
        #[arg(long)]
        subscriber_id: String,
    },
}

fn account(s: &str) -> Result<Account> {
    s.parse::<Account>()
        .map_err(|_| anyhow::anyhow!("{s} is not a did:key or contract:<hex>"))
}

fn contract(s: &str) -> Result<Hash> {
    match account(s)? {
        Account::Contract(h) => Ok(h),
        Account::Identity(_) => bail!("{s} is not a contract:<hex>"),
    }
}

fn json_msg(s: &str) -> Result<Vec<u8>> {
    let v: Value = serde_json::from_str(s).context("--msg is not JSON")?;
    Ok(v.to_string().into_bytes())
}

fn shipped_code(name: &str) -> Result<&'static [u8]> {
    shipped::ALL
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.code)
        .with_context(|| format!("no shipped contract {name} (escrow, claims, pool)"))
}

fn code_hash(s: &str) -> Result<Hash> {
    match shipped_code(s) {
        Ok(code) => Ok(sha256(code)),
        Err(_) => Hash::from_hex(s)
            .context("--code is a code hash (64 hex digits) or a shipped contract's name"),
    }
}

pub fn contract_cmd(cmd: ContractCmd) -> Result<()> {
    match cmd {
        ContractCmd::Deploy {
            key,
            wasm,
            shipped,
            conn,
        } => {
            let code = match (wasm, shipped) {
                (Some(p), _) => {
                    std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?
                }
                (None, Some(name)) => shipped_code(&name)?.to_vec(),
                (None, None) => bail!("give --wasm FILE or --shipped NAME"),
            };
            let key = keyfile::read(&key)?;
            send(&Client::new(&conn.url), &key, None, |_, _, _| {
                Ok(Payload::DeployCode { code })
            })
        }
        ContractCmd::Instantiate {
            key,
            code,
            msg,
            funds,
            label,
            conn,
        } => {
            let (code, msg) = (code_hash(&code)?, json_msg(&msg)?);
            let key = keyfile::read(&key)?;
            send(&Client::new(&conn.url), &key, None, |_, _, _| {
                Ok(Payload::Instantiate {
                    code,
                    msg,
                    funds,
                    label,
                })
            })
        }
        ContractCmd::Call {
            key,
            contract: c,
            msg,
            funds,
            conn,
        } => {
            let (contract, msg) = (contract(&c)?, json_msg(&msg)?);
            let key = keyfile::read(&key)?;
            send(&Client::new(&conn.url), &key, None, |_, _, _| {
                Ok(Payload::Execute {
                    contract,
                    msg,
                    funds,
                })
            })
        }
        ContractCmd::Query {
            contract: c,
            msg,
            conn,
        } => {
            contract(&c)?;
            let msg = json_msg(&msg)?;
            let (status, v) =
                Client::new(&conn.url).post_json(&format!("/v1/contracts/{c}/query"), &msg)?;
            print_json(&v)?;
            if status != 200 {
                bail!(
                    "query failed: {}",
                    v["error"]["message"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        ContractCmd::Show { contract: c, conn } => {
            contract(&c)?;
            print_json(&Client::new(&conn.url).get_json(&format!("/v1/contracts/{c}"))?)
        }
    }
}

pub fn token_cmd(cmd: TokenCmd) -> Result<()> {
    let sign = |key: &PathBuf, url: &str, payload: Payload| {
        let key = keyfile::read(key)?;
        send(&Client::new(url), &key, None, |_, _, _| Ok(payload))
    };
    match cmd {
        TokenCmd::Info { conn } => print_json(&Client::new(&conn.url).get_json("/v1/token")?),
        TokenCmd::Balance { account: a, conn } => {
            account(&a)?;
            print_json(&Client::new(&conn.url).get_json(&format!("/v1/token/balances/{a}"))?)
        }
        TokenCmd::Transfer {
            key,
            to,
            amount,
            conn,
        } => sign(
            &key,
            &conn.url,
            Payload::Transfer {
                to: account(&to)?,
                amount,
            },
        ),
        TokenCmd::Mint {
            key,
            to,
            amount,
            conn,
        } => sign(
            &key,
            &conn.url,
            Payload::Mint {
                to: account(&to)?,
                amount,
            },
        ),
        TokenCmd::Burn { key, amount, conn } => sign(&key, &conn.url, Payload::Burn { amount }),
        TokenCmd::Allow {
            key,
            spender,
            amount,
            expires_at,
            conn,
        } => sign(
            &key,
            &conn.url,
            Payload::SetAllowance {
                spender: account(&spender)?,
                amount,
                expires_at,
            },
        ),
        TokenCmd::Transfers { account: a, conn } => {
            let path = match a {
                Some(a) => {
                    account(&a)?;
                    format!("/v1/token/transfers?account={a}&limit=50")
                }
                None => "/v1/token/transfers?limit=50".into(),
            };
            print_json(&Client::new(&conn.url).get_json(&path)?)
        }
    }
}

pub fn claims_cmd(cmd: ClaimsCmd) -> Result<()> {
    match cmd {
        ClaimsCmd::Member {
            contract: c,
            subscriber_id,
        } => {
            let pseudonym = carechain_claims::member_pseudonym(&contract(&c)?, &subscriber_id);
            print_json(&json!({ "contract": c, "member": pseudonym }))
        }
    }
}

/// `carechain verify-claim`: a ClaimResponse checked offline against its claim bundle.
#[derive(clap::Args)]
pub struct VerifyClaimArgs {
    /// The claim bundle as submitted (JSON).
    #[arg(long)]
    pub bundle: PathBuf,
    /// Its ClaimResponse (JSON).
    #[arg(long)]
    pub response: PathBuf,
    /// The node's checkpoint verifier key (`/v1/status` → `checkpoint_key`).
    #[arg(long)]
    pub checkpoint_key: String,
    /// Another trusted proposer or submitter (a cluster's validator), as a did:key; repeatable.
    #[arg(long = "signer")]
    pub signers: Vec<String>,
    /// The contract's code (default: the shipped claims contract).
    #[arg(long)]
    pub code: Option<PathBuf>,
    /// The chain's genesis (borsh, `GET /v1/genesis`) for its cost table and token decimals
    /// (default: carechain's defaults).
    #[arg(long)]
    pub genesis: Option<PathBuf>,
}

pub fn verify_claim(a: &VerifyClaimArgs) -> Result<()> {
    let read_json = |p: &PathBuf| -> Result<Value> {
        serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{} is not JSON", p.display()))
    };
    let (bundle, response) = (read_json(&a.bundle)?, read_json(&a.response)?);
    let verifier = carechain_log::NoteVerifier::parse(&a.checkpoint_key)
        .map_err(|e| anyhow::anyhow!("checkpoint key: {e}"))?;
    let trusted = a
        .signers
        .iter()
        .map(|d| parse_did(d).map(|d| d.public_key()))
        .collect::<Result<Vec<_>>>()?;
    let code = match &a.code {
        Some(p) => std::fs::read(p)?,
        None => shipped::CLAIMS.code.to_vec(),
    };
    let genesis = match &a.genesis {
        Some(p) => Some(
            carechain_types::decode_genesis(&std::fs::read(p)?)
                .map_err(|e| anyhow::anyhow!("genesis: {e}"))?,
        ),
        None => None,
    };
    let defaults = (
        carechain_types::ContractConfig::default(),
        carechain_types::TokenConfig::default().decimals,
    );
    let (contracts, decimals) = match &genesis {
        Some(g) => (g.contracts.clone(), g.token.decimals),
        None => defaults,
    };
    let inputs = carechain_claims::VerifyInputs {
        verifier: &verifier,
        trusted: &trusted,
        code: &code,
        contracts: &contracts,
        decimals,
    };
    match carechain_claims::verify_claim(&bundle, &response, &inputs) {
        Ok(v) => print_json(&json!({
            "ok": true, "outcome": v.outcome, "paid": v.paid, "height": v.height,
            "fuel_used": v.fuel_used, "checkpoint_size": v.checkpoint_size,
        })),
        Err(e) => {
            print_json(&json!({ "ok": false, "reason": e }))?;
            bail!("the claim's decision does not verify: {e}")
        }
    }
}
