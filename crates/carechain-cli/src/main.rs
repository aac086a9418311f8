//! The `carechain` command: create a chain, run a node, manage keys and identities, submit
//! transactions, inspect blocks, verify a chain offline, and benchmark the ledger.

mod bench;
mod bench_claims;
mod bench_cluster;
mod bench_fhir;
mod bench_network;
mod bench_supply;
mod chain;
mod client;
mod cluster;
mod consentcmd;
mod contractcmd;
mod demo;
mod demo_claims;
mod demo_supply;
mod epciscmd;
mod import;
mod keyfile;
mod txcmd;
mod up;
mod verify;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "carechain",
    version,
    about = "carechain: a patient-owned health-data ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory: node key, operator key, genesis and database.
    Init(chain::InitArgs),
    /// Run a node: HTTP API and explorer on embedded storage (a validator of its cluster when
    /// the data directory holds a `cluster.json`).
    Up(up::UpArgs),
    /// A local BFT validator cluster: `cluster up --validators 4`, `cluster status`.
    Cluster {
        #[command(subcommand)]
        cmd: cluster::ClusterCmd,
    },
    /// Key management.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Register, rotate, deactivate and show identities.
    Identity {
        #[command(subcommand)]
        cmd: txcmd::IdentityCmd,
    },
    /// A patient's consents on the ledger: grant, revoke (signed with her key), list.
    Consent {
        #[command(subcommand)]
        cmd: consentcmd::ConsentCmd,
    },
    /// Validator-set governance: propose and approve adding or removing a validator (two
    /// thirds of the current set, from a future epoch), list the sets.
    Validator {
        #[command(subcommand)]
        cmd: txcmd::ValidatorCmd,
    },
    /// Submit transactions.
    Tx {
        #[command(subcommand)]
        cmd: txcmd::TxCmd,
    },
    /// Inspect blocks.
    Block {
        #[command(subcommand)]
        cmd: txcmd::BlockCmd,
    },
    /// Verify a whole chain offline (a copied data directory) or through a node's API.
    Verify(verify::VerifyArgs),
    /// Load FHIR Bundles (transaction or batch, e.g. Synthea) from files or directories into a
    /// node, with a progress bar and a summary.
    Import(import::ImportArgs),
    /// Contracts: deploy code, instantiate, call, query.
    Contract {
        #[command(subcommand)]
        cmd: contractcmd::ContractCmd,
    },
    /// The care token: balances, transfers, mints, burns, allowances.
    Token {
        #[command(subcommand)]
        cmd: contractcmd::TokenCmd,
    },
    /// Insurance claims: a member's pseudonym for an insurer.
    Claims {
        #[command(subcommand)]
        cmd: contractcmd::ClaimsCmd,
    },
    /// The drug supply chain: company prefixes, EPCIS capture and queries, a product's
    /// journey, alerts.
    Epcis {
        #[command(subcommand)]
        cmd: epciscmd::EpcisCmd,
    },
    /// Verify a scanned pack at the point of dispense (GS1 Lightweight Verification
    /// Messaging); fails unless the pack may be dispensed.
    VerifyPack(epciscmd::VerifyPackArgs),
    /// Verify EPCIS events returned by a query offline: each event's hash, its anchoring
    /// transaction, and the log inclusion under a signed checkpoint.
    VerifyEvent(epciscmd::VerifyEventArgs),
    /// Verify a claim's decision offline: its ClaimResponse against the claim bundle, the
    /// log under a signed checkpoint, the block, and the contract run again on its reads.
    VerifyClaim(contractcmd::VerifyClaimArgs),
    /// Get an API access token: signs a private_key_jwt assertion with KEY and exchanges it at
    /// the node's token endpoint; prints the bearer token.
    AccessToken {
        /// The identity's key file.
        #[arg(long)]
        key: PathBuf,
        /// SMART v2 scopes, e.g. `patient/*.cruds` or `user/Observation.rs`.
        #[arg(long, default_value = "user/*.rs")]
        scope: String,
        #[command(flatten)]
        conn: txcmd::Conn,
    },
    /// Decrypts a record's envelope (`GET /fhir/{type}/{id}/$envelope`) offline with the
    /// patient's own key, checking it against its commitment.
    Decrypt {
        /// The patient's key file.
        #[arg(long)]
        key: PathBuf,
        /// The envelope (JSON).
        file: PathBuf,
    },
    /// Verify one access-log receipt offline (audit event, commitment, transaction, inclusion
    /// proof, signed checkpoint).
    VerifyReceipt {
        /// A JSON file holding one entry of `GET /patients/{id}/access-log`.
        #[arg(long)]
        file: PathBuf,
        /// The node's checkpoint verifier key (`/v1/status` → `checkpoint_key`). The
        /// anchoring transaction must be signed by this key (the node) or a `--signer`.
        #[arg(long)]
        checkpoint_key: String,
        /// Another identity trusted to anchor audit events (a cluster's validator), as a
        /// did:key; repeatable.
        #[arg(long = "signer")]
        signers: Vec<String>,
    },
    /// Benchmarks (print JSON).
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Generate a new Ed25519 key and write it to a key file (mode 0600).
    New {
        /// Where to write the key file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the did:key of a key file.
    Show {
        /// The key file.
        key: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(
                    "info,commonware_consensus=warn,commonware_p2p=warn,commonware_broadcast=warn,commonware_resolver=warn,commonware_storage=warn,commonware_runtime=warn,commonware_stream=warn",
                )),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Init(a) => chain::init(&a).map(|_| ()),
        Command::Up(a) => up::run(a),
        Command::Cluster { cmd } => cluster::run(cmd),
        Command::Key {
            cmd: KeyCmd::New { out },
        } => {
            let key = carechain_crypto::SecretKey::generate()?;
            keyfile::write(&out, &key)?;
            out_line(&key.public().did().to_string());
            Ok(())
        }
        Command::Key {
            cmd: KeyCmd::Show { key },
        } => {
            out_line(&keyfile::read(&key)?.public().did().to_string());
            Ok(())
        }
        Command::Identity { cmd } => txcmd::identity(cmd),
        Command::Consent { cmd } => consentcmd::consent(cmd),
        Command::Tx { cmd } => txcmd::tx(cmd),
        Command::Validator { cmd } => txcmd::validator(cmd),
        Command::Block { cmd } => txcmd::block(cmd),
        Command::Verify(a) => verify::run(&a),
        Command::Bench { cmd } => bench::run(cmd),
        Command::Import(a) => import::run(&a),
        Command::Contract { cmd } => contractcmd::contract_cmd(cmd),
        Command::Token { cmd } => contractcmd::token_cmd(cmd),
        Command::Claims { cmd } => contractcmd::claims_cmd(cmd),
        Command::VerifyClaim(a) => contractcmd::verify_claim(&a),
        Command::Epcis { cmd } => epciscmd::run(cmd),
        Command::VerifyPack(a) => epciscmd::verify_pack(&a),
        Command::VerifyEvent(a) => epciscmd::verify_event(&a),
        Command::AccessToken { key, scope, conn } => {
            let key = keyfile::read(&key)?;
            let aud = format!("{}/auth/token", conn.url.trim_end_matches('/'));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let assertion = carechain_service::make_assertion(&key, &aud, now);
            let v = client::Client::new(&conn.url).token(&assertion, &scope)?;
            out_line(v["access_token"].as_str().unwrap_or_default());
            Ok(())
        }
        Command::Decrypt { key, file } => {
            let envelope: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)?;
            let key = crate::keyfile::read(&key)?;
            let resource = carechain_service::open_envelope(&envelope, &key)
                .map_err(|e| anyhow::anyhow!("cannot decrypt: {e}"))?;
            out_line(&serde_json::to_string_pretty(&resource)?);
            Ok(())
        }
        Command::VerifyReceipt {
            file,
            checkpoint_key,
            signers,
        } => {
            let entry: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)?;
            let verifier = carechain_log::NoteVerifier::parse(&checkpoint_key)
                .map_err(|e| anyhow::anyhow!("checkpoint key: {e}"))?;
            let trust = carechain_service::ReceiptTrust {
                signers: signers
                    .iter()
                    .map(|d| {
                        d.parse::<carechain_crypto::Did>()
                            .map(|d| d.public_key())
                            .map_err(|_| anyhow::anyhow!("--signer {d}: not a did:key"))
                    })
                    .collect::<Result<_>>()?,
            };
            match carechain_service::verify_receipt(&entry, &verifier, &trust) {
                Ok(size) => {
                    out_line(&serde_json::to_string_pretty(
                        &serde_json::json!({"ok": true, "checkpoint_size": size, "event": entry["event"]["id"]}),
                    )?);
                    Ok(())
                }
                Err(e) => {
                    out_line(&serde_json::to_string_pretty(
                        &serde_json::json!({"ok": false, "reason": e}),
                    )?);
                    anyhow::bail!("receipt does not verify: {e}")
                }
            }
        }
    }
}

/// Prints one line of command output on stdout. When the reader has gone (`carechain … |
/// head`), nothing more can be shown: the command stops quietly, as programs in a shell
/// pipeline do, instead of panicking; any other failure to write stops it with an error.
pub fn out_line(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{s}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}
