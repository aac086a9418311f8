//! Escrow: the depositor instantiates it with tokens, a beneficiary, an arbiter and an
//! expiry height. The arbiter may release the whole balance to the beneficiary; after the
//! expiry height anyone may return it to the depositor. Nothing else moves the tokens.
#![no_std]

extern crate alloc;

use alloc::string::{String, ToString};
use carechain_contract_sdk::{self as sdk, Env, Info};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Config {
    depositor: String,
    beneficiary: String,
    arbiter: String,
    expires_at: u64,
}

#[derive(Deserialize)]
struct InstantiateMsg {
    beneficiary: String,
    arbiter: String,
    expires_at: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ExecuteMsg {
    Release {},
    Refund {},
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum QueryMsg {
    Config {},
}

#[derive(Serialize)]
struct Paid {
    to: String,
    amount: u64,
}

#[derive(Serialize)]
struct State {
    config: Config,
    balance: u64,
}

const CONFIG: &[u8] = b"config";

fn instantiate(env: Env, info: Info, msg: InstantiateMsg) -> Result<Config, String> {
    if msg.expires_at <= env.height {
        return Err("expires_at must be a future height".into());
    }
    if info.funds == 0 {
        return Err("an escrow needs funds".into());
    }
    let config = Config {
        depositor: info.sender,
        beneficiary: msg.beneficiary,
        arbiter: msg.arbiter,
        expires_at: msg.expires_at,
    };
    sdk::save(CONFIG, &config);
    Ok(config)
}

fn pay_out(env: &Env, to: &str, kind: &str) -> Result<Paid, String> {
    let amount = sdk::balance(&env.contract);
    if amount == 0 {
        return Err("nothing left to pay".into());
    }
    sdk::transfer(to, amount)?;
    let text = amount.to_string();
    sdk::emit(kind, &[("to", to), ("amount", &text)]);
    Ok(Paid {
        to: to.to_string(),
        amount,
    })
}

fn execute(env: Env, info: Info, msg: ExecuteMsg) -> Result<Paid, String> {
    let config: Config = sdk::load(CONFIG).ok_or("not instantiated")?;
    match msg {
        ExecuteMsg::Release {} => {
            if info.sender != config.arbiter {
                return Err("only the arbiter may release".into());
            }
            pay_out(&env, &config.beneficiary, "released")
        }
        ExecuteMsg::Refund {} => {
            if env.height < config.expires_at {
                return Err("the escrow has not expired".into());
            }
            pay_out(&env, &config.depositor, "refunded")
        }
    }
}

fn query(env: Env, msg: QueryMsg) -> Result<State, String> {
    match msg {
        QueryMsg::Config {} => Ok(State {
            config: sdk::load(CONFIG).ok_or("not instantiated")?,
            balance: sdk::balance(&env.contract),
        }),
    }
}

sdk::entry_points!(instantiate = instantiate, execute = execute, query = query);
