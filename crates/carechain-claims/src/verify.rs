//! Checking a decision offline (`carechain verify-claim`): from the claim bundle, its
//! ClaimResponse and the contract's code, with only the checkpoint key trusted.
//!
//! 1. The bundle gives the same contract message (salted commitment included) as the one the
//!    deciding transaction carries: the decision is about this claim and nothing else. (When
//!    the deciding transaction is the insurer's later `decide` of what was pended, the
//!    claim's id and the decision's stored inputs commitment are this bundle's.)
//! 2. The transaction is in the log under a checkpoint signed by the trusted key, and signed
//!    itself (by the submitting node).
//! 3. Its block's header is sealed by a trusted key; the transaction and its receipt are under
//!    the header's roots; the receipt says applied, and its data is the decision.
//! 4. The code hashes to the evidence's code hash; run again on the reads the decision
//!    records (its witness), with the same input, it returns byte for byte the same reply
//!    and burns the same fuel.
//! 5. The ClaimResponse says what the decision says (outcome, amounts).

use std::collections::BTreeMap;

use carechain_contracts::{Call, Entry, Host, HostFailure, HostIdentity, Runtime, TransferOutcome};
use carechain_crypto::{Did, Hash, Namespace, PublicKey, merkle, sha256};
use carechain_log::NoteVerifier;
use carechain_state::{CallEnv, call_input};
use carechain_types::{Account, ConsentPurpose, ContractConfig, Outcome, Payload, Role, encode};
use serde_json::Value;

use crate::{ClaimBundle, claim_id, evidence_of, inputs_commitment, submit_message};

/// What a verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedClaim {
    /// The decision's outcome.
    pub outcome: String,
    /// What was paid.
    pub paid: u64,
    /// The deciding block's height.
    pub height: u64,
    /// The fuel the decision burned (the same when run again).
    pub fuel_used: u64,
    /// The log size of the checkpoint it was proven under.
    pub checkpoint_size: u64,
}

/// What the verifier is given besides the two documents.
pub struct VerifyInputs<'a> {
    /// The checkpoint key (`name+hash+key`), trusted.
    pub verifier: &'a NoteVerifier,
    /// Further trusted block proposers and transaction signers (a cluster's validators).
    pub trusted: &'a [PublicKey],
    /// The contract's code.
    pub code: &'a [u8],
    /// The chain's contract cost table and limits (from its genesis).
    pub contracts: &'a ContractConfig,
    /// The token's decimals.
    pub decimals: u8,
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}

/// Verifies `claim_response` as the decision of `bundle`.
pub fn verify_claim(
    bundle: &Value,
    claim_response: &Value,
    inputs: &VerifyInputs<'_>,
) -> Result<VerifiedClaim, String> {
    let ev = evidence_of(claim_response)?;
    let tx = &ev.tx;
    // 1. The message is this bundle's.
    let claim = ClaimBundle::parse(bundle, inputs.decimals)
        .map_err(|p| format!("the bundle is not a claim: {}", p[0]))?;
    let Payload::Execute {
        contract,
        msg,
        funds,
    } = &tx.body.payload
    else {
        return Err("the deciding transaction is not a contract call".into());
    };
    check(
        *contract == ev.contract && claim.contract == ev.contract,
        "the transaction calls another contract than the claim's insurer",
    )?;
    let sent: Value =
        serde_json::from_slice(msg).map_err(|_| "the on-chain message is not JSON")?;
    let reply: Value =
        serde_json::from_slice(&ev.receipt.data).map_err(|_| "the receipt's data is not JSON")?;
    let trusted = |k: &PublicKey| *k == inputs.verifier.key || inputs.trusted.contains(k);
    if sent["decide"].is_object() {
        // The insurer's later decision of what was pended: about this claim (its id is the
        // provider's and the bundle's identifier; its stored inputs are this bundle's), and
        // authorized by the contract itself (run again below).
        let d = &reply["decision"];
        let provider: Did = d["provider"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .ok_or("the decision names no provider")?;
        check(
            sent["decide"]["claim_id"] == claim_id(&provider, &claim.identifier).as_str(),
            "the insurer's decision is about another claim",
        )?;
        check(
            d["inputs"] == inputs_commitment(&ev.salt, bundle).to_hex().as_str(),
            "the decided claim's inputs are not this bundle's: the claim was altered, or the salt is wrong",
        )?;
    } else {
        // 2. A submission: this bundle's message, signed by the submitting node.
        let provider: Did = sent["submit"]["provider"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .ok_or("the on-chain message names no provider")?;
        let expected = submit_message(&claim, &provider, &inputs_commitment(&ev.salt, bundle));
        check(
            sent == expected,
            "the on-chain message is not this bundle's: the claim was altered, or the salt is wrong",
        )?;
        check(
            trusted(&tx.body.signer),
            "the transaction is not signed by the node or a trusted validator",
        )?;
    }
    tx.verify_with(&tx.body.signer)
        .map_err(|_| "the transaction's signature does not verify")?;
    let (_, checkpoint_size) = carechain_service::verify_logged(
        &ev.inclusion,
        &tx.hash(),
        &tx.body.chain_id,
        inputs.verifier,
    )?;
    // 3. The block, the transaction's place in it and its receipt.
    let h = &ev.header;
    check(
        trusted(&h.proposer),
        "the block is not proposed by a trusted key",
    )?;
    h.proposer
        .verify(Namespace::Block, &h.hash().0, &ev.seal)
        .map_err(|_| "the block's seal does not verify")?;
    let n = u64::from(h.tx_count);
    carechain_log::proof::verify_inclusion(
        ev.position,
        n,
        &merkle::leaf_hash(&tx.hash().0),
        &ev.tx_path,
        &h.tx_root,
    )
    .map_err(|e| format!("the transaction is not in the block: {e}"))?;
    carechain_log::proof::verify_inclusion(
        ev.position,
        n,
        &merkle::leaf_hash(&encode(&ev.receipt)),
        &ev.receipt_path,
        &h.receipts_root,
    )
    .map_err(|e| format!("the receipt is not the block's: {e}"))?;
    check(
        ev.receipt.tx_hash == tx.hash(),
        "the receipt is of another transaction",
    )?;
    check(
        matches!(ev.receipt.outcome, Outcome::Applied { .. }),
        "the deciding transaction was not applied",
    )?;
    // 4. The code, run again on the decision's reads.
    check(
        sha256(inputs.code) == ev.code_hash,
        "the code given is not the contract's code",
    )?;
    let mut host = WitnessHost::from_witness(&reply["witness"], &ev.contract)?;
    let sender = Account::Identity(tx.body.signer);
    let input = call_input(
        &CallEnv {
            chain_id: &tx.body.chain_id,
            height: h.height,
            time_ms: h.timestamp_ms,
            contract: &ev.contract,
            sender: &sender,
            funds: *funds,
        },
        msg,
    );
    let runtime = Runtime::new(inputs.contracts);
    let out = runtime
        .call(
            &Call {
                code_hash: &ev.code_hash,
                code: inputs.code,
                entry: Entry::Execute,
                input: &input,
                fuel: inputs.contracts.tx_fuel_limit,
                contract: Account::Contract(ev.contract),
            },
            &mut host,
        )
        .map_err(|e| format!("running the contract again failed: {e}"))?;
    check(
        out.data == ev.receipt.data,
        "run again, the contract decides differently",
    )?;
    check(
        out.fuel_used == ev.receipt.fuel_used,
        "run again, the contract burns different fuel",
    )?;
    // 5. The ClaimResponse says what the decision says.
    let d = &reply["decision"];
    check(
        claim_response["outcome"] == d["outcome"],
        "the ClaimResponse's outcome is not the decision's",
    )?;
    let paid = d["paid"].as_u64().unwrap_or(0);
    let shown = claim_response["payment"]["amount"]["value"]
        .as_f64()
        .unwrap_or(0.0);
    let scale = 10f64.powi(i32::from(inputs.decimals));
    check(
        (shown * scale).round() as u64 == paid,
        "the ClaimResponse's payment is not the decision's",
    )?;
    Ok(VerifiedClaim {
        outcome: d["outcome"].as_str().unwrap_or_default().to_string(),
        paid,
        height: h.height,
        fuel_used: out.fuel_used,
        checkpoint_size,
    })
}

/// The ledger as a decision's witness saw it: the contract's storage before the call, the
/// identities and balances it read. A read outside the witness fails the run.
struct WitnessHost {
    storage: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The transfers the call made, with their outcomes, in order (consumed as it runs).
    transfers: std::collections::VecDeque<(String, u64, i64)>,
    identities: BTreeMap<String, Option<HostIdentity>>,
    balances: BTreeMap<String, u64>,
    contract: String,
}

fn missing(what: &str) -> HostFailure {
    HostFailure(format!("the witness does not hold {what}"))
}

impl WitnessHost {
    fn from_witness(w: &Value, contract: &Hash) -> Result<WitnessHost, String> {
        let pairs = |f: &str| {
            w[f].as_array()
                .cloned()
                .ok_or(format!("the decision has no witness {f}"))
        };
        let mut storage = BTreeMap::new();
        for p in pairs("storage")? {
            let k =
                hex::decode(p[0].as_str().unwrap_or("")).map_err(|_| "witness key is not hex")?;
            let v = match p[1].as_str() {
                Some(v) => Some(hex::decode(v).map_err(|_| "witness value is not hex")?),
                None => None,
            };
            storage.insert(k, v);
        }
        let mut identities = BTreeMap::new();
        for p in pairs("identities")? {
            let did = p[0].as_str().unwrap_or_default().to_string();
            let ident = match p[1].as_str() {
                None => None,
                Some(j) => {
                    let v: Value =
                        serde_json::from_str(j).map_err(|_| "witness identity is not JSON")?;
                    let organization = match v["organization"].as_str() {
                        Some(o) => Some(o.parse::<Did>().map_err(|e| e.to_string())?.public_key()),
                        None => None,
                    };
                    Some(HostIdentity {
                        role: Role::parse(v["role"].as_str().unwrap_or(""))
                            .ok_or("witness role")?,
                        organization,
                        active: v["active"] == true,
                    })
                }
            };
            identities.insert(did, ident);
        }
        let balances = pairs("balances")?
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap_or_default().to_string(),
                    p[1].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let transfers = w["transfers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t[0].as_str().unwrap_or_default().to_string(),
                    t[1].as_u64().unwrap_or(0),
                    t[2].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        Ok(WitnessHost {
            storage,
            transfers,
            identities,
            balances,
            contract: Account::Contract(*contract).to_string(),
        })
    }
}

impl Host for WitnessHost {
    fn storage_get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, HostFailure> {
        self.storage
            .get(key)
            .cloned()
            .ok_or_else(|| missing("a storage key read"))
    }

    fn storage_set(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), HostFailure> {
        self.storage.insert(key.to_vec(), value.map(<[u8]>::to_vec));
        Ok(())
    }

    fn balance(&mut self, account: &Account) -> Result<u64, HostFailure> {
        self.balances
            .get(&account.to_string())
            .copied()
            .ok_or_else(|| missing("a balance read"))
    }

    fn transfer(&mut self, to: &Account, amount: u64) -> Result<TransferOutcome, HostFailure> {
        let (t, a, code) = self
            .transfers
            .pop_front()
            .ok_or_else(|| missing("a transfer the call makes"))?;
        if t != to.to_string() || a != amount {
            return Err(HostFailure(
                "run again, the contract makes another transfer than it did".into(),
            ));
        }
        let outcome = match code {
            0 => TransferOutcome::Done,
            1 => TransferOutcome::InsufficientFunds,
            _ => TransferOutcome::UnknownAccount,
        };
        if outcome == TransferOutcome::Done {
            if let Some(b) = self.balances.get_mut(&self.contract) {
                *b = b.saturating_sub(amount);
            }
            if let Some(b) = self.balances.get_mut(&to.to_string()) {
                *b += amount;
            }
        }
        Ok(outcome)
    }

    fn consent_allows(
        &mut self,
        _: &PublicKey,
        _: &PublicKey,
        _: ConsentPurpose,
        _: Option<&str>,
    ) -> Result<bool, HostFailure> {
        Err(missing("consents (the claims contract reads none)"))
    }

    fn identity(&mut self, who: &PublicKey) -> Result<Option<HostIdentity>, HostFailure> {
        self.identities
            .get(&who.did().to_string())
            .cloned()
            .ok_or_else(|| missing("an identity read"))
    }
}
