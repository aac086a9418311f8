//! `Claim/$submit`: the provider's bundle is stored encrypted like every record (the Claim in
//! the patient's compartment, through the access layer), the node submits the contract's
//! `submit` message, signed as the provider's submitter, and the decision comes back as a
//! ClaimResponse (and an ExplanationOfBenefit for the patient) once its block is durable:
//! payment, if any, moved in the same transaction.

use carechain_crypto::{Did, Hash};
use carechain_service::{NodeTx, Purpose, Service, ServiceError, Session};
use carechain_types::{Outcome, Payload, RejectReason, Role};
use serde_json::{Value, json};

use crate::{
    BundleProblem, ClaimBundle, Evidence, claim_response, explanation_of_benefit,
    inputs_commitment, submit_message,
};

/// Why a submission got no decision.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The bundle is not a claim that can be decided (each problem named).
    #[error("the claim bundle is invalid")]
    Invalid(Vec<BundleProblem>),
    /// The caller is not a provider (a practitioner or an organization).
    #[error("only a practitioner or an organization submits claims")]
    NotAProvider,
    /// The contract refused the submission (no such contract, this node is no accepted
    /// submitter, ...): nothing was decided.
    #[error("the insurer's contract refused the claim: {0}")]
    Refused(String),
    /// Storing the claim or reaching the ledger failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// A decided claim.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// The ClaimResponse as stored.
    pub claim_response: Value,
    /// The patient's ExplanationOfBenefit as stored.
    pub explanation_of_benefit: Value,
    /// What the contract paid the provider (minor units).
    pub paid: u64,
    /// Fuel the decision burned.
    pub fuel_used: u64,
}

impl Submitted {
    /// The decision in `node_tx`'s receipt, as stored.
    pub(crate) fn of(decision: &Value, node_tx: &NodeTx, response: Value, eob: Value) -> Submitted {
        Submitted {
            paid: decision["paid"].as_u64().unwrap_or(0),
            fuel_used: node_tx.receipt().fuel_used,
            claim_response: response,
            explanation_of_benefit: eob,
        }
    }
}

/// Claims, on a node's records service.
pub struct Claims<'a> {
    pub(crate) service: &'a Service,
}

fn salt() -> Result<[u8; 32], ServiceError> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|_| ServiceError::bad("no randomness for the claim's salt"))?;
    Ok(s)
}

impl Claims<'_> {
    /// Claims through `service`.
    pub fn new(service: &Service) -> Claims<'_> {
        Claims { service }
    }

    pub(crate) fn decimals(&self) -> u8 {
        self.service.node().store().genesis().token.decimals
    }

    /// Submits a claim bundle for the caller (the rendering provider) and returns the
    /// decision as FHIR.
    pub fn submit(&self, s: &Session, bundle: &Value) -> Result<Submitted, SubmitError> {
        if !matches!(s.role, Role::Practitioner | Role::Organization) {
            return Err(SubmitError::NotAProvider);
        }
        let decimals = self.decimals();
        let claim = ClaimBundle::parse(bundle, decimals).map_err(SubmitError::Invalid)?;
        let code_hash = self.code_hash(&claim.contract)?;
        self.accepted_here(&claim.contract, s)?;
        let purpose = Purpose::treatment();
        // The Claim is a record of the patient's: encrypted, anchored, under her consent.
        let stored = self
            .service
            .write(s, &purpose, "Claim", None, None, claim.claim.clone())?;
        let claim_id = stored.id().to_string();
        let salt = salt()?;
        let msg = submit_message(&claim, &s.did, &inputs_commitment(&salt, bundle));
        let node_tx = self.service.submit_node_tx(Payload::Execute {
            contract: claim.contract,
            msg: msg.to_string().into_bytes(),
            funds: 0,
        })?;
        let decided = decision_of(&node_tx)?;
        let evidence = Evidence::of(
            &node_tx,
            claim.contract,
            code_hash,
            salt,
            self.inclusion(&node_tx),
        );
        let decision = &decided["decision"];
        let response = claim_response(&claim, &claim_id, decision, &evidence, decimals);
        let response = self
            .service
            .write(s, &purpose, "ClaimResponse", None, None, response)?
            .resource
            .unwrap_or(Value::Null);
        let response_id = response["id"].as_str().unwrap_or_default();
        let eob = explanation_of_benefit(
            &claim,
            &claim_id,
            response_id,
            decision,
            &evidence,
            decimals,
        );
        let eob = self.store(s, "ExplanationOfBenefit", None, eob)?;
        Ok(Submitted::of(decision, &node_tx, response, eob))
    }

    /// Stores `resource` as a new `rt`, or as the next version of `rt/{id}`; as stored.
    pub(crate) fn store(
        &self,
        s: &Session,
        rt: &str,
        id: Option<&str>,
        mut resource: Value,
    ) -> Result<Value, ServiceError> {
        if let Some(id) = id {
            resource["id"] = json!(id);
        }
        let stored = self
            .service
            .write(s, &Purpose::treatment(), rt, id, None, resource)?;
        Ok(stored.resource.unwrap_or(Value::Null))
    }

    /// Refuses, before anything is stored, a claim the contract would refuse from this node:
    /// the insurer must list this node as a submitter (or the caller be this node's own
    /// identity).
    fn accepted_here(&self, contract: &Hash, s: &Session) -> Result<(), SubmitError> {
        let me = self.submitter().to_string();
        if s.did.to_string() == me {
            return Ok(());
        }
        let answer = self
            .service
            .node()
            .ledger()
            .query_contract(contract, br#"{"config":{}}"#)
            .map_err(|e| ServiceError::internal("ledger", e))?;
        let config: Value = match answer.result {
            Ok((data, _)) => serde_json::from_slice(&data).unwrap_or(Value::Null),
            Err(r) => return Err(SubmitError::Refused(r.message())),
        };
        let listed = config["submitters"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(me.as_str())));
        if listed {
            Ok(())
        } else {
            Err(SubmitError::Refused(format!(
                "the insurer does not accept claims from this node ({me}): it must add it as a submitter"
            )))
        }
    }

    /// The code hash of the contract at `address` (refused when there is none).
    fn code_hash(&self, address: &Hash) -> Result<Hash, SubmitError> {
        let snap = self
            .service
            .node()
            .snapshot()
            .map_err(|e| ServiceError::internal("storage", e))?;
        match carechain_state::contract(&snap, address) {
            Ok(Some(i)) => Ok(i.code),
            Ok(None) => Err(SubmitError::Refused(format!(
                "no contract at contract:{}",
                address.to_hex()
            ))),
            Err(e) => Err(ServiceError::internal("state", e).into()),
        }
    }

    /// The deciding transaction's inclusion under the latest checkpoint.
    pub(crate) fn inclusion(&self, tx: &NodeTx) -> Value {
        match tx.receipt().outcome {
            Outcome::Applied { log_index } => {
                carechain_service::log_inclusion(self.service.node(), log_index)
                    .unwrap_or(Value::Null)
            }
            Outcome::Rejected(_) => Value::Null,
        }
    }

    /// The did of this node (the submitter an insurer must accept).
    pub fn submitter(&self) -> Did {
        self.service.node().ledger().node_key().did()
    }
}

/// The contract's reply in the receipt of `node_tx`, or why it refused.
fn decision_of(node_tx: &NodeTx) -> Result<Value, SubmitError> {
    let r = node_tx.receipt();
    match &r.outcome {
        Outcome::Applied { .. } => serde_json::from_slice(&r.data)
            .map_err(|_| SubmitError::Refused("the contract's reply is not JSON".into())),
        Outcome::Rejected(RejectReason::ContractFailed(f)) => {
            Err(SubmitError::Refused(f.message()))
        }
        Outcome::Rejected(reason) => Err(SubmitError::Refused(reason.message())),
    }
}
