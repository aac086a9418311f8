//! `Claim/$inquire` (as the Da Vinci PAS names it): the provider asks again about a claim it
//! submitted; when the insurer has decided what was pended since, the stored ClaimResponse and
//! ExplanationOfBenefit are updated to the new decision, with the evidence of the insurer's
//! deciding transaction (which `verify-claim` checks as it checks a submission).

use carechain_crypto::Hash;
use carechain_service::{NodeTx, Purpose, ServiceError, Session};
use carechain_types::{Outcome, Payload};
use serde_json::{Value, json};

use crate::{
    ClaimBundle, Claims, Evidence, SubmitError, Submitted, claim_id, claim_response, evidence_of,
    explanation_of_benefit,
};

fn first(bundle: &Value) -> Option<Value> {
    bundle["entry"][0]["resource"]
        .is_object()
        .then(|| bundle["entry"][0]["resource"].clone())
}

impl Claims<'_> {
    fn find(
        &self,
        s: &Session,
        rt: &str,
        params: &[(&str, String)],
    ) -> Result<Option<Value>, ServiceError> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Ok(first(&self.service.search(
            s,
            &Purpose::treatment(),
            rt,
            &params,
            "",
        )?))
    }

    /// The transaction of block `height` that last decided `claim` at `contract`.
    fn deciding_tx(
        &self,
        contract: &Hash,
        claim: &str,
        height: u64,
    ) -> Result<Option<NodeTx>, ServiceError> {
        let store = |e| ServiceError::internal("storage", e);
        let snap = self.service.node().snapshot().map_err(store)?;
        let (Some(block), Some(receipts)) = (
            snap.block(height).map_err(store)?,
            snap.receipts(height).map_err(store)?,
        ) else {
            return Ok(None);
        };
        let position = block.txs.iter().zip(&receipts).rposition(|(t, r)| {
            let Payload::Execute {
                contract: c, msg, ..
            } = &t.body.payload
            else {
                return false;
            };
            let m: Value = serde_json::from_slice(msg).unwrap_or_default();
            c == contract
                && matches!(r.outcome, Outcome::Applied { .. })
                && (m["decide"]["claim_id"] == claim || m["submit"]["claim_id"] == claim)
        });
        Ok(position.map(|position| NodeTx {
            hash: block.txs[position].hash(),
            block,
            position,
            receipts,
        }))
    }

    /// The current decision of the claim in `bundle` (submitted by the caller), stored as FHIR.
    pub fn inquire(&self, s: &Session, bundle: &Value) -> Result<Submitted, SubmitError> {
        let decimals = self.decimals();
        let claim = ClaimBundle::parse(bundle, decimals).map_err(SubmitError::Invalid)?;
        let id = claim_id(&s.did, &claim.identifier);
        // The claim is found by its identifier (`ClaimBundle` falls back to its id, which the
        // stored Claim does not keep).
        if !claim.claim["identifier"][0]["value"].is_string() {
            return Err(SubmitError::Refused(
                "an inquiry names the claim by its identifier".into(),
            ));
        }
        let identifier = claim.identifier.clone();
        let refused = |m: &str| SubmitError::Refused(m.to_string());
        let stored = self
            .find(
                s,
                "Claim",
                &[
                    ("identifier", identifier),
                    ("patient", claim.patient.clone()),
                ],
            )?
            .ok_or_else(|| refused("no such claim was submitted at this node"))?;
        let stored_id = stored["id"].as_str().unwrap_or_default().to_string();
        let mut response = self
            .find(
                s,
                "ClaimResponse",
                &[("request", format!("Claim/{stored_id}"))],
            )?
            .ok_or_else(|| refused("the claim has no response at this node"))?;
        let old = evidence_of(&response).map_err(|e| refused(&e))?;
        let msg = json!({ "claim": { "claim_id": id } });
        let answer = self
            .service
            .node()
            .ledger()
            .query_contract(&claim.contract, msg.to_string().as_bytes())
            .map_err(|e| ServiceError::internal("ledger", e))?;
        let current: Value = match answer.result {
            Ok((data, _)) => serde_json::from_slice(&data).unwrap_or(Value::Null),
            Err(r) => return Err(SubmitError::Refused(r.message())),
        };
        let height = current["height"]
            .as_u64()
            .ok_or_else(|| refused("the insurer has no such claim"))?;
        let unchanged = Submitted {
            paid: current["paid"].as_u64().unwrap_or(0),
            fuel_used: old.receipt.fuel_used,
            claim_response: response.clone(),
            explanation_of_benefit: Value::Null,
        };
        if height == old.header.height {
            return Ok(unchanged);
        }
        let node_tx = self
            .deciding_tx(&claim.contract, &id, height)?
            .ok_or_else(|| refused("the insurer's deciding transaction is not found"))?;
        let reply: Value = serde_json::from_slice(&node_tx.receipt().data).unwrap_or_default();
        let decision = &reply["decision"];
        let evidence = Evidence::of(
            &node_tx,
            claim.contract,
            old.code_hash,
            old.salt,
            self.inclusion(&node_tx),
        );
        let response_id = response["id"].as_str().unwrap_or_default().to_string();
        let updated = claim_response(&claim, &stored_id, decision, &evidence, decimals);
        response = self.store(s, "ClaimResponse", Some(&response_id), updated)?;
        let mut eob = Value::Null;
        if let Some(old_eob) = self.find(
            s,
            "ExplanationOfBenefit",
            &[("claim", format!("Claim/{stored_id}"))],
        )? {
            let eob_id = old_eob["id"].as_str().unwrap_or_default().to_string();
            let e = explanation_of_benefit(
                &claim,
                &stored_id,
                &response_id,
                decision,
                &evidence,
                decimals,
            );
            eob = self.store(s, "ExplanationOfBenefit", Some(&eob_id), e)?;
        }
        Ok(Submitted::of(decision, &node_tx, response, eob))
    }
}
