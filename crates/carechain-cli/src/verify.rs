//! `carechain verify`: audits a chain offline from a (copied) data directory, or through a
//! node's HTTP API (with its cosigned checkpoint and the evidence it shows, if asked), and names
//! the first bad block or log leaf.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use carechain_consensus::{AuditReport, ChainSource, StoreSource, audit_chain};
use carechain_crypto::Hash;
use carechain_log::{NodeSource, root, tiles::TileNodeSource};
use carechain_types::{Genesis, Receipt, decode_genesis};
use clap::Args;
use serde_json::json;

use crate::{client::Client, out_line};

#[derive(Args)]
pub struct VerifyArgs {
    /// A data directory (or a copy of one): works offline.
    #[arg(long, conflicts_with = "url")]
    pub data: Option<PathBuf>,
    /// A node's API base URL.
    #[arg(long)]
    pub url: Option<String>,
    /// Genesis file to trust (the `genesis.bin` that `carechain init` wrote) instead of the one
    /// the node serves.
    #[arg(long, requires = "url")]
    pub genesis: Option<PathBuf>,
    /// Also check the node's latest cosigned checkpoint (`/v1/checkpoint/cosigned`): at least
    /// a quorum of the validators in force where it was made (the trusted genesis's, as
    /// changed by the governance the verified chain holds) must have cosigned it (C2SP
    /// cosignature/v1), and it must be a checkpoint of the verified log.
    #[arg(long, requires = "url")]
    pub cosigned: bool,
    /// Cosigner keys to trust instead of the genesis validators (`name+id+base64(0x04||key)`,
    /// as `/v1/status` lists under `cosigner_keys`). Repeatable.
    #[arg(long = "cosigner", requires = "cosigned")]
    pub cosigners: Vec<String>,
    /// Cosignatures required (default: a BFT quorum, n − ⌊(n − 1)/3⌋ of n cosigners).
    #[arg(long, requires = "cosigned")]
    pub quorum: Option<usize>,
    /// Also check every consensus fault the node shows (`/v1/evidence`): each proof must be
    /// the named offender's own signed messages, of the kind, epoch and view claimed, under
    /// the validator set the verified chain had in force in that epoch.
    #[arg(long, requires = "url")]
    pub evidence: bool,
}

pub fn run(a: &VerifyArgs) -> Result<()> {
    let mut cosigned: Option<serde_json::Value> = None;
    let mut evidence: Option<serde_json::Value> = None;
    let result = match (&a.data, &a.url) {
        (Some(dir), _) => {
            let db = dir.join("ledger.redb");
            let db = if db.exists() { db } else { dir.clone() };
            match StoreSource::open(&db) {
                Ok(src) => audit_chain(&src),
                Err(first) => {
                    // A database left by a crashed node needs redb's recovery, which a
                    // read-only open cannot run: recover a private copy and audit that,
                    // leaving the original untouched.
                    let tmp = tempfile::tempdir()?;
                    let copy = tmp.path().join("ledger.redb");
                    std::fs::copy(&db, &copy)?;
                    drop(
                        redb::Database::open(&copy)
                            .map_err(|e| anyhow::anyhow!("{first}; recovery failed: {e}"))?,
                    );
                    let src = StoreSource::open(&copy).map_err(anyhow::Error::msg)?;
                    audit_chain(&src)
                }
            }
        }
        (None, Some(url)) => {
            let src = HttpSource {
                client: Client::new(url),
                genesis: a.genesis.clone(),
                head: std::cell::Cell::new(None),
            };
            let r = audit_chain(&src);
            if let Ok(report) = &r {
                src.check_tiles(report)?;
                if a.cosigned {
                    cosigned = Some(check_cosigned(a, &src, report)?);
                }
                if a.evidence {
                    evidence = Some(check_evidence(&src, report)?);
                }
            }
            r
        }
        (None, None) => bail!("give --data DIR or --url URL"),
    };
    match result {
        Ok(r) => {
            out_line(&serde_json::to_string_pretty(&json!({
                "ok": true,
                "chain_id": r.chain_id,
                "blocks": r.blocks,
                "transactions": r.transactions,
                "applied": r.applied,
                "checkpoints": r.checkpoints,
                "consistency_proofs": r.consistency_proofs,
                "state_root": r.state_root.to_hex(),
                "log_size": r.log_size,
                "log_root": r.log_root.to_hex(),
                "cosigned": cosigned,
                "evidence": evidence,
            }))?);
            Ok(())
        }
        Err(f) => {
            out_line(&serde_json::to_string_pretty(&json!({
                "ok": false,
                "first_bad_block": f.block,
                "first_bad_leaf": f.leaf,
                "reason": f.reason,
            }))?);
            bail!("verification failed: {f}")
        }
    }
}

struct HttpSource {
    client: Client,
    genesis: Option<PathBuf>,
    head: std::cell::Cell<Option<u64>>,
}

impl HttpSource {
    /// The served tiles must give the same root as the re-executed log.
    fn check_tiles(&self, report: &AuditReport) -> Result<()> {
        if report.log_size == 0 {
            return Ok(());
        }
        let src = TileNodeSource::new(report.log_size, |p: &str| {
            self.client
                .get_bytes(&format!("/{p}"))
                .map_err(|e| e.to_string())
        });
        let r = root(&src as &dyn NodeSource, report.log_size)?;
        if r != report.log_root {
            bail!("tiles served by the node do not match the re-executed log");
        }
        Ok(())
    }
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

impl ChainSource for HttpSource {
    fn genesis(&self) -> Result<Genesis, String> {
        let bytes = match &self.genesis {
            Some(p) => std::fs::read(p).map_err(s)?,
            None => self.client.get_bytes("/v1/genesis").map_err(s)?,
        };
        decode_genesis(&bytes).map_err(s)
    }
    fn head(&self) -> Result<u64, String> {
        // The node keeps growing: the audit covers the chain up to the head seen first.
        if let Some(h) = self.head.get() {
            return Ok(h);
        }
        let v = self.client.get_json("/v1/status").map_err(s)?;
        let h = v["height"].as_u64().ok_or("status has no height")?;
        self.head.set(Some(h));
        Ok(h)
    }
    fn block_bytes(&self, height: u64) -> Result<Vec<u8>, String> {
        self.client
            .get_bytes(&format!("/v1/blocks/{height}?format=raw"))
            .map_err(s)
    }
    fn receipts(&self, _height: u64) -> Result<Option<Vec<Receipt>>, String> {
        Ok(None)
    }
    fn checkpoints(&self) -> Result<Vec<(u64, String)>, String> {
        // The checkpoints published with the middle block and the audited head, so that the
        // node's consistency proof between them is checked too.
        let head = self.head()?;
        let mut out: Vec<(u64, String)> = Vec::new();
        for h in [head / 2, head] {
            if h == 0 {
                continue;
            }
            let block = carechain_types::decode_block(&self.block_bytes(h)?).map_err(s)?;
            let size = block.header.log_size;
            if out.iter().any(|(s, _)| *s == size) {
                continue;
            }
            let note = self
                .client
                .get_bytes(&format!("/v1/checkpoints/{size}"))
                .map_err(s)?;
            out.push((size, String::from_utf8(note).map_err(s)?));
        }
        Ok(out)
    }
    fn log_entries(&self, _from: u64, _to: u64) -> Result<Option<Vec<Hash>>, String> {
        Ok(None)
    }
    fn log_node(&self, _level: u8, _index: u64) -> Result<Option<Hash>, String> {
        Ok(None)
    }
    fn state_entries(&self) -> Result<Option<carechain_state::Entries>, String> {
        Ok(None)
    }
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Option<Vec<Hash>>, String> {
        let v = self
            .client
            .get_json(&format!(
                "/v1/proofs/consistency?first={first}&second={second}"
            ))
            .map_err(s)?;
        let arr = v["proof"].as_array().ok_or("no proof")?;
        arr.iter()
            .map(|h| Hash::from_hex(h.as_str().unwrap_or("")).map_err(s))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// Checks the node's latest cosigned checkpoint against a quorum of cosigners and the
/// verified log.
/// Checks every fault `/v1/evidence` shows against the validator set of its epoch in the
/// verified chain: all must hold (a node showing a proof that does not accuses falsely).
fn check_evidence(src: &HttpSource, report: &AuditReport) -> Result<serde_json::Value> {
    let shown = src.client.get_json("/v1/evidence")?;
    let shown = shown["evidence"]
        .as_array()
        .context("/v1/evidence: no evidence list")?;
    let rng = &mut commonware_utils::sys_rng();
    let mut checked = Vec::new();
    for f in shown {
        let text = |k: &str| f[k].as_str().unwrap_or_default().to_string();
        let number = |k: &str| f[k].as_u64().unwrap_or(u64::MAX);
        let fault = carechain_node::Fault {
            epoch: number("epoch"),
            view: number("view"),
            offender: text("offender"),
            kind: text("kind"),
            proof: hex::decode(text("proof")).unwrap_or_default(),
        };
        // The set in force at the epoch's first height, as the validators derive it.
        let set = report.validators_at(fault.epoch.saturating_mul(carechain_types::EPOCH_LENGTH));
        if let Err(e) = carechain_cluster::evidence::verify_proof(rng, &fault, &set) {
            out_line(&serde_json::to_string_pretty(&json!({
                "ok": false,
                "evidence": f,
                "reason": e.to_string(),
            }))?);
            bail!(
                "evidence against {} ({} in epoch {} view {}) does not hold: {e}",
                fault.offender,
                fault.kind,
                fault.epoch,
                fault.view
            );
        }
        checked.push(json!({
            "epoch": fault.epoch,
            "view": fault.view,
            "offender": fault.offender,
            "kind": fault.kind,
        }));
    }
    Ok(json!({ "proven": checked }))
}

fn check_cosigned(
    a: &VerifyArgs,
    src: &HttpSource,
    report: &AuditReport,
) -> Result<serde_json::Value> {
    let note = String::from_utf8(src.client.get_bytes("/v1/checkpoint/cosigned")?)?;
    // The cosigners: those given, or the validator set in force where the checkpoint was made
    // (from the verified chain's schedule; near a set change, either candidate set).
    let candidates: Vec<Vec<carechain_log::CosignatureVerifier>> = if a.cosigners.is_empty() {
        let size = carechain_log::Checkpoint::parse_text(
            &carechain_log::SignedNote::parse(&note)
                .map_err(|e| anyhow::anyhow!("cosigned checkpoint: {e}"))?
                .text,
        )
        .map_err(|e| anyhow::anyhow!("cosigned checkpoint: {e}"))?
        .size;
        let sets = report.cosigner_sets(size);
        if sets.is_empty() {
            bail!("cosigned checkpoint at size {size}: no block of the verified chain ends there");
        }
        sets.iter().map(carechain_consensus::cosigners_of).collect()
    } else {
        vec![
            a.cosigners
                .iter()
                .map(|k| carechain_log::CosignatureVerifier::parse(k))
                .collect::<Result<Vec<_>, _>>()?,
        ]
    };
    let mut outcome = Err(anyhow::anyhow!("cosigned checkpoint: no cosigner set"));
    let mut need = 0;
    let mut of = 0;
    for cosigners in &candidates {
        need = a
            .quorum
            .unwrap_or_else(|| carechain_consensus::cosign_quorum(cosigners.len()));
        of = cosigners.len();
        if need == 0 || need > cosigners.len() {
            bail!("--quorum must be 1 to {}", cosigners.len());
        }
        outcome = carechain_log::verify_cosigned(&note, cosigners, need)
            .map_err(|e| anyhow::anyhow!("cosigned checkpoint: {e}"));
        if outcome.is_ok() {
            break;
        }
    }
    let (cp, who) = outcome?;
    if cp.size > report.log_size {
        bail!(
            "cosigned checkpoint at size {} is beyond the verified log ({})",
            cp.size,
            report.log_size
        );
    }
    // The verified log holds a checkpoint at that size (checked above against the rebuilt
    // log): the cosigned one must be the same tree head.
    let own = String::from_utf8(
        src.client
            .get_bytes(&format!("/v1/checkpoints/{}", cp.size))?,
    )?;
    let own = carechain_log::SignedNote::parse(&own)?;
    if carechain_log::Checkpoint::parse_text(&own.text)? != cp {
        bail!(
            "cosigned checkpoint at size {} differs from the log's",
            cp.size
        );
    }
    Ok(json!({
        "size": cp.size,
        "root": cp.root.to_hex(),
        "cosigners": who,
        "quorum": need,
        "of": of,
    }))
}
