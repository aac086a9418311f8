//! Hostile contracts on four validators: an endless loop, an allocation bomb, deep
//! recursion, an unknown import and bytes that are not wasm are each a rejected receipt with
//! the same fuel on every validator, which all reach the same state root; a shipped
//! contract deploys beside them.

use std::time::Duration;

use carechain_contracts::shipped::ESCROW;
use carechain_crypto::{Hash, SecretKey, sha256};
use carechain_types::{
    ContractFailure, Outcome, Payload, RejectReason, TxBody, contract_address, encode,
};
use commonware_runtime::{Clock, Runner};

use super::{CHAIN, LINK, N, assert_agree, org, runner, start_cluster, validators};

fn signed(k: &SecretKey, nonce: u64, payload: Payload) -> (Hash, Vec<u8>) {
    let tx = TxBody {
        chain_id: CHAIN.into(),
        signer: k.public(),
        nonce,
        payload,
    }
    .sign(k);
    (tx.hash(), encode(&tx))
}

fn module(body: &str, extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            {extra}
            (memory (export "memory") 2)
            (data (i32.const 0) "{{}}")
            (func (export "alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "instantiate") (param i32 i32) (result i64) (i64.const 2))
            (func (export "execute") (param i32 i32) (result i64) {body}))"#
    ))
    .unwrap()
}

fn exec(contract: Hash) -> Payload {
    Payload::Execute {
        contract,
        msg: b"{}".to_vec(),
        funds: 0,
    }
}

#[test]
fn hostile_contracts_are_rejected_alike_by_four_validators() {
    runner(40).start(|context| async move {
        let c = start_cluster(&context, LINK).await;
        let o = org();
        let hostile = [
            module("(loop $l (br $l)) (i64.const 2)", ""),
            module(
                "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable",
                "",
            ),
            module(
                "(call $deep (i32.const 0)) (i64.const 2)",
                "(func $deep (param i32) (call $deep (i32.add (local.get 0) (i32.const 1))))",
            ),
        ];
        // The organization deploys and instantiates them (valid code; nothing runs yet).
        let mut nonce = 0;
        let mut addresses = Vec::new();
        for code in hostile.iter().chain([&ESCROW.code.to_vec()]) {
            let (_, tx) = signed(&o, nonce, Payload::DeployCode { code: code.clone() });
            c.nodes[0].submit(tx).expect("admitted");
            nonce += 1;
        }
        for code in &hostile {
            let hash = sha256(code);
            let (_, tx) = signed(
                &o,
                nonce,
                Payload::Instantiate {
                    code: hash,
                    msg: b"{}".to_vec(),
                    funds: 0,
                    label: "hostile".into(),
                },
            );
            addresses.push(contract_address(&hash, &o.public(), nonce));
            c.nodes[0].submit(tx).expect("admitted");
            nonce += 1;
        }
        super::wait_applied(&context, &c, &[0, 1, 2, 3], nonce).await;
        // Each validator's key runs one hostile call, to a different node; and the fifth
        // signer deploys a module importing an unknown host function.
        let v = validators();
        let unknown_import = module(
            "(call $clock) (drop) (i64.const 2)",
            r#"(import "carechain" "clock" (func $clock (result i64)))"#,
        );
        let mut rejected = Vec::new();
        for (i, payload) in [
            exec(addresses[0]),
            exec(addresses[1]),
            exec(addresses[2]),
            Payload::DeployCode { code: unknown_import },
        ]
        .into_iter()
        .enumerate()
        {
            let (hash, tx) = signed(&v[i], 0, payload);
            c.nodes[i % N].submit(tx).expect("admitted");
            rejected.push(hash);
        }
        let (hash, tx) = signed(&o, nonce, Payload::DeployCode { code: b"\0asm garbage".to_vec() });
        c.nodes[1].submit(tx).expect("admitted");
        rejected.push(hash);
        // Wait until every node holds a receipt for each of them.
        loop {
            let all = c.nodes.iter().all(|n| {
                let s = n.store().snapshot().unwrap();
                rejected.iter().all(|h| s.tx_location(h).unwrap().is_some())
            });
            if all {
                break;
            }
            context.sleep(Duration::from_millis(50)).await;
        }
        let receipt = |n: usize, h: &Hash| {
            let s = c.nodes[n].store().snapshot().unwrap();
            let at = s.tx_location(h).unwrap().unwrap();
            s.receipts(at.height).unwrap().unwrap()[at.position as usize].clone()
        };
        let expect = [
            ContractFailure::OutOfFuel,
            ContractFailure::MemoryLimit,
            ContractFailure::CallDepth,
        ];
        for (i, h) in rejected.iter().enumerate() {
            let r0 = receipt(0, h);
            for n in 1..N {
                assert_eq!(receipt(n, h), r0, "validator {n} differs on hostile tx {i}");
            }
            match (&r0.outcome, expect.get(i)) {
                (Outcome::Rejected(RejectReason::ContractFailed(f)), Some(e)) => {
                    assert_eq!(f, e, "tx {i}");
                    assert!(r0.fuel_used > 0, "tx {i} is charged what it ran");
                }
                (Outcome::Rejected(RejectReason::InvalidCode(_)), None) => {}
                other => panic!("hostile tx {i}: {other:?}"),
            }
        }
        context.sleep(Duration::from_secs(2)).await;
        assert_agree(&c, &[0, 1, 2, 3]);
    });
}
