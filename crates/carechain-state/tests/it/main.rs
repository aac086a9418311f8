//! State machine tests: identity registry rules, replay protection, rotation, deactivation,
//! state proofs, validator-set governance, and determinism properties.

#![allow(clippy::unwrap_used)]

use carechain_crypto::{Hash, Namespace, PublicKey, SecretKey};
use carechain_state::*;
use carechain_types::*;
use proptest::prelude::*;

mod claims_contract;
mod consent;
mod network;
mod shipped;
mod supply;
mod token;

const CHAIN: &str = "test-chain";

struct Chain {
    genesis: Genesis,
    genesis_validators: Vec<PublicKey>,
    state: MemoryState,
    commitment: StateCommitment,
    height: u64,
    log_size: u64,
}

impl Chain {
    fn new(genesis: &[(&SecretKey, Role)]) -> Chain {
        Chain::with(genesis, |_| {})
    }

    /// A chain of `genesis`, its genesis adjusted by `tune` (fees, contract limits).
    fn with(genesis: &[(&SecretKey, Role)], tune: impl FnOnce(&mut Genesis)) -> Chain {
        let mut g = Genesis {
            token: Default::default(),
            contracts: Default::default(),
            chain_id: CHAIN.into(),
            timestamp_ms: 0,
            identities: genesis
                .iter()
                .map(|(k, r)| GenesisIdentity {
                    key: k.public(),
                    role: *r,
                    parent: None,
                })
                .collect(),
        };
        tune(&mut g);
        let mut c = Chain {
            genesis: g.clone(),
            genesis_validators: g
                .identities
                .iter()
                .filter(|i| i.role == Role::Validator)
                .map(|i| i.key)
                .collect(),
            state: MemoryState::new(),
            commitment: StateCommitment::empty(),
            height: 0,
            log_size: 0,
        };
        let changes = genesis_changes(&g);
        c.commit_changes(&changes);
        c
    }

    fn commit_changes(&mut self, changes: &ChangeSet) {
        self.state.apply(changes);
        let mut buckets = std::collections::BTreeMap::new();
        for k in changes.keys() {
            let b = bucket_of(k);
            let entries = self.state.bucket_entries(b).unwrap();
            buckets.insert(
                b,
                bucket_hash(entries.iter().map(|(k, v)| (k.as_slice(), value_hash(v)))),
            );
        }
        self.commitment.apply(&buckets);
    }

    fn block(&mut self, txs: &[SignedTx]) -> Vec<Outcome> {
        self.receipts(txs).into_iter().map(|r| r.outcome).collect()
    }

    /// The proposer of every block (fees go to it).
    fn proposer() -> PublicKey {
        key(250).public()
    }

    fn receipts(&mut self, txs: &[SignedTx]) -> Vec<Receipt> {
        self.height += 1;
        let verified = prevalidate_signatures(&self.state, txs).unwrap();
        let ctx = BlockContext {
            rules: ChainRules::of(&self.genesis, &self.genesis_validators),
            height: self.height,
            timestamp_ms: 1_700_000_000_000 + self.height * 1_000,
            proposer: Chain::proposer(),
            log_size: self.log_size,
            parent_updates: None,
        };
        let ex = apply_block(&self.state, &self.commitment, &ctx, txs, &verified).unwrap();
        self.state.apply(&ex.changes);
        self.commitment.apply(&ex.bucket_updates);
        assert_eq!(self.commitment.root(), ex.state_root);
        self.log_size += ex.applied.len() as u64;
        ex.receipts
    }

    fn identity(&self, id: &PublicKey) -> Option<Identity> {
        self.state
            .get(&identity_key(id))
            .unwrap()
            .map(|b| borsh::from_slice(&b).unwrap())
    }
}

fn key(i: u8) -> SecretKey {
    SecretKey::from_seed(&[i; 32])
}

fn tx(signer: &SecretKey, nonce: u64, payload: Payload) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        signer: signer.public(),
        nonce,
        payload,
    }
    .sign(signer)
}

fn register(subject: &SecretKey, role: Role, parent: Option<&SecretKey>) -> Payload {
    Payload::Register {
        subject: subject.public(),
        role,
        parent: parent.map(SecretKey::public),
    }
}

fn applied(o: &Outcome) -> bool {
    matches!(o, Outcome::Applied { .. })
}

#[test]
fn operator_registers_organization_which_registers_practitioner() {
    let (op, org, doc) = (key(1), key(2), key(3));
    let mut c = Chain::new(&[(&op, Role::Operator)]);
    let out = c.block(&[
        tx(&op, 0, register(&org, Role::Organization, None)),
        tx(&org, 0, register(&doc, Role::Practitioner, Some(&org))),
    ]);
    assert!(out.iter().all(applied), "{out:?}");
    let d = c.identity(&doc.public()).unwrap();
    assert_eq!(d.role, Role::Practitioner);
    assert_eq!(d.parent, Some(org.public()));
    assert_eq!(out[1], Outcome::Applied { log_index: 1 });
}

#[test]
fn registration_rules_are_enforced() {
    let (op, org, doc, pat, other) = (key(1), key(2), key(3), key(4), key(5));
    let mut c = Chain::new(&[(&op, Role::Operator), (&org, Role::Organization)]);
    let out = c.block(&[
        // a practitioner registered by an org must name that org as parent
        tx(&org, 0, register(&doc, Role::Practitioner, None)),
        // an org may not create validators
        tx(&org, 0, register(&other, Role::Validator, None)),
        // patients self-register
        tx(&pat, 0, register(&pat, Role::Patient, None)),
        // a patient cannot register others
        tx(&pat, 1, register(&other, Role::Practitioner, None)),
        // nobody registers twice
        tx(&op, 0, register(&pat, Role::Patient, None)),
        // self-registration only as a patient
        tx(&other, 0, register(&other, Role::Operator, None)),
    ]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::Unauthorized));
    assert_eq!(out[1], Outcome::Rejected(RejectReason::Unauthorized));
    assert!(applied(&out[2]));
    assert_eq!(out[3], Outcome::Rejected(RejectReason::Unauthorized));
    assert_eq!(out[4], Outcome::Rejected(RejectReason::AlreadyRegistered));
    assert_eq!(out[5], Outcome::Rejected(RejectReason::Unauthorized));
}

#[test]
fn replayed_and_skipped_nonces_are_rejected() {
    let (op, a, b) = (key(1), key(2), key(3));
    let mut c = Chain::new(&[(&op, Role::Operator)]);
    let t0 = tx(&op, 0, register(&a, Role::Organization, None));
    assert!(applied(&c.block(std::slice::from_ref(&t0))[0]));
    let out = c.block(&[
        t0.clone(),
        tx(&op, 5, register(&b, Role::Organization, None)),
    ]);
    assert_eq!(
        out[0],
        Outcome::Rejected(RejectReason::BadNonce {
            expected: 1,
            got: 0
        })
    );
    assert_eq!(
        out[1],
        Outcome::Rejected(RejectReason::BadNonce {
            expected: 1,
            got: 5
        })
    );
    assert_eq!(c.identity(&op.public()).unwrap().next_nonce, 1);
}

#[test]
fn unknown_signer_wrong_chain_and_bad_signature_are_rejected() {
    let (op, stranger) = (key(1), key(9));
    let mut c = Chain::new(&[(&op, Role::Operator)]);
    let mut forged = tx(
        &op,
        0,
        Payload::Anchor {
            kind: "x".into(),
            commitment: Hash([1; 32]),
        },
    );
    forged.signature.0[0] ^= 1;
    let wrong_chain = TxBody {
        chain_id: "other".into(),
        signer: op.public(),
        nonce: 0,
        payload: Payload::Anchor {
            kind: "x".into(),
            commitment: Hash([2; 32]),
        },
    }
    .sign(&op);
    let out = c.block(&[
        tx(
            &stranger,
            0,
            Payload::Anchor {
                kind: "x".into(),
                commitment: Hash([3; 32]),
            },
        ),
        wrong_chain,
        forged,
    ]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::UnknownSigner));
    assert_eq!(out[1], Outcome::Rejected(RejectReason::WrongChain));
    assert_eq!(out[2], Outcome::Rejected(RejectReason::BadSignature));
}

fn rotation(signer: &SecretKey, new: &SecretKey, nonce: u64) -> SignedTx {
    let msg = rotation_proof_message(CHAIN, &signer.public(), &new.public(), nonce);
    tx(
        signer,
        nonce,
        Payload::RotateKey {
            new_key: new.public(),
            proof: new.sign(Namespace::KeyRotation, &msg),
        },
    )
}

#[test]
fn key_rotation_switches_the_signing_key() {
    let (op, org, new_key, intruder) = (key(1), key(2), key(3), key(4));
    let mut c = Chain::new(&[(&op, Role::Operator), (&org, Role::Organization)]);
    // A rotation signed by the wrong key is rejected.
    let mut bad = rotation(&org, &new_key, 0);
    bad.signature = intruder.sign(Namespace::Transaction, &encode(&bad.body));
    // A rotation whose proof is by another key is rejected.
    let mut bad_proof = rotation(&org, &new_key, 0);
    if let Payload::RotateKey { proof, .. } = &mut bad_proof.body.payload {
        *proof = intruder.sign(Namespace::KeyRotation, b"x");
    }
    let bad_proof = TxBody { ..bad_proof.body }.sign(&org);
    let out = c.block(&[bad, bad_proof, rotation(&org, &new_key, 0)]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::BadSignature));
    assert_eq!(out[1], Outcome::Rejected(RejectReason::BadRotationProof));
    assert!(applied(&out[2]), "{out:?}");
    // The old key no longer signs; the new one does, for the same identity.
    let anchor = |n| Payload::Anchor {
        kind: "t".into(),
        commitment: Hash([n; 32]),
    };
    let by_old = tx(&org, 1, anchor(1));
    let by_new = TxBody {
        chain_id: CHAIN.into(),
        signer: org.public(),
        nonce: 1,
        payload: anchor(2),
    }
    .sign(&new_key);
    let out = c.block(&[by_old, by_new]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::BadSignature));
    assert!(applied(&out[1]));
    // Keys are never reused.
    let out = c.block(&[rotation(&op, &org, 0)]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::KeyInUse));
}

#[test]
fn deactivated_identities_cannot_sign() {
    let (op, org, doc) = (key(1), key(2), key(3));
    let mut c = Chain::new(&[(&op, Role::Operator), (&org, Role::Organization)]);
    let out = c.block(&[
        tx(&org, 0, register(&doc, Role::Practitioner, Some(&org))),
        tx(
            &org,
            1,
            Payload::Deactivate {
                subject: doc.public(),
            },
        ),
        tx(
            &doc,
            0,
            Payload::Anchor {
                kind: "t".into(),
                commitment: Hash([5; 32]),
            },
        ),
    ]);
    assert!(applied(&out[0]) && applied(&out[1]));
    assert_eq!(out[2], Outcome::Rejected(RejectReason::SignerDeactivated));
}

#[test]
fn state_proofs_verify_against_the_root() {
    let (op, org) = (key(1), key(2));
    let mut c = Chain::new(&[(&op, Role::Operator)]);
    c.block(&[tx(&op, 0, register(&org, Role::Organization, None))]);
    let k = identity_key(&org.public());
    let b = bucket_of(&k);
    let entries: Vec<(Vec<u8>, Hash)> = c
        .state
        .bucket_entries(b)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, value_hash(&v)))
        .collect();
    let proof = StateProof {
        bucket: b,
        entries,
        path: c.commitment.path(b),
    };
    let value = c.state.get(&k).unwrap().unwrap();
    assert_eq!(
        proof.verify(&c.commitment.root(), &k).unwrap(),
        Some(value_hash(&value))
    );
    assert!(proof.verify(&Hash([0; 32]), &k).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Same transactions, any split into blocks: same outcomes; the same blocks replayed from
    /// scratch give the same state root; and the incrementally maintained root equals the root
    /// recomputed from the full final state.
    #[test]
    fn execution_is_deterministic(ops in proptest::collection::vec((0u8..6, 0u8..8, 0u64..3), 1..40), cut in any::<usize>()) {
        let op = key(100);
        let keys: Vec<SecretKey> = (0..8).map(|i| key(i + 1)).collect();
        let mut nonces = [0u64; 8];
        let mut op_nonce = 0;
        let mut txs = Vec::new();
        for (kind, who, skew) in ops {
            let w = usize::from(who);
            let t = match kind {
                0 => { op_nonce += 1; tx(&op, op_nonce - 1, register(&keys[w], Role::Organization, None)) }
                1 => tx(&keys[w], 0, register(&keys[w], Role::Patient, None)),
                2 => { nonces[w] += 1; tx(&keys[w], nonces[w] - 1 + skew, Payload::Anchor { kind: "k".into(), commitment: Hash([who; 32]) }) }
                3 => rotation(&keys[w], &key(50 + who), nonces[w]),
                4 => tx(&keys[w], nonces[w], Payload::Deactivate { subject: keys[(w + 1) % 8].public() }),
                _ => tx(&keys[w], nonces[w], Payload::Anchor { kind: String::new(), commitment: Hash([0; 32]) }),
            };
            txs.push(t);
        }
        let run = |split: usize| {
            let mut c = Chain::new(&[(&op, Role::Operator)]);
            let split = split.min(txs.len());
            let mut out = c.block(&txs[..split]);
            out.extend(c.block(&txs[split..]));
            let mut all = std::collections::BTreeMap::new();
            for b in 0..=u16::MAX {
                let entries = c.state.bucket_entries(b).unwrap();
                if !entries.is_empty() {
                    all.insert(b, bucket_hash(entries.iter().map(|(k, v)| (k.as_slice(), value_hash(v)))));
                }
            }
            assert_eq!(StateCommitment::from_buckets(all).root(), c.commitment.root());
            (out, c.commitment.root())
        };
        let split = cut % (txs.len() + 1);
        let (a, ra) = run(txs.len());
        let (b, rb) = run(split);
        prop_assert_eq!(rb, run(split).1);
        let a_ok: Vec<bool> = a.iter().map(applied).collect();
        let b_ok: Vec<bool> = b.iter().map(applied).collect();
        prop_assert_eq!(a_ok, b_ok);
        let (_, rc) = run(txs.len());
        prop_assert_eq!(ra, rc);
        prop_assert_ne!(ra, StateCommitment::empty().root());
    }
}

#[test]
fn tagged_anchors_apply_and_bad_tags_are_malformed() {
    let op = key(1);
    let mut c = Chain::new(&[(&op, Role::Operator)]);
    let tagged = |kind: &str, label: String| Payload::TaggedAnchor {
        kind: kind.into(),
        commitment: Hash([7; 32]),
        subject: Hash([8; 32]),
        label,
        version: 3,
    };
    let out = c.block(&[
        tx(&op, 0, tagged("record", "Observation".into())),
        tx(&op, 1, tagged("", "Observation".into())),
        tx(&op, 1, tagged("record", "x".repeat(65))),
        tx(&op, 1, tagged("record", String::new())),
    ]);
    assert!(applied(&out[0]), "{out:?}");
    assert_eq!(out[1], Outcome::Rejected(RejectReason::Malformed));
    assert_eq!(out[2], Outcome::Rejected(RejectReason::Malformed));
    assert!(applied(&out[3]), "an empty label is allowed: {out:?}");
}

impl Chain {
    fn schedule(&self) -> ValidatorSchedule {
        validator_schedule(&self.state, &self.genesis_validators).unwrap()
    }
}

fn add(k: &SecretKey, at: u64) -> Payload {
    Payload::ProposeChange {
        change: GovernanceChange::AddValidator { key: k.public() },
        effective_height: at,
    }
}

fn remove(k: &SecretKey, at: u64) -> Payload {
    Payload::ProposeChange {
        change: GovernanceChange::RemoveValidator { key: k.public() },
        effective_height: at,
    }
}

fn approve(id: Hash) -> Payload {
    Payload::ApproveChange { proposal: id }
}

fn sorted(keys: &[&SecretKey]) -> Vec<PublicKey> {
    let mut v: Vec<PublicKey> = keys.iter().map(|k| k.public()).collect();
    v.sort();
    v
}

#[test]
fn a_validator_is_added_by_two_thirds_of_the_set_from_the_future_epoch() {
    let (op, v1, v2, v3, v4, new) = (key(1), key(2), key(3), key(4), key(5), key(6));
    let vs = [&v1, &v2, &v3, &v4];
    let mut genesis: Vec<(&SecretKey, Role)> = vs.iter().map(|v| (*v, Role::Validator)).collect();
    genesis.push((&op, Role::Operator));
    let mut c = Chain::new(&genesis);
    let id = proposal_id(
        &GovernanceChange::AddValidator { key: new.public() },
        EPOCH_LENGTH,
    );
    let out = c.block(&[
        tx(&v1, 0, add(&new, EPOCH_LENGTH)),
        tx(&v2, 0, approve(id)),
        // twice by the same validator, by an operator, by the candidate: refused
        tx(&v2, 1, approve(id)),
        tx(&op, 0, approve(id)),
        tx(&new, 0, approve(id)),
    ]);
    assert!(applied(&out[0]) && applied(&out[1]), "{out:?}");
    assert_eq!(out[2], Outcome::Rejected(RejectReason::AlreadyApproved));
    assert_eq!(out[3], Outcome::Rejected(RejectReason::NotValidator));
    assert_eq!(out[4], Outcome::Rejected(RejectReason::UnknownSigner));
    // Two of four approvals: nothing scheduled yet, the candidate is no identity.
    assert_eq!(c.schedule(), ValidatorSchedule::genesis(&sorted(&vs)));
    assert!(c.identity(&new.public()).is_none());
    let p = proposal(&c.state, &id).unwrap().unwrap();
    assert_eq!(p.approvals, vec![v1.public(), v2.public()]);
    assert_eq!(p.approved_at, None);

    // The third approval (⌈2·4/3⌉ = 3) schedules it from the epoch start, not before.
    let out = c.block(&[tx(&v3, 0, approve(id)), tx(&v4, 0, approve(id))]);
    assert!(applied(&out[0]), "{out:?}");
    assert_eq!(out[1], Outcome::Rejected(RejectReason::AlreadyApproved));
    let s = c.schedule();
    assert_eq!(s.at(EPOCH_LENGTH - 1), sorted(&vs).as_slice());
    assert_eq!(s.at(0), sorted(&vs).as_slice());
    assert_eq!(
        s.at(EPOCH_LENGTH),
        sorted(&[&v1, &v2, &v3, &v4, &new]).as_slice()
    );
    assert_eq!(s.at(u64::MAX), s.at(EPOCH_LENGTH));
    let ident = c.identity(&new.public()).unwrap();
    assert_eq!((ident.role, ident.active), (Role::Validator, true));
    assert_eq!(
        proposal(&c.state, &id).unwrap().unwrap().approved_at,
        Some(2)
    );

    // Before the epoch the new validator may not govern; from it on it may.
    let gone = proposal_id(
        &GovernanceChange::RemoveValidator { key: v4.public() },
        2 * EPOCH_LENGTH,
    );
    let out = c.block(&[tx(&new, 0, remove(&v4, 2 * EPOCH_LENGTH))]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::NotValidator));
    c.height = EPOCH_LENGTH - 1;
    let out = c.block(&[tx(&new, 0, remove(&v4, 2 * EPOCH_LENGTH))]);
    assert!(applied(&out[0]), "{out:?}");
    // Five validators now: ⌈10/3⌉ = 4 approvals; three are not enough.
    let out = c.block(&[tx(&v1, 1, approve(gone)), tx(&v2, 1, approve(gone))]);
    assert!(out.iter().all(applied), "{out:?}");
    assert_eq!(c.schedule().at(2 * EPOCH_LENGTH).len(), 5);
    let out = c.block(&[tx(&v4, 0, approve(gone))]);
    assert!(applied(&out[0]), "{out:?}");
    assert_eq!(
        c.schedule().at(2 * EPOCH_LENGTH),
        sorted(&[&v1, &v2, &v3, &new]).as_slice()
    );
    assert_eq!(c.schedule().sets.len(), 3, "the whole history is kept");
}

#[test]
fn bad_validator_changes_are_rejected_with_their_reason() {
    let (op, v1, v2, v3, pat) = (key(1), key(2), key(3), key(4), key(7));
    let mut c = Chain::new(&[
        (&v1, Role::Validator),
        (&v2, Role::Validator),
        (&v3, Role::Validator),
        (&op, Role::Operator),
    ]);
    c.block(&[tx(&pat, 0, register(&pat, Role::Patient, None))]);
    let e = EPOCH_LENGTH;
    let out = c.block(&[
        tx(&v1, 0, add(&key(9), 0)),
        tx(&v1, 0, add(&key(9), e + 1)),
        tx(&v1, 0, add(&v2, e)),
        tx(&v1, 0, remove(&key(9), e)),
        tx(&v1, 0, add(&pat, e)),
        tx(&v1, 0, approve(Hash([5; 32]))),
        tx(&op, 0, add(&key(9), e)),
        tx(&v1, 0, add(&key(9), e)),
        tx(&v2, 0, add(&key(9), e)),
    ]);
    use RejectReason::*;
    let want = [
        Some(BadEffectiveHeight),
        Some(BadEffectiveHeight),
        Some(InvalidValidatorSet),
        Some(InvalidValidatorSet),
        Some(KeyInUse),
        Some(UnknownProposal),
        Some(NotValidator),
        None,
        Some(ProposalExists),
    ];
    for (o, w) in out.iter().zip(want) {
        match w {
            Some(r) => assert_eq!(o, &Outcome::Rejected(r)),
            None => assert!(applied(o), "{out:?}"),
        }
    }
    // An approval at or after the effective height is too late.
    let id = proposal_id(
        &GovernanceChange::AddValidator {
            key: key(9).public(),
        },
        e,
    );
    c.height = e - 1;
    let out = c.block(&[tx(&v2, 0, approve(id))]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::ProposalExpired));
    assert_eq!(c.schedule().sets.len(), 1);
}

#[test]
fn the_last_validator_cannot_be_removed() {
    let v1 = key(2);
    let mut c = Chain::new(&[(&v1, Role::Validator)]);
    // One validator is its own two-thirds: a removal of itself would empty the set.
    let out = c.block(&[tx(&v1, 0, remove(&v1, EPOCH_LENGTH))]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::InvalidValidatorSet));
    let out = c.block(&[tx(&v1, 0, add(&key(3), EPOCH_LENGTH))]);
    assert!(
        applied(&out[0]),
        "approved at once by the only validator: {out:?}"
    );
    assert_eq!(c.schedule().at(EPOCH_LENGTH).len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The schedule agrees with a plain model: the set at height h is the genesis set with
    /// every accepted change of height ≤ h applied in order (a no-op where it already holds);
    /// a change is accepted iff it changes the set in force at its own height and leaves no
    /// set empty.
    #[test]
    fn validator_schedule_matches_a_model(
        genesis in proptest::collection::btree_set(0u8..6, 1..4),
        changes in proptest::collection::vec((any::<bool>(), 0u8..6, 1u64..6), 0..24),
    ) {
        let k = |i: u8| key(i + 10).public();
        let genesis: Vec<PublicKey> = genesis.into_iter().map(k).collect();
        let mut schedule = ValidatorSchedule::genesis(&genesis);
        let mut accepted: Vec<(bool, PublicKey, u64)> = Vec::new();
        let model = |accepted: &[(bool, PublicKey, u64)], h: u64| {
            let mut set: std::collections::BTreeSet<PublicKey> = genesis.iter().copied().collect();
            for (is_add, key, at) in accepted {
                if *at <= h {
                    if *is_add { set.insert(*key); } else { set.remove(key); }
                }
            }
            set.into_iter().collect::<Vec<_>>()
        };
        for (is_add, who, epoch) in changes {
            let key = k(who);
            let at = epoch * EPOCH_LENGTH;
            let change = if is_add { GovernanceChange::AddValidator { key } } else { GovernanceChange::RemoveValidator { key } };
            let mut with = accepted.clone();
            with.push((is_add, key, at));
            let before = model(&accepted, at);
            let expect = model(&with, at) != before
                && (0..=6).all(|e| !model(&with, e * EPOCH_LENGTH).is_empty());
            prop_assert_eq!(schedule.schedule(&change, at), expect);
            if expect { accepted = with; }
            for e in 0..=6u64 {
                for h in [e * EPOCH_LENGTH, e * EPOCH_LENGTH + 1, (e + 1) * EPOCH_LENGTH - 1] {
                    let want = model(&accepted, h);
                    prop_assert_eq!(schedule.at(h), want.as_slice(), "height {}", h);
                }
            }
        }
    }
}
