//! Claims: an insurer publishes its adjudication rules as an instance of this contract
//! (covered codes, the fee schedule, units per member and benefit period, the share it pays,
//! pre-authorization, review), funds it with tokens and enrolls its members (by pseudonym);
//! a provider's claim is decided here, deterministically, in the block that carries it, and
//! what it pays goes from the contract to the provider in the same transaction.
//!
//! Reason codes are X12 Claim Adjustment Reason Codes (CARC), the ones payers already send.
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use carechain_contract_sdk::{self as sdk, Env, Info};
use serde::{Deserialize, Serialize};

/// CARC 16: the claim lacks information needed for adjudication.
const LACKS_INFO: &str = "16";
/// CARC 18: exact duplicate claim or service.
const DUPLICATE: &str = "18";
/// CARC 26: expenses incurred before coverage.
const BEFORE_COVERAGE: &str = "26";
/// CARC 27: expenses incurred after coverage terminated.
const AFTER_COVERAGE: &str = "27";
/// CARC 31: the patient cannot be identified as our insured.
const NOT_INSURED: &str = "31";
/// CARC 2: coinsurance amount (the member's share).
const COINSURANCE: &str = "2";
/// CARC 45: the charge exceeds the fee schedule.
const OVER_SCHEDULE: &str = "45";
/// CARC 96: non-covered charge.
const NOT_COVERED: &str = "96";
/// CARC 119: benefit maximum for this period has been reached.
const MAXIMUM_REACHED: &str = "119";
/// CARC 197: pre-certification/authorization absent.
const NO_PREAUTH: &str = "197";
/// CARC B7: this provider was not certified/eligible to be paid for this service.
const PROVIDER_INELIGIBLE: &str = "B7";
/// CARC 133: the disposition of this service line is pending further review.
const PENDING_REVIEW: &str = "133";

/// One covered service.
#[derive(Clone, Serialize, Deserialize)]
struct Benefit {
    /// The billing code (CPT, HCPCS, ... as the plan names it).
    code: String,
    /// The fee schedule: the most the plan allows per unit, in minor units.
    price: u64,
    /// Units allowed per member and benefit period.
    max_units: u32,
    /// The share of the allowed amount the plan pays, in percent.
    pays_percent: u8,
    /// Whether a pre-authorization is required.
    #[serde(default)]
    preauth: bool,
    /// Whether each line is pended for the insurer's review.
    #[serde(default)]
    review: bool,
}

/// The published rules.
#[derive(Clone, Serialize, Deserialize)]
struct Plan {
    name: String,
    /// The benefit period's length (limits reset at each multiple of it).
    period_ms: u64,
    benefits: Vec<Benefit>,
    /// Claims whose benefit exceeds this are pended for review.
    #[serde(default)]
    pend_above: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Config {
    insurer: String,
    plan: Plan,
    /// Eligible providers: practitioners, or organizations (whose practitioners are eligible).
    providers: Vec<String>,
    /// Submitters the insurer accepts claims from on a provider's behalf (a clearinghouse,
    /// or the node of the provider's organization, which authenticated the provider).
    #[serde(default)]
    submitters: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Enrollment {
    from_ms: u64,
    until_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct PreAuth {
    member: String,
    code: String,
    units: u32,
}

#[derive(Deserialize)]
struct InstantiateMsg {
    plan: Plan,
    providers: Vec<String>,
    #[serde(default)]
    submitters: Vec<String>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Item {
    sequence: u32,
    code: String,
    quantity: u32,
    unit_price: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct Claim {
    /// Unique per claim (the node derives it from the provider and the Claim's identifier).
    claim_id: String,
    /// The member's pseudonym (never a name or a member number).
    member: String,
    /// The rendering provider (a did:key).
    provider: String,
    service_ms: u64,
    items: Vec<Item>,
    #[serde(default)]
    preauth: Option<String>,
    /// A commitment to the claim's full contents, kept off chain.
    inputs: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ExecuteMsg {
    Enroll {
        member: String,
        from_ms: u64,
        until_ms: u64,
    },
    Disenroll {
        member: String,
    },
    SetPlan {
        plan: Plan,
    },
    AddProvider {
        provider: String,
    },
    RemoveProvider {
        provider: String,
    },
    AddSubmitter {
        submitter: String,
    },
    RemoveSubmitter {
        submitter: String,
    },
    Preauthorize {
        reference: String,
        member: String,
        code: String,
        units: u32,
    },
    Submit(Claim),
    Decide {
        claim_id: String,
        approve: bool,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum QueryMsg {
    Config {},
    Claim { claim_id: String },
    Member { member: String },
}

/// FHIR ClaimResponse.outcome.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Queued,
    Complete,
    Error,
    Partial,
}

#[derive(Clone, Serialize, Deserialize)]
struct ItemDecision {
    sequence: u32,
    code: String,
    submitted: u64,
    eligible: u64,
    benefit: u64,
    units: u32,
    reasons: Vec<String>,
    pended: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct Decision {
    claim_id: String,
    member: String,
    provider: String,
    service_ms: u64,
    /// The benefit period the lines count against.
    period: u64,
    outcome: Outcome,
    errors: Vec<String>,
    items: Vec<ItemDecision>,
    submitted: u64,
    benefit: u64,
    paid: u64,
    pended: u64,
    height: u64,
    inputs: String,
}

#[derive(Serialize)]
struct MemberView {
    enrollment: Option<Enrollment>,
    usage: Vec<(String, u32)>,
}

const CONFIG: &[u8] = b"config";

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("/").into_bytes()
}

fn config() -> Result<Config, String> {
    sdk::load(CONFIG).ok_or_else(|| "not instantiated".to_string())
}

fn check_plan(plan: &Plan) -> Result<(), String> {
    if plan.period_ms == 0 {
        return Err("period_ms must be positive".into());
    }
    for (i, b) in plan.benefits.iter().enumerate() {
        if b.pays_percent > 100 || b.code.is_empty() {
            return Err(format!("benefit {i}: pays_percent ≤ 100 and a code"));
        }
        if plan.benefits[..i].iter().any(|o| o.code == b.code) {
            return Err(format!("benefit {i}: code {} twice", b.code));
        }
    }
    Ok(())
}

fn instantiate(_env: Env, info: Info, msg: InstantiateMsg) -> Result<Config, String> {
    check_plan(&msg.plan)?;
    let config = Config {
        insurer: info.sender,
        plan: msg.plan,
        providers: msg.providers,
        submitters: msg.submitters,
    };
    sdk::save(CONFIG, &config);
    Ok(config)
}

/// Whether `sender` may submit for `provider`, and whether `provider` is eligible.
fn provider_checks(config: &Config, sender: &str, provider: &str) -> (bool, bool) {
    let ident = sdk::identity(provider);
    let org = ident.as_ref().and_then(|i| i.organization.clone());
    let active = ident.as_ref().is_some_and(|i| i.active);
    let may_submit = sender == provider
        || org.as_deref() == Some(sender)
        || config.submitters.iter().any(|s| s == sender);
    let eligible = active
        && config
            .providers
            .iter()
            .any(|p| p == provider || Some(p.as_str()) == org.as_deref());
    (may_submit, eligible)
}

fn claim_errors(config: &Config, env: &Env, claim: &Claim, sender: &str) -> Result<Vec<String>, String> {
    let (may_submit, eligible) = provider_checks(config, sender, &claim.provider);
    if !may_submit {
        return Err("only the provider or its organization may submit its claims".into());
    }
    let mut errors = Vec::new();
    if sdk::get(&key(&["claim", &claim.claim_id])).is_some() {
        errors.push(DUPLICATE.to_string());
        return Ok(errors);
    }
    if claim.items.is_empty() || claim.member.is_empty() || claim.service_ms > env.time_ms {
        errors.push(LACKS_INFO.to_string());
    }
    if !eligible {
        errors.push(PROVIDER_INELIGIBLE.to_string());
    }
    match sdk::load::<Enrollment>(&key(&["member", &claim.member])) {
        None => errors.push(NOT_INSURED.to_string()),
        Some(e) if claim.service_ms < e.from_ms => errors.push(BEFORE_COVERAGE.to_string()),
        Some(e) if claim.service_ms >= e.until_ms => errors.push(AFTER_COVERAGE.to_string()),
        Some(_) => {}
    }
    Ok(errors)
}

fn pay(to: &str, amount: u64) -> Result<(), String> {
    if amount > 0 {
        sdk::transfer(to, amount)?;
    }
    Ok(())
}

fn outcome_of(errors: &[String], items: &[ItemDecision]) -> Outcome {
    if !errors.is_empty() {
        Outcome::Error
    } else if items.iter().all(|i| i.pended) {
        Outcome::Queued
    } else if items.iter().any(|i| i.pended) {
        Outcome::Partial
    } else {
        Outcome::Complete
    }
}

fn submit(env: &Env, info: &Info, claim: Claim) -> Result<Decision, String> {
    let config = config()?;
    let errors = claim_errors(&config, env, &claim, &info.sender)?;
    let submitted = claim
        .items
        .iter()
        .fold(0u64, |s, i| s.saturating_add(i.unit_price.saturating_mul(u64::from(i.quantity))));
    let mut d = Decision {
        claim_id: claim.claim_id.clone(),
        member: claim.member.clone(),
        provider: claim.provider.clone(),
        service_ms: claim.service_ms,
        period: claim.service_ms / config.plan.period_ms,
        outcome: Outcome::Error,
        errors,
        items: Vec::new(),
        submitted,
        benefit: 0,
        paid: 0,
        pended: 0,
        height: env.height,
        inputs: claim.inputs.clone(),
    };
    if !d.errors.is_empty() {
        let duplicate = d.errors.iter().any(|e| e == DUPLICATE);
        if !duplicate {
            sdk::save(&key(&["claim", &claim.claim_id]), &d);
        }
        emit(&d);
        return Ok(d);
    }
    let period = d.period;
    let mut u = usage(&claim.member, period);
    for item in &claim.items {
        let line = adjudicate(&config.plan, &claim, item, &mut u);
        d.items.push(line);
    }
    d.benefit = d.items.iter().map(|i| i.benefit).sum();
    let over = config.plan.pend_above.is_some_and(|limit| d.benefit > limit);
    let now: u64 = d.items.iter().filter(|i| !i.pended).map(|i| i.benefit).sum();
    if over || now > sdk::balance(&env.contract) {
        for i in d.items.iter_mut().filter(|i| !i.pended && i.benefit > 0) {
            i.pended = true;
            i.reasons.push(PENDING_REVIEW.to_string());
        }
    }
    d.paid = d.items.iter().filter(|i| !i.pended).map(|i| i.benefit).sum();
    d.pended = d.benefit - d.paid;
    d.outcome = outcome_of(&d.errors, &d.items);
    pay(&claim.provider, d.paid)?;
    sdk::save(&usage_key(&claim.member, period), &u);
    sdk::save(&key(&["claim", &claim.claim_id]), &d);
    emit(&d);
    Ok(d)
}

fn decide(env: &Env, claim_id: &str, approve: bool) -> Result<Decision, String> {
    let k = key(&["claim", claim_id]);
    let mut d: Decision = sdk::load(&k).ok_or("unknown claim")?;
    if d.pended == 0 {
        return Err("nothing pended on this claim".into());
    }
    if approve {
        pay(&d.provider, d.pended)?;
        d.paid += d.pended;
    } else {
        // A denied line gives its units back to the member's period, and its service day.
        let period = d.period;
        let day = (d.service_ms / 86_400_000).to_string();
        let mut u = usage(&d.member, period);
        d.benefit -= d.pended;
        for i in d.items.iter_mut().filter(|i| i.pended) {
            add_use(&mut u, &i.code, -i64::from(i.units));
            sdk::remove(&key(&["svc", &d.member, &i.code, &day]));
            i.benefit = 0;
            i.units = 0;
            i.reasons.push(NOT_COVERED.to_string());
        }
        sdk::save(&usage_key(&d.member, period), &u);
    }
    for i in d.items.iter_mut() {
        i.pended = false;
        i.reasons.retain(|r| r != PENDING_REVIEW);
    }
    d.pended = 0;
    d.outcome = outcome_of(&d.errors, &d.items);
    d.height = env.height;
    sdk::save(&k, &d);
    emit(&d);
    Ok(d)
}

fn emit(d: &Decision) {
    let outcome = match d.outcome {
        Outcome::Queued => "queued",
        Outcome::Complete => "complete",
        Outcome::Error => "error",
        Outcome::Partial => "partial",
    };
    let paid = d.paid.to_string();
    sdk::emit("claim", &[("claim", &d.claim_id), ("outcome", outcome), ("paid", &paid)]);
}

fn only_insurer(config: &Config, info: &Info) -> Result<(), String> {
    if info.sender == config.insurer {
        Ok(())
    } else {
        Err("only the insurer may change the plan, members or providers".into())
    }
}

/// A decision with what the call read to reach it, so that anyone can run the contract
/// again offline on the same reads and get the same decision (`carechain verify-claim`).
#[derive(Serialize)]
struct Decided {
    decision: Decision,
    witness: sdk::witness::Witness,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Reply {
    Done { ok: bool },
    Decided(Decided),
}

fn decided(d: Decision) -> Reply {
    Reply::Decided(Decided {
        decision: d,
        witness: sdk::witness::take(),
    })
}

fn execute(env: Env, info: Info, msg: ExecuteMsg) -> Result<Reply, String> {
    let done = Ok(Reply::Done { ok: true });
    match msg {
        ExecuteMsg::Submit(claim) => return submit(&env, &info, claim).map(decided),
        ExecuteMsg::Decide { claim_id, approve } => {
            only_insurer(&config()?, &info)?;
            return decide(&env, &claim_id, approve).map(decided);
        }
        _ => {}
    }
    let mut config = config()?;
    only_insurer(&config, &info)?;
    match msg {
        ExecuteMsg::Enroll {
            member,
            from_ms,
            until_ms,
        } => {
            if from_ms >= until_ms || member.is_empty() {
                return Err("an enrollment needs a member and from_ms < until_ms".into());
            }
            sdk::save(&key(&["member", &member]), &Enrollment { from_ms, until_ms });
        }
        ExecuteMsg::Disenroll { member } => sdk::remove(&key(&["member", &member])),
        ExecuteMsg::SetPlan { plan } => {
            check_plan(&plan)?;
            config.plan = plan;
            sdk::save(CONFIG, &config);
        }
        ExecuteMsg::AddProvider { provider } => {
            if !config.providers.contains(&provider) {
                config.providers.push(provider);
                sdk::save(CONFIG, &config);
            }
        }
        ExecuteMsg::RemoveProvider { provider } => {
            config.providers.retain(|p| *p != provider);
            sdk::save(CONFIG, &config);
        }
        ExecuteMsg::AddSubmitter { submitter } => {
            if !config.submitters.contains(&submitter) {
                config.submitters.push(submitter);
                sdk::save(CONFIG, &config);
            }
        }
        ExecuteMsg::RemoveSubmitter { submitter } => {
            config.submitters.retain(|p| *p != submitter);
            sdk::save(CONFIG, &config);
        }
        ExecuteMsg::Preauthorize {
            reference,
            member,
            code,
            units,
        } => {
            let k = key(&["preauth", &reference]);
            if sdk::get(&k).is_some() {
                return Err("pre-authorization reference already used".into());
            }
            sdk::save(&k, &PreAuth { member, code, units });
        }
        ExecuteMsg::Submit(_) | ExecuteMsg::Decide { .. } => {}
    }
    done
}

#[derive(Serialize)]
#[serde(untagged)]
enum Answer {
    Config(Config),
    Claim(Option<Decision>),
    Member(MemberView),
}

fn query(env: Env, msg: QueryMsg) -> Result<Answer, String> {
    Ok(match msg {
        QueryMsg::Config {} => Answer::Config(config()?),
        QueryMsg::Claim { claim_id } => Answer::Claim(sdk::load(&key(&["claim", &claim_id]))),
        QueryMsg::Member { member } => {
            let period = env.time_ms / config()?.plan.period_ms;
            Answer::Member(MemberView {
                enrollment: sdk::load(&key(&["member", &member])),
                usage: usage(&member, period),
            })
        }
    })
}

mod adjudicate;
use adjudicate::{add_use, adjudicate, usage, usage_key};

sdk::entry_points!(instantiate = instantiate, execute = execute, query = query);
