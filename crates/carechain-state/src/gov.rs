//! Governance: proposals, approvals, the schedule of validator sets by height that consensus
//! and block checks read, the token's issuers by height, and the transactions that propose
//! and approve changes (settled once two thirds of the set in force approve).

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, PublicKey};
use carechain_types::{
    EPOCH_LENGTH, GovernanceChange, MAX_VALIDATORS, RejectReason, Role, approval_quorum, encode,
    proposal_id,
};

use crate::exec::{BlockContext, Identity, Lookup, Overlay, TxResult, put_identity, read_identity};
use crate::token::{IssuerTerm, decode_issuer, issuer_key};
use crate::{StateView, ViewError, key_index_key};

/// `gov/validators` → [`ValidatorSchedule`]. Absent until the first change is approved: the
/// genesis validators are the set.
pub const SCHEDULE_KEY: &[u8] = b"gov/validators";

/// `gov/proposal/<id>` → [`Proposal`].
pub fn proposal_key(id: &Hash) -> Vec<u8> {
    [b"gov/proposal/".as_slice(), &id.0].concat()
}

/// One validator set and the first height it proposes and votes at.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ScheduledSet {
    /// First height of this set (0 for the genesis set).
    pub from_height: u64,
    /// Its members, sorted and distinct.
    pub validators: Vec<PublicKey>,
}

/// Every validator set of the chain, past and scheduled, by ascending first height. Kept
/// whole (one entry per approved change) so a validator catching up can check any past
/// epoch's certificates.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ValidatorSchedule {
    /// The sets; the first starts at height 0.
    pub sets: Vec<ScheduledSet>,
}

impl ValidatorSchedule {
    /// A schedule holding only the genesis set.
    pub fn genesis(validators: &[PublicKey]) -> ValidatorSchedule {
        let mut validators = validators.to_vec();
        validators.sort();
        validators.dedup();
        ValidatorSchedule {
            sets: vec![ScheduledSet {
                from_height: 0,
                validators,
            }],
        }
    }

    /// The set that proposes and votes at `height`.
    pub fn at(&self, height: u64) -> &[PublicKey] {
        self.sets
            .iter()
            .rev()
            .find(|s| s.from_height <= height)
            .map_or(&[], |s| s.validators.as_slice())
    }

    /// Applies `change` from `height` on: to the set in force then and to every set
    /// scheduled after it. Returns false (changing nothing) if a set would become empty or
    /// larger than [`MAX_VALIDATORS`], or the change adds a member or removes a non-member of
    /// the set in force at `height`.
    #[must_use]
    pub fn schedule(&mut self, change: &GovernanceChange, height: u64) -> bool {
        if !change.is_validator_change() {
            return false;
        }
        let mut next = self.clone();
        // The sets are sorted by first height: the set starting at `height` is at `first`,
        // or is inserted there as a copy of the set in force then.
        let first = next.sets.partition_point(|s| s.from_height < height);
        if next.sets.get(first).is_none_or(|s| s.from_height != height) {
            let validators = next.at(height).to_vec();
            next.sets.insert(
                first,
                ScheduledSet {
                    from_height: height,
                    validators,
                },
            );
        }
        for (i, set) in next.sets.iter_mut().enumerate().skip(first) {
            let found = set.validators.binary_search(change.key());
            match (change, found) {
                (GovernanceChange::AddValidator { key }, Err(at)) => {
                    set.validators.insert(at, *key)
                }
                (GovernanceChange::RemoveValidator { .. }, Ok(at)) => {
                    set.validators.remove(at);
                }
                // The set in force at `height` must be changed by it; a later set may already
                // agree (another change scheduled it), then it stays as it is.
                _ if i == first => return false,
                _ => {}
            }
            if set.validators.is_empty() || set.validators.len() > MAX_VALIDATORS {
                return false;
            }
        }
        *self = next;
        true
    }
}

/// A proposed governance change and who approved it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    /// The change.
    pub change: GovernanceChange,
    /// The height it takes effect at.
    pub effective_height: u64,
    /// The validator that proposed it.
    pub proposer: PublicKey,
    /// Height of the block that proposed it.
    pub proposed_at: u64,
    /// Validators that approved it (the proposer first), in order of approval.
    pub approvals: Vec<PublicKey>,
    /// Height of the block whose approval reached the quorum, once it did.
    pub approved_at: Option<u64>,
}

/// The validator schedule in `view` (the genesis set alone if no change was ever approved).
pub fn validator_schedule<V: StateView + ?Sized>(
    view: &V,
    genesis_validators: &[PublicKey],
) -> Result<ValidatorSchedule, ViewError> {
    decode_schedule(view.get(SCHEDULE_KEY)?, genesis_validators)
}

/// Whether `key` may propose the block at `height` on top of `view`: it is in the set in
/// force then (any key may when the chain has no genesis validators).
pub fn may_propose<V: StateView + ?Sized>(
    view: &V,
    genesis_validators: &[PublicKey],
    height: u64,
    key: &PublicKey,
) -> Result<bool, ViewError> {
    Ok(genesis_validators.is_empty()
        || validator_schedule(view, genesis_validators)?
            .at(height)
            .binary_search(key)
            .is_ok())
}

/// A proposal in `view`.
pub fn proposal<V: StateView + ?Sized>(view: &V, id: &Hash) -> Result<Option<Proposal>, ViewError> {
    decode_proposal(view.get(&proposal_key(id))?)
}

/// Decodes the value under [`SCHEDULE_KEY`].
pub(crate) fn decode_schedule(
    value: Option<Vec<u8>>,
    genesis_validators: &[PublicKey],
) -> Result<ValidatorSchedule, ViewError> {
    match value {
        None => Ok(ValidatorSchedule::genesis(genesis_validators)),
        Some(bytes) => ValidatorSchedule::try_from_slice(&bytes)
            .map_err(|_| ViewError::Corrupt("gov/validators".into())),
    }
}

/// Decodes the value under a [`proposal_key`].
pub(crate) fn decode_proposal(value: Option<Vec<u8>>) -> Result<Option<Proposal>, ViewError> {
    value
        .map(|bytes| {
            Proposal::try_from_slice(&bytes).map_err(|_| ViewError::Corrupt("gov/proposal".into()))
        })
        .transpose()
}

fn read_schedule(o: &dyn Lookup, ctx: &BlockContext<'_>) -> Result<ValidatorSchedule, ViewError> {
    decode_schedule(o.lookup(SCHEDULE_KEY)?, ctx.rules.genesis_validators)
}

fn read_proposal(o: &dyn Lookup, id: &Hash) -> Result<Option<Proposal>, ViewError> {
    decode_proposal(o.lookup(&proposal_key(id))?)
}

/// A governance signer must be in the set in force at this block (by identity id: a
/// validator that rotated its key still signs as itself).
fn current_validator(
    schedule: &ValidatorSchedule,
    ctx: &BlockContext<'_>,
    signer: &PublicKey,
) -> bool {
    schedule.at(ctx.height).binary_search(signer).is_ok()
}

pub(crate) fn propose_change<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    signer: PublicKey,
    change: &GovernanceChange,
    effective_height: u64,
) -> TxResult {
    let schedule = read_schedule(o, ctx)?;
    if !current_validator(&schedule, ctx, &signer) {
        return Ok(Err(RejectReason::NotValidator));
    }
    if effective_height <= ctx.height || !effective_height.is_multiple_of(EPOCH_LENGTH) {
        return Ok(Err(RejectReason::BadEffectiveHeight));
    }
    if change.key().validate().is_err() {
        return Ok(Err(RejectReason::InvalidKey));
    }
    if let GovernanceChange::AddValidator { key } = change {
        // A new validator is a fresh key or an identity registered as a validator.
        if o.lookup(&key_index_key(key))?.is_some() {
            match read_identity(o, key)? {
                Some(ident) if ident.role == Role::Validator && ident.active => {}
                _ => return Ok(Err(RejectReason::KeyInUse)),
            }
        }
    }
    let id = proposal_id(change, effective_height);
    if read_proposal(o, &id)?.is_some() {
        return Ok(Err(RejectReason::ProposalExists));
    }
    // The change must make sense for the set it would apply to, as scheduled now.
    if change.is_validator_change() {
        if !schedule.clone().schedule(change, effective_height) {
            return Ok(Err(RejectReason::InvalidValidatorSet));
        }
    } else if !issuer_change_fits(o, change)? {
        return Ok(Err(RejectReason::InvalidIssuerChange));
    }
    let proposal = Proposal {
        change: change.clone(),
        effective_height,
        proposer: signer,
        proposed_at: ctx.height,
        approvals: vec![signer],
        approved_at: None,
    };
    settle_proposal(o, ctx, schedule, id, proposal)
}

pub(crate) fn approve_change<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    signer: PublicKey,
    id: &Hash,
) -> TxResult {
    let schedule = read_schedule(o, ctx)?;
    if !current_validator(&schedule, ctx, &signer) {
        return Ok(Err(RejectReason::NotValidator));
    }
    let Some(mut proposal) = read_proposal(o, id)? else {
        return Ok(Err(RejectReason::UnknownProposal));
    };
    if proposal.approved_at.is_some() || proposal.approvals.contains(&signer) {
        return Ok(Err(RejectReason::AlreadyApproved));
    }
    if ctx.height >= proposal.effective_height {
        return Ok(Err(RejectReason::ProposalExpired));
    }
    proposal.approvals.push(signer);
    settle_proposal(o, ctx, schedule, *id, proposal)
}

/// Stores a proposal; if the approvals of members of the current set reach the quorum,
/// schedules its change (and registers a new validator's identity).
fn settle_proposal<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    mut schedule: ValidatorSchedule,
    id: Hash,
    mut proposal: Proposal,
) -> TxResult {
    let current = schedule.at(ctx.height);
    let approvals = proposal
        .approvals
        .iter()
        .filter(|k| current.binary_search(k).is_ok())
        .count();
    if approvals >= approval_quorum(current.len()) && !proposal.change.is_validator_change() {
        if !issuer_change_fits(o, &proposal.change)? {
            return Ok(Err(RejectReason::InvalidIssuerChange));
        }
        let key = issuer_key(proposal.change.key());
        let term = match proposal.change {
            GovernanceChange::AddIssuer { .. } => IssuerTerm {
                from_height: proposal.effective_height,
                until_height: None,
            },
            _ => match decode_issuer(o.lookup(&key)?)? {
                Some(t) => IssuerTerm {
                    until_height: Some(proposal.effective_height),
                    ..t
                },
                None => return Ok(Err(RejectReason::InvalidIssuerChange)),
            },
        };
        o.changes.insert(key, Some(encode(&term)));
        proposal.approved_at = Some(ctx.height);
    } else if approvals >= approval_quorum(current.len()) {
        if !schedule.schedule(&proposal.change, proposal.effective_height) {
            return Ok(Err(RejectReason::InvalidValidatorSet));
        }
        if let GovernanceChange::AddValidator { key } = &proposal.change
            && o.lookup(&key_index_key(key))?.is_none()
        {
            let ident = Identity {
                id: *key,
                current_key: *key,
                role: Role::Validator,
                parent: None,
                active: true,
                next_nonce: 0,
                registered_at: ctx.height,
                registered_by: proposal.proposer,
                rotations: 0,
            };
            put_identity(o, &ident);
            o.changes.insert(key_index_key(key), Some(key.0.to_vec()));
        }
        proposal.approved_at = Some(ctx.height);
        o.changes
            .insert(SCHEDULE_KEY.to_vec(), Some(encode(&schedule)));
    }
    o.changes.insert(proposal_key(&id), Some(encode(&proposal)));
    Ok(Ok(()))
}

/// Whether an issuer change applies to the issuers as they are: adding an identity that is
/// registered and not an issuer (or one removed), removing one with no removal scheduled.
fn issuer_change_fits(o: &dyn Lookup, change: &GovernanceChange) -> Result<bool, ViewError> {
    let term = decode_issuer(o.lookup(&issuer_key(change.key()))?)?;
    Ok(match change {
        GovernanceChange::AddIssuer { key } => {
            read_identity(o, key)?.is_some_and(|i| i.active)
                && term.is_none_or(|t| t.until_height.is_some())
        }
        GovernanceChange::RemoveIssuer { .. } => term.is_some_and(|t| t.until_height.is_none()),
        _ => false,
    })
}
