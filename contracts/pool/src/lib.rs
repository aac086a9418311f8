//! A mutual insurance pool. Members join and stay covered by paying a premium in tokens per
//! period; coverage lapses when a premium is later than the grace period. A member's claim
//! up to `auto_pay_up_to` is paid at once; a larger one (up to `cover_limit`) is decided by
//! a vote of the members in good standing and the assessors, open for at least
//! `voting_period_ms`, then closed by anyone. The pool's books (premiums in, payouts out,
//! reserves = the contract's balance, solvency = reserves ÷ the minimum capital) are public
//! at every height; a claim's contents are not: the chain holds its amount and a commitment.
#![no_std]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use carechain_contract_sdk::{self as sdk, Env, Info};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Rules {
    name: String,
    /// The premium per period, in minor units.
    premium: u64,
    period_ms: u64,
    /// How late a premium may be before coverage lapses.
    grace_ms: u64,
    /// The most one claim may ask.
    cover_limit: u64,
    /// Claims up to this are paid without a vote.
    auto_pay_up_to: u64,
    /// The least time a vote stays open.
    voting_period_ms: u64,
    /// The least number of votes for a decision.
    quorum: u32,
    /// The minimum capital requirement (the denominator of solvency).
    min_capital: u64,
    /// Who may vote besides the members.
    assessors: Vec<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct Books {
    premiums: u64,
    payouts: u64,
    members: u32,
    open_claims: u32,
    /// Amounts of open claims.
    claimed: u64,
}

#[derive(Serialize, Deserialize)]
struct Member {
    joined_ms: u64,
    paid_until_ms: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Open,
    Paid,
    Rejected,
}

#[derive(Serialize, Deserialize)]
struct PoolClaim {
    claimant: String,
    amount: u64,
    /// A commitment to the claim's contents, kept off chain.
    commitment: String,
    opened_ms: u64,
    status: Status,
    votes_for: u32,
    votes_against: u32,
    reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ExecuteMsg {
    Join {},
    PayPremium {},
    Claim {
        claim_id: String,
        amount: u64,
        commitment: String,
    },
    Vote {
        claim_id: String,
        approve: bool,
    },
    Close {
        claim_id: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum QueryMsg {
    Rules {},
    Books {},
    Member { member: String },
    Claim { claim_id: String },
}

#[derive(Serialize)]
struct BooksView {
    premiums: u64,
    payouts: u64,
    reserves: u64,
    members: u32,
    open_claims: u32,
    claimed: u64,
    min_capital: u64,
    /// Reserves ÷ minimum capital, in thousandths.
    solvency_permille: u64,
    /// premiums − payouts = reserves (true at every height).
    balanced: bool,
}

#[derive(Serialize)]
struct MemberView {
    member: Option<Member>,
    covered: bool,
}

const RULES: &[u8] = b"rules";
const BOOKS: &[u8] = b"books";

fn key(kind: &str, id: &str) -> Vec<u8> {
    [kind.as_bytes(), b"/", id.as_bytes()].concat()
}

fn rules() -> Result<Rules, String> {
    sdk::load(RULES).ok_or_else(|| "not instantiated".to_string())
}

fn books() -> Books {
    sdk::load(BOOKS).unwrap_or_default()
}

fn covered(r: &Rules, m: &Member, now: u64) -> bool {
    now <= m.paid_until_ms.saturating_add(r.grace_ms)
}

fn instantiate(_env: Env, info: Info, rules: Rules) -> Result<Rules, String> {
    if rules.premium == 0 || rules.period_ms == 0 || rules.min_capital == 0 || rules.quorum == 0 {
        return Err("premium, period_ms, min_capital and quorum must be positive".into());
    }
    if rules.auto_pay_up_to > rules.cover_limit {
        return Err("auto_pay_up_to cannot exceed cover_limit".into());
    }
    if info.funds > 0 {
        return Err("the pool starts empty: its reserves are its members' premiums".into());
    }
    sdk::save(RULES, &rules);
    sdk::save(BOOKS, &Books::default());
    Ok(rules)
}

/// Premiums paid with `funds`: whole periods only.
fn periods(r: &Rules, funds: u64) -> Result<u64, String> {
    if funds == 0 || funds % r.premium != 0 {
        return Err("send a whole number of premiums".into());
    }
    Ok(funds / r.premium)
}

fn pay_premium(env: &Env, info: &Info, joining: bool) -> Result<Member, String> {
    let r = rules()?;
    let n = periods(&r, info.funds)?;
    let k = key("m", &info.sender);
    let mut b = books();
    let now = env.time_ms;
    let m = match sdk::load::<Member>(&k) {
        Some(_) if joining => return Err("already a member".into()),
        None if !joining => return Err("not a member: join first".into()),
        None => {
            b.members += 1;
            Member {
                joined_ms: now,
                paid_until_ms: now,
            }
        }
        Some(m) => m,
    };
    // A lapsed member's cover starts again from now; a current one's extends.
    let start = if covered(&r, &m, now) { m.paid_until_ms.max(now) } else { now };
    let m = Member {
        joined_ms: m.joined_ms,
        paid_until_ms: start.saturating_add(r.period_ms.saturating_mul(n)),
    };
    b.premiums = b.premiums.saturating_add(info.funds);
    sdk::save(&k, &m);
    sdk::save(BOOKS, &b);
    let amount = info.funds.to_string();
    sdk::emit("premium", &[("amount", &amount)]);
    Ok(m)
}

fn payout(b: &mut Books, to: &str, amount: u64) -> Result<(), String> {
    sdk::transfer(to, amount)?;
    b.payouts = b.payouts.saturating_add(amount);
    let text = amount.to_string();
    sdk::emit("payout", &[("amount", &text)]);
    Ok(())
}

fn claim(env: &Env, info: &Info, claim_id: &str, amount: u64, commitment: String) -> Result<PoolClaim, String> {
    let r = rules()?;
    let m: Member = sdk::load(&key("m", &info.sender)).ok_or("not a member")?;
    let k = key("c", claim_id);
    if sdk::get(&k).is_some() {
        return Err("duplicate claim id".into());
    }
    let mut c = PoolClaim {
        claimant: info.sender.clone(),
        amount,
        commitment,
        opened_ms: env.time_ms,
        status: Status::Rejected,
        votes_for: 0,
        votes_against: 0,
        reason: String::new(),
    };
    let mut b = books();
    let reserves = sdk::balance(&env.contract);
    if !covered(&r, &m, env.time_ms) {
        c.reason = "coverage lapsed: premium overdue".into();
    } else if amount == 0 || amount > r.cover_limit {
        c.reason = "amount outside the cover limit".into();
    } else if amount <= r.auto_pay_up_to && amount <= reserves {
        payout(&mut b, &info.sender, amount)?;
        c.status = Status::Paid;
        c.reason = "paid under the rules".into();
    } else {
        c.status = Status::Open;
        c.reason = "open for vote".into();
        b.open_claims += 1;
        b.claimed = b.claimed.saturating_add(amount);
    }
    sdk::save(&k, &c);
    sdk::save(BOOKS, &b);
    Ok(c)
}

fn vote(env: &Env, info: &Info, claim_id: &str, approve: bool) -> Result<PoolClaim, String> {
    let r = rules()?;
    let k = key("c", claim_id);
    let mut c: PoolClaim = sdk::load(&k).ok_or("unknown claim")?;
    if c.status != Status::Open {
        return Err("the claim is closed".into());
    }
    if c.claimant == info.sender {
        return Err("a claimant may not vote on her own claim".into());
    }
    let assessor = r.assessors.contains(&info.sender);
    let member = sdk::load::<Member>(&key("m", &info.sender)).is_some_and(|m| covered(&r, &m, env.time_ms));
    if !assessor && !member {
        return Err("only members in good standing and assessors vote".into());
    }
    let ballot = [key("v", claim_id), b"/".to_vec(), info.sender.as_bytes().to_vec()].concat();
    if sdk::get(&ballot).is_some() {
        return Err("already voted".into());
    }
    sdk::set(&ballot, if approve { b"1" } else { b"0" });
    if approve {
        c.votes_for += 1;
    } else {
        c.votes_against += 1;
    }
    sdk::save(&k, &c);
    Ok(c)
}

fn close(env: &Env, claim_id: &str) -> Result<PoolClaim, String> {
    let r = rules()?;
    let k = key("c", claim_id);
    let mut c: PoolClaim = sdk::load(&k).ok_or("unknown claim")?;
    if c.status != Status::Open {
        return Err("the claim is closed".into());
    }
    if env.time_ms < c.opened_ms.saturating_add(r.voting_period_ms) {
        return Err("the voting period has not ended".into());
    }
    let mut b = books();
    b.open_claims -= 1;
    b.claimed = b.claimed.saturating_sub(c.amount);
    let votes = c.votes_for + c.votes_against;
    if votes < r.quorum {
        c.status = Status::Rejected;
        c.reason = "no quorum".into();
    } else if c.votes_for <= c.votes_against {
        c.status = Status::Rejected;
        c.reason = "rejected by vote".into();
    } else if c.amount > sdk::balance(&env.contract) {
        c.status = Status::Rejected;
        c.reason = "approved, but the reserves cannot pay it".into();
    } else {
        payout(&mut b, &c.claimant, c.amount)?;
        c.status = Status::Paid;
        c.reason = "approved by vote".into();
    }
    sdk::save(&k, &c);
    sdk::save(BOOKS, &b);
    Ok(c)
}

#[derive(Serialize)]
#[serde(untagged)]
enum Reply {
    Member(Member),
    Claim(PoolClaim),
}

fn execute(env: Env, info: Info, msg: ExecuteMsg) -> Result<Reply, String> {
    let no_funds = |info: &Info| {
        if info.funds > 0 {
            Err("this message takes no funds".to_string())
        } else {
            Ok(())
        }
    };
    match msg {
        ExecuteMsg::Join {} => pay_premium(&env, &info, true).map(Reply::Member),
        ExecuteMsg::PayPremium {} => pay_premium(&env, &info, false).map(Reply::Member),
        ExecuteMsg::Claim {
            claim_id,
            amount,
            commitment,
        } => {
            no_funds(&info)?;
            claim(&env, &info, &claim_id, amount, commitment).map(Reply::Claim)
        }
        ExecuteMsg::Vote { claim_id, approve } => {
            no_funds(&info)?;
            vote(&env, &info, &claim_id, approve).map(Reply::Claim)
        }
        ExecuteMsg::Close { claim_id } => {
            no_funds(&info)?;
            close(&env, &claim_id).map(Reply::Claim)
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Answer {
    Rules(Rules),
    Books(BooksView),
    Member(MemberView),
    Claim(Option<PoolClaim>),
}

fn query(env: Env, msg: QueryMsg) -> Result<Answer, String> {
    let r = rules()?;
    Ok(match msg {
        QueryMsg::Rules {} => Answer::Rules(r),
        QueryMsg::Books {} => {
            let b = books();
            let reserves = sdk::balance(&env.contract);
            Answer::Books(BooksView {
                premiums: b.premiums,
                payouts: b.payouts,
                reserves,
                members: b.members,
                open_claims: b.open_claims,
                claimed: b.claimed,
                min_capital: r.min_capital,
                solvency_permille: reserves.saturating_mul(1000) / r.min_capital,
                balanced: b.premiums.checked_sub(b.payouts) == Some(reserves),
            })
        }
        QueryMsg::Member { member } => {
            let m: Option<Member> = sdk::load(&key("m", &member));
            let covered = m.as_ref().is_some_and(|m| covered(&r, m, env.time_ms));
            Answer::Member(MemberView { member: m, covered })
        }
        QueryMsg::Claim { claim_id } => Answer::Claim(sdk::load(&key("c", &claim_id))),
    })
}

sdk::entry_points!(instantiate = instantiate, execute = execute, query = query);
