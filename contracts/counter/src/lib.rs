//! Counter: one stored number, incremented by every `increment` call, read by a `count`
//! query. The smallest useful contract: what a trivial call costs is measured on it.
#![no_std]

extern crate alloc;

use alloc::string::String;
use carechain_contract_sdk::{self as sdk, Env, Info};
use serde::Deserialize;

#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ExecuteMsg {
    Increment {},
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum QueryMsg {
    Count {},
}

const COUNT: &[u8] = b"count";

fn count() -> u64 {
    sdk::load(COUNT).unwrap_or(0)
}

fn instantiate(_env: Env, _info: Info, _msg: Empty) -> Result<u64, String> {
    sdk::save(COUNT, &0u64);
    Ok(0)
}

fn execute(_env: Env, _info: Info, msg: ExecuteMsg) -> Result<u64, String> {
    match msg {
        ExecuteMsg::Increment {} => {
            let n = count() + 1;
            sdk::save(COUNT, &n);
            Ok(n)
        }
    }
}

fn query(_env: Env, msg: QueryMsg) -> Result<u64, String> {
    match msg {
        QueryMsg::Count {} => Ok(count()),
    }
}

sdk::entry_points!(instantiate = instantiate, execute = execute, query = query);
