//! Validator-set governance: proposals, approvals, and the schedule of validator sets by
//! height that consensus and block checks read.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, PublicKey};
use carechain_types::{MAX_VALIDATORS, ValidatorChange};

use crate::{StateView, ViewError};

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
    pub fn schedule(&mut self, change: &ValidatorChange, height: u64) -> bool {
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
                (ValidatorChange::Add { key }, Err(at)) => set.validators.insert(at, *key),
                (ValidatorChange::Remove { .. }, Ok(at)) => {
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

/// A proposed validator change and who approved it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    /// The change.
    pub change: ValidatorChange,
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
