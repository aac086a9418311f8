//! Block execution: checks and applies each transaction, producing receipts, a change set and
//! the new state root.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{BatchItem, Hash, Namespace, PublicKey, verify_batch};
use carechain_types::{
    EPOCH_LENGTH, Genesis, MAX_KIND, Outcome, Payload, Receipt, RejectReason, Role, SignedTx,
    ValidatorChange, approval_quorum, encode, validator_proposal_id,
};

use crate::{
    ChangeSet, StateCommitment, StateView, ViewError, bucket_hash, bucket_of,
    gov::{
        Proposal, SCHEDULE_KEY, ValidatorSchedule, decode_proposal, decode_schedule, proposal_key,
    },
    identity_key, key_index_key, value_hash,
};

/// A registered identity.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Identity {
    /// Permanent id: the key it was registered with.
    pub id: PublicKey,
    /// The key that signs for it now.
    pub current_key: PublicKey,
    /// Its role.
    pub role: Role,
    /// Its organization.
    pub parent: Option<PublicKey>,
    /// False once deactivated.
    pub active: bool,
    /// The nonce its next transaction must carry.
    pub next_nonce: u64,
    /// Height of the block that registered it (0 = genesis).
    pub registered_at: u64,
    /// Who registered it (itself for self-registration and genesis).
    pub registered_by: PublicKey,
    /// Number of key rotations so far.
    pub rotations: u32,
}

/// What the state machine knows about the block being applied (from its header).
#[derive(Clone, Debug)]
pub struct BlockContext<'a> {
    /// The chain id transactions must carry.
    pub chain_id: &'a str,
    /// The height of the block.
    pub height: u64,
    /// Size of the verifiable log before this block (the first applied transaction's index).
    pub log_size: u64,
    /// Bucket updates of a parent block not yet applied to the commitment (a block being
    /// committed while this one is proposed): the state root is computed with them beneath
    /// this block's own, so the commitment need not be copied to apply them first.
    pub parent_updates: Option<&'a BTreeMap<u16, Hash>>,
    /// The genesis validators: the validator set until governance changes it.
    pub genesis_validators: &'a [PublicKey],
}

/// The result of executing a block.
#[derive(Clone, Debug)]
pub struct BlockExecution {
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
    /// Hashes of applied transactions, in order: the new log leaves.
    pub applied: Vec<Hash>,
    /// The state changes.
    pub changes: ChangeSet,
    /// New hashes of the buckets that changed.
    pub bucket_updates: BTreeMap<u16, Hash>,
    /// The state root after the block.
    pub state_root: Hash,
}

/// The state changes that create the genesis identities.
pub fn genesis_changes(genesis: &Genesis) -> ChangeSet {
    let mut changes = ChangeSet::new();
    for gi in &genesis.identities {
        let ident = Identity {
            id: gi.key,
            current_key: gi.key,
            role: gi.role,
            parent: gi.parent,
            active: true,
            next_nonce: 0,
            registered_at: 0,
            registered_by: gi.key,
            rotations: 0,
        };
        changes.insert(identity_key(&gi.key), Some(encode(&ident)));
        changes.insert(key_index_key(&gi.key), Some(gi.key.0.to_vec()));
    }
    changes
}

pub(crate) fn read_identity(
    view: &dyn Lookup,
    id: &PublicKey,
) -> Result<Option<Identity>, ViewError> {
    let key = identity_key(id);
    match view.lookup(&key)? {
        None => Ok(None),
        Some(bytes) => Identity::try_from_slice(&bytes)
            .map(Some)
            .map_err(|_| ViewError::Corrupt(String::from_utf8_lossy(&key[..3]).into_owned())),
    }
}

pub(crate) trait Lookup {
    fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError>;
}

pub(crate) struct Overlay<'a, V: StateView + ?Sized> {
    view: &'a V,
    pub(crate) changes: ChangeSet,
}

impl<V: StateView + ?Sized> Lookup for Overlay<'_, V> {
    fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        match self.changes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.view.get(key),
        }
    }
}

struct ViewLookup<'a, V: StateView + ?Sized>(&'a V);

impl<V: StateView + ?Sized> Lookup for ViewLookup<'_, V> {
    fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        self.0.get(key)
    }
}

/// Checks the signatures of `txs` in batches against the signers' keys in `view` (the key of
/// an unregistered signer is the signer id itself, for self-registration). Returns, per
/// transaction, the key that verified it, or `None` if it did not verify (then [`apply_block`]
/// checks it again against the key current at its turn and rejects it if still bad).
pub fn prevalidate_signatures<V: StateView + ?Sized>(
    view: &V,
    txs: &[SignedTx],
) -> Result<Vec<Option<PublicKey>>, ViewError> {
    let lookup = ViewLookup(view);
    let mut keys = Vec::with_capacity(txs.len());
    for tx in txs {
        let key = match read_identity(&lookup, &tx.body.signer)? {
            Some(ident) => ident.current_key,
            None => tx.body.signer,
        };
        keys.push(key);
    }
    let bodies: Vec<Vec<u8>> = txs.iter().map(|t| encode(&t.body)).collect();
    let mut out = vec![None; txs.len()];
    const CHUNK: usize = 256;
    for start in (0..txs.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(txs.len());
        let items: Vec<BatchItem<'_>> = (start..end)
            .map(|i| BatchItem {
                key: &keys[i],
                ns: Namespace::Transaction,
                message: &bodies[i],
                sig: &txs[i].signature,
            })
            .collect();
        if verify_batch(&items).is_ok() {
            for (i, slot) in out.iter_mut().enumerate().take(end).skip(start) {
                *slot = Some(keys[i]);
            }
        } else {
            for i in start..end {
                if keys[i]
                    .verify(Namespace::Transaction, &bodies[i], &txs[i].signature)
                    .is_ok()
                {
                    out[i] = Some(keys[i]);
                }
            }
        }
    }
    Ok(out)
}

/// Executes the transactions of a block on top of `view`.
///
/// `verified[i]` is the key that already verified transaction `i`'s signature (from the
/// mempool or [`prevalidate_signatures`]); when it is not the signer's key at the
/// transaction's turn, the signature is checked again. Errors are only storage failures:
/// every bad transaction becomes a `Rejected` receipt.
pub fn apply_block<V: StateView + ?Sized>(
    view: &V,
    commitment: &StateCommitment,
    ctx: &BlockContext<'_>,
    txs: &[SignedTx],
    verified: &[Option<PublicKey>],
) -> Result<BlockExecution, ViewError> {
    let mut overlay = Overlay {
        view,
        changes: ChangeSet::new(),
    };
    let mut receipts = Vec::with_capacity(txs.len());
    let mut applied = Vec::new();
    for (i, tx) in txs.iter().enumerate() {
        let tx_hash = tx.hash();
        let pre = verified.get(i).copied().flatten();
        let outcome = match apply_tx(&mut overlay, ctx, tx, pre)? {
            Ok(()) => {
                let log_index = ctx.log_size + applied.len() as u64;
                applied.push(tx_hash);
                Outcome::Applied { log_index }
            }
            Err(reason) => Outcome::Rejected(reason),
        };
        receipts.push(Receipt { tx_hash, outcome });
    }
    let changes = overlay.changes;
    type Change<'c> = (&'c Vec<u8>, &'c Option<Vec<u8>>);
    let mut by_bucket: BTreeMap<u16, Vec<Change<'_>>> = BTreeMap::new();
    for (k, v) in &changes {
        by_bucket.entry(bucket_of(k)).or_default().push((k, v));
    }
    let mut bucket_updates = BTreeMap::new();
    for (b, bucket_changes) in by_bucket {
        let mut entries: BTreeMap<Vec<u8>, Vec<u8>> = view.bucket_entries(b)?.into_iter().collect();
        for (k, v) in bucket_changes {
            match v {
                Some(v) => entries.insert(k.clone(), v.clone()),
                None => entries.remove(k),
            };
        }
        let h = bucket_hash(entries.iter().map(|(k, v)| (k.as_slice(), value_hash(v))));
        bucket_updates.insert(b, h);
    }
    let state_root = match ctx.parent_updates.filter(|p| !p.is_empty()) {
        Some(parent) => {
            let mut all = parent.clone();
            all.extend(bucket_updates.iter().map(|(b, h)| (*b, *h)));
            commitment.root_with(&all)
        }
        None => commitment.root_with(&bucket_updates),
    };
    Ok(BlockExecution {
        receipts,
        applied,
        changes,
        bucket_updates,
        state_root,
    })
}

pub(crate) type TxResult = Result<Result<(), RejectReason>, ViewError>;

/// Applies the writes of an accepted payload.
fn write_all<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    writes: Result<crate::consent::Writes, RejectReason>,
) -> Result<(), RejectReason> {
    for (k, v) in writes? {
        o.changes.insert(k, Some(v));
    }
    Ok(())
}

pub(crate) fn put_identity<V: StateView + ?Sized>(o: &mut Overlay<'_, V>, ident: &Identity) {
    o.changes
        .insert(identity_key(&ident.id), Some(encode(ident)));
}

fn apply_tx<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    tx: &SignedTx,
    pre_verified: Option<PublicKey>,
) -> TxResult {
    let body = &tx.body;
    if body.chain_id != ctx.chain_id {
        return Ok(Err(RejectReason::WrongChain));
    }
    let signer = read_identity(o, &body.signer)?;
    let self_registration = matches!(
        &body.payload,
        Payload::Register { subject, .. } if *subject == body.signer
    );
    let key = match &signer {
        Some(s) if !s.active => return Ok(Err(RejectReason::SignerDeactivated)),
        Some(s) => s.current_key,
        None if self_registration => body.signer,
        None => return Ok(Err(RejectReason::UnknownSigner)),
    };
    if pre_verified != Some(key) && tx.verify_with(&key).is_err() {
        return Ok(Err(RejectReason::BadSignature));
    }
    let expected = signer.as_ref().map_or(0, |s| s.next_nonce);
    if body.nonce != expected {
        return Ok(Err(RejectReason::BadNonce {
            expected,
            got: body.nonce,
        }));
    }
    let result = match &body.payload {
        Payload::Register {
            subject,
            role,
            parent,
        } => crate::registry::register(
            o,
            ctx,
            signer.as_ref(),
            body.signer,
            *subject,
            *role,
            *parent,
        )?,
        Payload::RotateKey { new_key, proof } => {
            crate::registry::rotate(o, ctx, signer.as_ref(), *new_key, proof, body.nonce)?
        }
        Payload::Deactivate { subject } => {
            crate::registry::deactivate(o, signer.as_ref(), *subject)?
        }
        // An anchor's commitment lives in the block and, once applied, in the verifiable log
        // (its transaction hash is a leaf): that is its proof of existence. It is not kept in
        // state, so anchoring does not grow the state.
        Payload::Anchor { kind, .. } => {
            if kind.is_empty() || kind.len() > MAX_KIND {
                Err(RejectReason::Malformed)
            } else {
                Ok(())
            }
        }
        Payload::TaggedAnchor { kind, label, .. } => {
            if kind.is_empty() || kind.len() > MAX_KIND || label.len() > MAX_KIND {
                Err(RejectReason::Malformed)
            } else {
                Ok(())
            }
        }
        Payload::ProposeValidatorChange {
            change,
            effective_height,
        } => propose_change(o, ctx, body.signer, change, *effective_height)?,
        Payload::ApproveValidatorChange { proposal } => {
            approve_change(o, ctx, body.signer, proposal)?
        }
        Payload::GrantConsent { patient, id, rule } => match &signer {
            Some(s) => write_all(
                o,
                crate::consent::grant(o, s, patient, *id, rule, ctx.height)?,
            ),
            None => Err(RejectReason::UnknownSigner),
        },
        Payload::RevokeConsent { patient, id } => match &signer {
            Some(s) => write_all(o, crate::consent::revoke(o, s, patient, *id, ctx.height)?),
            None => Err(RejectReason::UnknownSigner),
        },
        Payload::DelegateConsents { delegate, allowed } => match &signer {
            Some(s) => write_all(o, crate::consent::delegate(o, s, delegate, *allowed)?),
            None => Err(RejectReason::UnknownSigner),
        },
        Payload::RegisterNode { node, endpoint } => match &signer {
            Some(s) => write_all(
                o,
                crate::network::register_node(o, s, *node, endpoint, ctx.height)?,
            ),
            None => Err(RejectReason::UnknownSigner),
        },
        Payload::LocateRecords {
            patient,
            held,
            node,
        } => match &signer {
            Some(s) => write_all(
                o,
                crate::network::locate(o, s, *patient, *held, *node, ctx.height)?,
            ),
            None => Err(RejectReason::UnknownSigner),
        },
    };
    if result.is_ok() {
        // Bump the signer's nonce (re-read: the payload may have changed the record).
        if let Some(mut s) = read_identity(o, &body.signer)? {
            s.next_nonce += 1;
            put_identity(o, &s);
        }
    }
    Ok(result)
}

fn read_schedule(o: &dyn Lookup, ctx: &BlockContext<'_>) -> Result<ValidatorSchedule, ViewError> {
    decode_schedule(o.lookup(SCHEDULE_KEY)?, ctx.genesis_validators)
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

fn propose_change<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    signer: PublicKey,
    change: &ValidatorChange,
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
    if let ValidatorChange::Add { key } = change {
        // A new validator is a fresh key or an identity registered as a validator.
        if o.lookup(&key_index_key(key))?.is_some() {
            match read_identity(o, key)? {
                Some(ident) if ident.role == Role::Validator && ident.active => {}
                _ => return Ok(Err(RejectReason::KeyInUse)),
            }
        }
    }
    let id = validator_proposal_id(change, effective_height);
    if read_proposal(o, &id)?.is_some() {
        return Ok(Err(RejectReason::ProposalExists));
    }
    // The change must make sense for the set it would apply to, as scheduled now.
    if !schedule.clone().schedule(change, effective_height) {
        return Ok(Err(RejectReason::InvalidValidatorSet));
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

fn approve_change<V: StateView + ?Sized>(
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
    if approvals >= approval_quorum(current.len()) {
        if !schedule.schedule(&proposal.change, proposal.effective_height) {
            return Ok(Err(RejectReason::InvalidValidatorSet));
        }
        if let ValidatorChange::Add { key } = &proposal.change
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
