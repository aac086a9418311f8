//! Block execution: checks and applies each transaction, producing receipts, a change set and
//! the new state root.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{BatchItem, Hash, Namespace, PublicKey, verify_batch};
use carechain_types::{
    Account, Allowance, ContractConfig, Event, Genesis, MAX_KIND, Outcome, Payload, Receipt,
    RejectReason, Role, SignedTx, TokenConfig, encode,
};

use crate::{
    ChangeSet, StateCommitment, StateView, ViewError, bucket_hash, bucket_of, identity_key,
    key_index_key, value_hash,
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

/// The rules of a chain, from its genesis: the same for every block.
#[derive(Clone, Copy, Debug)]
pub struct ChainRules<'a> {
    /// The chain id transactions must carry.
    pub chain_id: &'a str,
    /// The genesis validators: the validator set until governance changes it.
    pub genesis_validators: &'a [PublicKey],
    /// The token's metadata and fee.
    pub token: &'a TokenConfig,
    /// The contract runtime's cost table and limits.
    pub contracts: &'a ContractConfig,
}

impl<'a> ChainRules<'a> {
    /// The rules of `genesis`, with its validators (`genesis_validators`, derived by the
    /// caller from its identities).
    pub fn of(genesis: &'a Genesis, genesis_validators: &'a [PublicKey]) -> ChainRules<'a> {
        ChainRules {
            chain_id: &genesis.chain_id,
            genesis_validators,
            token: &genesis.token,
            contracts: &genesis.contracts,
        }
    }
}

/// What the state machine knows about the block being applied (from its header).
#[derive(Clone, Debug)]
pub struct BlockContext<'a> {
    /// The chain's rules.
    pub rules: ChainRules<'a>,
    /// The height of the block.
    pub height: u64,
    /// The block's time (ms since the Unix epoch, from its header).
    pub timestamp_ms: u64,
    /// Who proposed it (fees go to it).
    pub proposer: PublicKey,
    /// Size of the verifiable log before this block (the first applied transaction's index).
    pub log_size: u64,
    /// Bucket updates of a parent block not yet applied to the commitment (a block being
    /// committed while this one is proposed): the state root is computed with them beneath
    /// this block's own, so the commitment need not be copied to apply them first.
    pub parent_updates: Option<&'a BTreeMap<u16, Hash>>,
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
    let mut supply = 0u64;
    for (who, amount) in &genesis.token.balances {
        supply = supply.saturating_add(*amount);
        changes.insert(
            crate::token::balance_key(&Account::Identity(*who)),
            Some(encode(amount)),
        );
    }
    if supply > 0 {
        changes.insert(crate::token::SUPPLY_KEY.to_vec(), Some(encode(&supply)));
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

/// State a payload may change (its transaction's layer).
pub(crate) trait Writer: Lookup {
    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>);
}

/// What a transaction produced beside state changes: for its receipt.
#[derive(Default)]
pub(crate) struct Effects {
    pub(crate) fuel_used: u64,
    pub(crate) events: Vec<Event>,
    pub(crate) data: Vec<u8>,
}

/// The state as a block sees it while applying: the committed view, beneath the changes of
/// the block's applied transactions, beneath the changes of the transaction being applied
/// (dropped whole if it is rejected).
pub(crate) struct Overlay<'a, V: StateView + ?Sized> {
    view: &'a V,
    block: ChangeSet,
    pub(crate) changes: ChangeSet,
    pub(crate) effects: Effects,
    pub(crate) block_fuel: u64,
}

impl<'a, V: StateView + ?Sized> Overlay<'a, V> {
    pub(crate) fn new(view: &'a V) -> Self {
        Overlay {
            view,
            block: ChangeSet::new(),
            changes: ChangeSet::new(),
            effects: Effects::default(),
            block_fuel: 0,
        }
    }

    pub(crate) fn charge_fuel(&mut self, fuel: u64) {
        self.effects.fuel_used += fuel;
        self.block_fuel += fuel;
    }

    /// Ends the transaction: keeps its changes if it was applied, else drops them (and its
    /// events). Returns its effects.
    fn finish_tx(&mut self, applied: bool) -> Effects {
        if applied {
            // One insert per change: `BTreeMap::append` rebuilds the whole block map, which
            // made a block's execution quadratic in its transactions.
            for (k, v) in std::mem::take(&mut self.changes) {
                self.block.insert(k, v);
            }
        } else {
            self.changes.clear();
        }
        let mut fx = std::mem::take(&mut self.effects);
        if !applied {
            fx.events.clear();
            fx.data.clear();
        }
        fx
    }
}

impl<V: StateView + ?Sized> Lookup for Overlay<'_, V> {
    fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        if let Some(v) = self.changes.get(key) {
            return Ok(v.clone());
        }
        match self.block.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.view.get(key),
        }
    }
}

impl<V: StateView + ?Sized> Writer for Overlay<'_, V> {
    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.changes.insert(key, value);
    }
}

pub(crate) struct ViewLookup<'a, V: StateView + ?Sized>(pub(crate) &'a V);

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
    let mut overlay = Overlay::new(view);
    let mut receipts = Vec::with_capacity(txs.len());
    let mut applied = Vec::new();
    for (i, tx) in txs.iter().enumerate() {
        let tx_hash = tx.hash();
        let pre = verified.get(i).copied().flatten();
        let result = apply_tx(&mut overlay, ctx, tx, pre)?;
        let fx = overlay.finish_tx(result.is_ok());
        if matches!(result, Err(RejectReason::ContractFailed(_))) {
            // A contract that ran and failed was charged its fuel: its transaction is used
            // up (the nonce moves on), so it cannot be replayed to burn block fuel again.
            if let Some(mut s) = read_identity(&overlay, &tx.body.signer)? {
                s.next_nonce += 1;
                put_identity(&mut overlay, &s);
            }
            overlay.finish_tx(true);
        }
        let outcome = match result {
            Ok(()) => {
                let log_index = ctx.log_size + applied.len() as u64;
                applied.push(tx_hash);
                Outcome::Applied { log_index }
            }
            Err(reason) => Outcome::Rejected(reason),
        };
        receipts.push(Receipt {
            tx_hash,
            outcome,
            fuel_used: fx.fuel_used,
            events: fx.events,
            data: fx.data,
        });
    }
    let changes = overlay.block;
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

/// Records a token payload's events.
fn events<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    r: Result<Vec<Event>, RejectReason>,
) -> Result<(), RejectReason> {
    o.effects.events.extend(r?);
    Ok(())
}

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
    if body.chain_id != ctx.rules.chain_id {
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
        Payload::ProposeChange {
            change,
            effective_height,
        } => crate::gov::propose_change(o, ctx, body.signer, change, *effective_height)?,
        Payload::ApproveChange { proposal } => {
            crate::gov::approve_change(o, ctx, body.signer, proposal)?
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
        Payload::Mint { to, amount } => {
            let r = crate::token::mint(o, ctx.height, &body.signer, to, *amount)?;
            events(o, r)
        }
        Payload::Transfer { to, amount } => {
            let r = crate::token::transfer(o, &body.signer, to, *amount)?;
            events(o, r)
        }
        Payload::Burn { amount } => {
            let r = crate::token::burn(o, &body.signer, *amount)?;
            events(o, r)
        }
        Payload::SetAllowance {
            spender,
            amount,
            expires_at,
        } => {
            let a = Allowance {
                amount: *amount,
                expires_at: *expires_at,
            };
            let r = crate::token::set_allowance(o, &body.signer, spender, a)?;
            events(o, r)
        }
        Payload::TransferFrom { owner, to, amount } => {
            let spender = Account::Identity(body.signer);
            let r = crate::token::transfer_from(o, ctx.height, &spender, owner, to, *amount)?;
            events(o, r)
        }
        Payload::DeployCode { code } => crate::contract::deploy(o, ctx, code)?,
        Payload::Instantiate {
            code,
            msg,
            funds,
            label,
        } => {
            let inv = crate::contract::Invocation {
                sender: body.signer,
                msg,
                funds: *funds,
            };
            crate::contract::instantiate(o, ctx, body.nonce, code, label, &inv)?
        }
        Payload::Execute {
            contract,
            msg,
            funds,
        } => {
            let inv = crate::contract::Invocation {
                sender: body.signer,
                msg,
                funds: *funds,
            };
            crate::contract::execute(o, ctx, contract, &inv)?
        }
        Payload::AssignCompanyPrefix {
            prefix,
            organization,
        } => {
            crate::supply::assign_prefix(o, signer.as_ref().map(|s| s.role), prefix, *organization)?
        }
        Payload::Supply {
            organization,
            events,
            atomic,
        } => {
            let mut emitted = Vec::new();
            let r = crate::supply::apply_batch(
                o,
                ctx.height,
                &body.signer,
                organization,
                events,
                *atomic,
                &mut emitted,
            )?;
            r.map(|skipped| {
                o.effects.events.extend(emitted);
                if !skipped.is_empty() {
                    o.effects.data = encode(&skipped);
                }
            })
        }
    };
    let fee = ctx.rules.token.tx_fee;
    let result = match result {
        Ok(()) if fee > 0 => crate::token::pay_fee(o, &body.signer, &ctx.proposer, fee)?,
        r => r,
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
