//! Identity payloads: register, rotate a key, deactivate.

use carechain_crypto::{Namespace, PublicKey};
use carechain_types::{MAX_CHAIN_ID, RejectReason, Role, rotation_proof_message};

use crate::{
    StateView,
    exec::{BlockContext, Identity, Lookup, Overlay, TxResult, put_identity, read_identity},
    identity_key, key_index_key,
};

pub(crate) fn register<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    signer: Option<&Identity>,
    signer_id: PublicKey,
    subject: PublicKey,
    role: Role,
    parent: Option<PublicKey>,
) -> TxResult {
    if subject.validate().is_err() {
        return Ok(Err(RejectReason::InvalidKey));
    }
    if o.lookup(&identity_key(&subject))?.is_some() || o.lookup(&key_index_key(&subject))?.is_some()
    {
        return Ok(Err(RejectReason::AlreadyRegistered));
    }
    if let Some(p) = parent {
        match read_identity(o, &p)? {
            Some(org) if org.active && org.role == Role::Organization => {}
            _ => return Ok(Err(RejectReason::UnknownSubject)),
        }
    }
    let allowed = match signer {
        None => subject == signer_id && role == Role::Patient && parent.is_none(),
        Some(s) => match s.role {
            Role::Operator => true,
            Role::Organization => match role {
                Role::Practitioner | Role::Device => parent == Some(s.id),
                Role::Patient => parent.is_none(),
                _ => false,
            },
            _ => false,
        },
    };
    if !allowed {
        return Ok(Err(RejectReason::Unauthorized));
    }
    if ctx.rules.chain_id.len() > MAX_CHAIN_ID {
        return Ok(Err(RejectReason::Malformed));
    }
    let ident = Identity {
        id: subject,
        current_key: subject,
        role,
        parent,
        active: true,
        next_nonce: 0,
        registered_at: ctx.height,
        registered_by: signer_id,
        rotations: 0,
    };
    put_identity(o, &ident);
    o.changes
        .insert(key_index_key(&subject), Some(subject.0.to_vec()));
    Ok(Ok(()))
}

pub(crate) fn rotate<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    signer: Option<&Identity>,
    new_key: PublicKey,
    proof: &carechain_crypto::Signature,
    nonce: u64,
) -> TxResult {
    let Some(s) = signer else {
        return Ok(Err(RejectReason::UnknownSigner));
    };
    if new_key.validate().is_err() {
        return Ok(Err(RejectReason::InvalidKey));
    }
    if o.lookup(&key_index_key(&new_key))?.is_some() {
        return Ok(Err(RejectReason::KeyInUse));
    }
    let msg = rotation_proof_message(ctx.rules.chain_id, &s.id, &new_key, nonce);
    if new_key.verify(Namespace::KeyRotation, &msg, proof).is_err() {
        return Ok(Err(RejectReason::BadRotationProof));
    }
    let mut updated = s.clone();
    updated.current_key = new_key;
    updated.rotations += 1;
    put_identity(o, &updated);
    o.changes
        .insert(key_index_key(&new_key), Some(s.id.0.to_vec()));
    Ok(Ok(()))
}

pub(crate) fn deactivate<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    signer: Option<&Identity>,
    subject: PublicKey,
) -> TxResult {
    let Some(s) = signer else {
        return Ok(Err(RejectReason::UnknownSigner));
    };
    let Some(mut target) = read_identity(o, &subject)? else {
        return Ok(Err(RejectReason::UnknownSubject));
    };
    if !target.active {
        return Ok(Err(RejectReason::UnknownSubject));
    }
    let allowed = s.id == subject || s.role == Role::Operator || target.parent == Some(s.id);
    if !allowed {
        return Ok(Err(RejectReason::Unauthorized));
    }
    target.active = false;
    put_identity(o, &target);
    Ok(Ok(()))
}
