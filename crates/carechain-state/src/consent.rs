//! Patients' consents as state: granted and revoked by transactions the patient signs, read
//! by every node at the same height. No health data: a consent names the patient's identity
//! (a key), the grantee's identity, purposes, data-class codes and a period.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, PublicKey};
use carechain_types::{
    ConsentPurpose, ConsentRule, MAX_CONSENT_DELEGATES, MAX_CONSENTS_PER_PATIENT, RejectReason,
    Role, encode,
};

use crate::exec::{Identity, Lookup};
use crate::{StateView, ViewError};

/// State writes of an accepted payload.
pub(crate) type Writes = Vec<(Vec<u8>, Vec<u8>)>;
/// A payload's writes, or why it is rejected (a state read failure is fatal to the block).
pub(crate) type Decided = Result<Result<Writes, RejectReason>, ViewError>;

/// An access to decide against a patient's consents.
#[derive(Clone, Copy, Debug)]
pub struct ConsentQuery<'a> {
    /// The patient whose record it is (her identity).
    pub patient: &'a PublicKey,
    /// Who asks: the identity and the organization it acts for.
    pub who: &'a [PublicKey],
    /// Why.
    pub purpose: ConsentPurpose,
    /// The record's data class (`None`: unclassified).
    pub class: Option<&'a str>,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
}

/// A consent as the ledger holds it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ConsentState {
    /// Its id (chosen by the patient).
    pub id: Hash,
    /// The patient it belongs to (her identity).
    pub patient: PublicKey,
    /// What it allows.
    pub rule: ConsentRule,
    /// The height of the block that granted it.
    pub granted_at: u64,
    /// The height of the block that revoked it: it denies from there on.
    pub revoked_at: Option<u64>,
}

impl ConsentState {
    /// Whether it was in force in the state after block `height` (granted at or before,
    /// not revoked at or before).
    pub fn in_force_at(&self, height: u64) -> bool {
        self.granted_at <= height && self.revoked_at.is_none_or(|r| r > height)
    }
}

/// `consent/<patient key><id>` → [`ConsentState`].
pub fn consent_key(patient: &PublicKey, id: &Hash) -> Vec<u8> {
    [b"consent/".as_slice(), &patient.0, &id.0].concat()
}

/// `consents/<patient key>` → the ids of her consents, in the order granted.
pub fn consent_index_key(patient: &PublicKey) -> Vec<u8> {
    [b"consents/".as_slice(), &patient.0].concat()
}

/// `consent-delegates/<patient key>` → the identities that may grant and revoke her
/// consents, in the order delegated.
pub fn delegates_key(patient: &PublicKey) -> Vec<u8> {
    [b"consent-delegates/".as_slice(), &patient.0].concat()
}

fn decode_keys(value: Option<Vec<u8>>) -> Result<Vec<PublicKey>, ViewError> {
    value.map_or(Ok(Vec::new()), |bytes| {
        Vec::<PublicKey>::try_from_slice(&bytes)
            .map_err(|_| ViewError::Corrupt("consent delegates".into()))
    })
}

/// The identities `patient` lets grant and revoke consents for her.
pub fn consent_delegates<V: StateView + ?Sized>(
    view: &V,
    patient: &PublicKey,
) -> Result<Vec<PublicKey>, ViewError> {
    decode_keys(view.get(&delegates_key(patient))?)
}

fn decode_consent(bytes: Vec<u8>) -> Result<ConsentState, ViewError> {
    ConsentState::try_from_slice(&bytes).map_err(|_| ViewError::Corrupt("consent".into()))
}

fn decode_index(value: Option<Vec<u8>>) -> Result<Vec<Hash>, ViewError> {
    value.map_or(Ok(Vec::new()), |bytes| {
        Vec::<Hash>::try_from_slice(&bytes).map_err(|_| ViewError::Corrupt("consents".into()))
    })
}

/// Every consent of `patient` in `view` (in force or not), in the order granted.
pub fn consents_of<V: StateView + ?Sized>(
    view: &V,
    patient: &PublicKey,
) -> Result<Vec<ConsentState>, ViewError> {
    consents_in(&crate::exec::ViewLookup(view), patient)
}

pub(crate) fn consents_in(
    o: &dyn Lookup,
    patient: &PublicKey,
) -> Result<Vec<ConsentState>, ViewError> {
    decode_index(o.lookup(&consent_index_key(patient))?)?
        .iter()
        .filter_map(|id| o.lookup(&consent_key(patient, id)).transpose())
        .map(|v| v.and_then(decode_consent))
        .collect()
}

/// Whether the patient's consents in `view`, as of the state after block `height`, allow
/// the access `q`: one consent in force that allows it.
pub fn consent_allows<V: StateView + ?Sized>(
    view: &V,
    height: u64,
    q: &ConsentQuery<'_>,
) -> Result<bool, ViewError> {
    allows_in(&crate::exec::ViewLookup(view), height, q)
}

pub(crate) fn allows_in(
    o: &dyn Lookup,
    height: u64,
    q: &ConsentQuery<'_>,
) -> Result<bool, ViewError> {
    Ok(consents_in(o, q.patient)?
        .iter()
        .any(|c| c.in_force_at(height) && c.rule.allows(q.who, q.purpose, q.class, q.at_ms)))
}

/// Whether `signer` may sign consent changes of `patient`: she herself (an active patient),
/// or an identity she delegated to. `Err`: why not.
fn may_sign_for(
    o: &dyn Lookup,
    signer: &Identity,
    patient: &PublicKey,
) -> Result<Result<(), RejectReason>, ViewError> {
    if signer.id == *patient {
        return Ok(if signer.role == Role::Patient {
            Ok(())
        } else {
            Err(RejectReason::Unauthorized)
        });
    }
    let Some(p) = crate::exec::read_identity(o, patient)? else {
        return Ok(Err(RejectReason::UnknownSubject));
    };
    if p.role != Role::Patient || !p.active {
        return Ok(Err(RejectReason::UnknownSubject));
    }
    let delegated = decode_keys(o.lookup(&delegates_key(patient))?)?.contains(&signer.id);
    Ok(if delegated {
        Ok(())
    } else {
        Err(RejectReason::Unauthorized)
    })
}

/// The state writes of a grant of `patient`'s consent by `signer`, or why it is rejected.
pub(crate) fn grant(
    o: &dyn Lookup,
    signer: &Identity,
    patient: &PublicKey,
    id: Hash,
    rule: &ConsentRule,
    height: u64,
) -> Decided {
    if let Err(r) = may_sign_for(o, signer, patient)? {
        return Ok(Err(r));
    }
    if !rule.is_well_formed() {
        return Ok(Err(RejectReason::Malformed));
    }
    let grantee = crate::exec::read_identity(o, &rule.grantee)?;
    if !grantee.is_some_and(|g| g.active) {
        return Ok(Err(RejectReason::UnknownSubject));
    }
    let key = consent_key(patient, &id);
    if o.lookup(&key)?.is_some() {
        return Ok(Err(RejectReason::ConsentExists));
    }
    let mut index = decode_index(o.lookup(&consent_index_key(patient))?)?;
    if index.len() >= MAX_CONSENTS_PER_PATIENT {
        return Ok(Err(RejectReason::TooManyConsents));
    }
    index.push(id);
    let state = ConsentState {
        id,
        patient: *patient,
        rule: rule.clone(),
        granted_at: height,
        revoked_at: None,
    };
    Ok(Ok(vec![
        (key, encode(&state)),
        (consent_index_key(patient), encode(&index)),
    ]))
}

/// The state write of a revocation of `patient`'s consent `id` by `signer`, or why it is
/// rejected.
pub(crate) fn revoke(
    o: &dyn Lookup,
    signer: &Identity,
    patient: &PublicKey,
    id: Hash,
    height: u64,
) -> Decided {
    if let Err(r) = may_sign_for(o, signer, patient)? {
        return Ok(Err(r));
    }
    let key = consent_key(patient, &id);
    let Some(bytes) = o.lookup(&key)? else {
        return Ok(Err(RejectReason::UnknownConsent));
    };
    let mut state = decode_consent(bytes)?;
    if state.revoked_at.is_some() {
        return Ok(Err(RejectReason::ConsentRevoked));
    }
    state.revoked_at = Some(height);
    Ok(Ok(vec![(key, encode(&state))]))
}

/// The state write of a patient's (`signer`) delegation to `delegate`, or of its withdrawal.
pub(crate) fn delegate(
    o: &dyn Lookup,
    signer: &Identity,
    delegate: &PublicKey,
    allowed: bool,
) -> Decided {
    if signer.role != Role::Patient {
        return Ok(Err(RejectReason::Unauthorized));
    }
    let mut list = decode_keys(o.lookup(&delegates_key(&signer.id))?)?;
    if allowed {
        if *delegate == signer.id || list.contains(delegate) {
            return Ok(Err(RejectReason::Malformed));
        }
        if !crate::exec::read_identity(o, delegate)?.is_some_and(|d| d.active) {
            return Ok(Err(RejectReason::UnknownSubject));
        }
        if list.len() >= MAX_CONSENT_DELEGATES {
            return Ok(Err(RejectReason::TooManyEntries));
        }
        list.push(*delegate);
    } else {
        let before = list.len();
        list.retain(|d| d != delegate);
        if list.len() == before {
            return Ok(Err(RejectReason::UnknownSubject));
        }
    }
    Ok(Ok(vec![(delegates_key(&signer.id), encode(&list))]))
}
