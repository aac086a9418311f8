//! The custodian's side: check a node's request, decide for its user with the one access
//! layer, audit, answer signed.

use std::time::Duration;

use carechain_crypto::{Namespace, sha256};
use carechain_node::now_ms;
use carechain_state::{Identity, NodeEntry};
use carechain_types::{Role, encode};
use serde_json::Value;

use super::{
    MAX_PEER_LAG, MAX_PEER_REQUEST, PEER_CATCH_UP_MS, PEER_CLOCK_SKEW_MS, PeerAnswer, PeerOutcome,
    PeerQuery, PeerRefusal, PeerRequest, SignedPeerRequest,
};
use crate::{
    Interaction, Outcome, Purpose, Service, ServiceError, Session,
    audit::AuditEntry,
    auth::{
        CHALLENGE_TTL_MS, Origin, PeerOrigin, Scope, SignInProof, challenge_field,
        verify_assertion_signature,
    },
    session::{TOKEN_TTL_MS, WEB_SESSION_TTL_MS, organization_of},
};

/// Nonces remembered at most (each for [`PEER_CLOCK_SKEW_MS`] twice over).
const MAX_NONCES: usize = 200_000;

type Refused = (PeerRefusal, String);

fn refuse(r: PeerRefusal, msg: impl Into<String>) -> Refused {
    (r, msg.into())
}

/// Remembered request nonces, with when they may be forgotten.
#[derive(Default)]
pub(crate) struct Nonces(parking_lot::Mutex<std::collections::HashMap<[u8; 16], u64>>);

impl Nonces {
    /// Whether `nonce` is fresh (and remembers it until `forget_at`).
    fn fresh(&self, nonce: [u8; 16], now: u64, forget_at: u64) -> bool {
        let mut m = self.0.lock();
        if m.len() >= MAX_NONCES {
            m.retain(|_, t| *t > now);
        }
        if m.len() >= MAX_NONCES {
            return false;
        }
        m.insert(nonce, forget_at).is_none()
    }
}

impl Service {
    /// Answers a node's request (`POST /v1/peer`): always a signed answer, served or refused.
    pub fn serve_peer(&self, body: &[u8]) -> Vec<u8> {
        let (hash, height, outcome) = match decode(body) {
            Err(r) => (sha256(body), self.node.store().head(), Err(r)),
            Ok(signed) => {
                let hash = signed.hash();
                let (height, outcome) = self.answer(&signed);
                (hash, height, outcome)
            }
        };
        let outcome = match outcome {
            Ok(resources) => PeerOutcome::Served {
                resources: serde_json::to_vec(&resources).unwrap_or_else(|_| b"[]".to_vec()),
            },
            Err((refusal, message)) => PeerOutcome::Refused { refusal, message },
        };
        let answer = PeerAnswer {
            request: hash,
            custodian: self.key.public(),
            height,
            outcome,
        };
        encode(&answer.sign(&self.key))
    }

    /// Checks and serves a decoded request: the height decided at, and the records or why not.
    fn answer(&self, signed: &SignedPeerRequest) -> (u64, Result<Vec<Value>, Refused>) {
        let r = &signed.request;
        let head = self.node.store().head();
        if r.chain_id != self.node.store().genesis().chain_id || r.to != self.key.public() {
            return (
                head,
                Err(refuse(
                    PeerRefusal::Malformed,
                    "the request is for another chain or node",
                )),
            );
        }
        let Some(from) = self.registered_node(&r.from) else {
            return (
                head,
                Err(refuse(
                    PeerRefusal::UnknownNode,
                    "the requester is not a node registered by an organization",
                )),
            );
        };
        if r.from
            .verify(Namespace::PeerRequest, &encode(r), &signed.signature)
            .is_err()
        {
            return (
                head,
                Err(refuse(
                    PeerRefusal::BadSignature,
                    "the request's signature does not verify under the node's key",
                )),
            );
        }
        // From here the requester is an authenticated node: a refusal is audited in the
        // patient's log, as any refused access is.
        let local = self.linked_patient(&r.patient.did());
        let (height, result) = match self.admit(r, &from) {
            Err(refused) => (self.node.store().head(), Err(refused)),
            Ok((height, session)) => (height, self.run_query(&session, r, local.as_deref())),
        };
        if let Err((refusal, message)) = &result
            && *refusal != PeerRefusal::Forbidden
        {
            let node_session = Session {
                did: r.from.did(),
                role: Role::Validator,
                organization: None,
                scopes: Vec::new(),
                expires_ms: 0,
                key: r.from,
                origin: Origin {
                    proof: None,
                    peer: Some(PeerOrigin {
                        node: r.from.did(),
                        height,
                    }),
                },
            };
            let what = local.clone().unwrap_or_else(|| "Patient".into());
            let note = format!(
                "refused a node's request for {}: {} ({message})",
                r.actor.did(),
                refusal.code()
            );
            self.audit(
                &node_session,
                &peer_purpose(r),
                AuditEntry::new(
                    query_interaction(&r.query),
                    &what,
                    local.as_deref(),
                    Outcome::Refused,
                    &note,
                ),
            );
        }
        // Records leave this node only once their disclosure is durable in her log: a crash
        // right after answering must not lose the only trace of a cross-organization access.
        self.flush_audit();
        (height, result)
    }

    /// The registered node entry of `key`, if an organization registered it.
    fn registered_node(&self, key: &carechain_crypto::PublicKey) -> Option<NodeEntry> {
        self.node
            .store()
            .with_durable(|d| carechain_state::node_entry(d.snapshot, key))
            .ok()?
            .ok()?
            .filter(|n| !n.organizations.is_empty())
    }

    /// Freshness, height and the user's sign-in: the height to decide at and the session.
    fn admit(&self, r: &PeerRequest, from: &NodeEntry) -> Result<(u64, Session), Refused> {
        let now = now_ms();
        if r.issued_ms.abs_diff(now) > PEER_CLOCK_SKEW_MS
            || !self
                .peer_nonces
                .fresh(r.nonce, now, now + 2 * PEER_CLOCK_SKEW_MS)
        {
            return Err(refuse(
                PeerRefusal::Replayed,
                "the request was seen before or its time is off",
            ));
        }
        let mut head = self.node.store().head();
        if r.height > head {
            // Never decide on an older state than the requester saw: catch up first.
            head = self.node.wait_past(
                r.height.saturating_sub(1),
                Duration::from_millis(PEER_CATCH_UP_MS),
            );
            if r.height > head {
                return Err(refuse(
                    PeerRefusal::Behind,
                    format!(
                        "this node is at height {head}, behind the request's {}",
                        r.height
                    ),
                ));
            }
        }
        if r.height + MAX_PEER_LAG < head {
            return Err(refuse(
                PeerRefusal::StaleHeight,
                format!(
                    "the request's height {} trails this node's {head} by more than {MAX_PEER_LAG}",
                    r.height
                ),
            ));
        }
        let actor = self
            .identity(&r.actor.did())
            .filter(|i| i.active)
            .ok_or_else(|| refuse(PeerRefusal::BadActor, "the user is not an active identity"))?;
        let expires = self.check_proof(r, from, &actor, now)?;
        let organization = organization_of(&actor);
        // A node speaks only for its organizations' members; a patient may sign in anywhere.
        if actor.role != Role::Patient
            && !organization.is_some_and(|o| from.organizations.contains(&o.public_key()))
        {
            return Err(refuse(
                PeerRefusal::BadActor,
                "the user is not of an organization the requesting node serves",
            ));
        }
        let scope = match actor.role {
            Role::Patient => "patient/*.rs",
            _ => "user/*.rs",
        };
        let session = Session {
            did: actor.id.did(),
            role: actor.role,
            organization,
            scopes: vec![Scope::parse(scope).expect("constant scope")],
            expires_ms: expires,
            key: actor.current_key,
            origin: Origin {
                proof: None,
                peer: Some(PeerOrigin {
                    node: r.from.did(),
                    height: head,
                }),
            },
        };
        Ok((head, session))
    }

    /// Verifies the user's signed sign-in at the requesting node: by her current key, with the
    /// node's token URL as audience, within a session's lifetime. Returns when it ends.
    fn check_proof(
        &self,
        r: &PeerRequest,
        from: &NodeEntry,
        actor: &Identity,
        now: u64,
    ) -> Result<u64, Refused> {
        let audience = format!("{}/auth/token", from.endpoint.trim_end_matches('/'));
        let bad = |m: &str| refuse(PeerRefusal::BadActor, m);
        let ends = match &r.proof {
            SignInProof::Challenge { text, signature } => {
                let field = |name: &str| challenge_field(text, name);
                if field("audience") != Some(audience.as_str())
                    || field("did") != Some(actor.id.did().to_string().as_str())
                {
                    return Err(bad(
                        "the sign-in was not made by this user at the requesting node",
                    ));
                }
                let expires: u64 = field("expires")
                    .and_then(|e| e.parse().ok())
                    .ok_or_else(|| bad("the sign-in has no expiry"))?;
                actor
                    .current_key
                    .verify(Namespace::Challenge, text.as_bytes(), signature)
                    .map_err(|_| bad("the sign-in signature does not verify"))?;
                expires.saturating_sub(CHALLENGE_TTL_MS) + WEB_SESSION_TTL_MS
            }
            SignInProof::Assertion { jwt } => {
                let a = verify_assertion_signature(jwt, &audience, |d| {
                    (*d == actor.id.did()).then_some(actor.current_key)
                })
                .map_err(|_| bad("the client assertion does not verify for this node"))?;
                a.exp.saturating_mul(1000) + TOKEN_TTL_MS
            }
        };
        if now > ends {
            return Err(bad("the user's sign-in has expired"));
        }
        Ok(ends)
    }

    /// Runs the query for the user, through the same interactions a local user gets.
    fn run_query(
        &self,
        s: &Session,
        r: &PeerRequest,
        local: Option<&str>,
    ) -> Result<Vec<Value>, Refused> {
        let Some(patient) = local else {
            // No record of hers is held here (any more): nothing to serve.
            return Ok(Vec::new());
        };
        let id = patient.trim_start_matches("Patient/");
        let purpose = peer_purpose(r);
        let forbidden = |e: ServiceError| refuse(PeerRefusal::Forbidden, e.message);
        match &r.query {
            PeerQuery::Search {
                resource_type,
                params,
            } => {
                let mut params = params.clone();
                params.retain(|(k, _)| !k.starts_with("_include") && !k.starts_with("_revinclude"));
                let link = if resource_type == "Patient" {
                    ("_id".to_string(), id.to_string())
                } else {
                    let p = carechain_fhir::compartment::patient_link(resource_type).ok_or_else(
                        || {
                            refuse(
                                PeerRefusal::Malformed,
                                "the type is not in the Patient compartment",
                            )
                        },
                    )?;
                    (p.to_string(), patient.to_string())
                };
                params.insert(0, link);
                let bundle = self
                    .search(s, &purpose, resource_type, &params, "")
                    .map_err(forbidden)?;
                Ok(bundle["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"].clone())
                    .collect())
            }
            PeerQuery::Everything => self.everything(s, &purpose, id).map_err(forbidden),
            PeerQuery::AccessLog => self.access_log(s, id).map_err(forbidden),
        }
    }
}

fn decode(body: &[u8]) -> Result<SignedPeerRequest, Refused> {
    if body.len() > MAX_PEER_REQUEST {
        return Err(refuse(PeerRefusal::Malformed, "the request is too large"));
    }
    borsh::from_slice(body).map_err(|_| refuse(PeerRefusal::Malformed, "not a peer request"))
}

fn peer_purpose(r: &PeerRequest) -> Purpose {
    Purpose {
        code: if r.purpose.is_empty() || r.purpose.len() > 16 {
            "TREAT".into()
        } else {
            r.purpose.clone()
        },
        break_glass_reason: None,
    }
}

fn query_interaction(q: &PeerQuery) -> Interaction {
    match q {
        PeerQuery::AccessLog => Interaction::AccessLog,
        _ => Interaction::SearchType,
    }
}
