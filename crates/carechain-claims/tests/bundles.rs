//! Bad input never panics: any JSON given to `Claim/$submit` is either a claim that can be
//! decided or a list of named problems; prices become minor units exactly or not at all.

use carechain_claims::bundle::minor_units;
use carechain_claims::{ClaimBundle, claim_id, member_pseudonym};
use carechain_crypto::Hash;
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9:/|._-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("resourceType".to_string()),
                    Just("entry".to_string()),
                    Just("resource".to_string()),
                    Just("item".to_string()),
                    Just("insurer".to_string()),
                    Just("identifier".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_json_is_a_claim_or_named_problems(v in json_value(), rt in prop_oneof![Just("Bundle"), Just("Claim")]) {
        let mut v = v;
        if let Value::Object(o) = &mut v {
            o.insert("resourceType".into(), json!(rt));
        }
        match ClaimBundle::parse(&v, 2) {
            Ok(c) => prop_assert!(!c.lines.is_empty()),
            Err(problems) => prop_assert!(!problems.is_empty() && problems.iter().all(|p| !p.path.is_empty())),
        }
    }

    /// A Bundle holding a Claim whose every element is random (items, insurer, insurance and
    /// the rest), beside random other entries.
    #[test]
    fn any_claim_in_a_bundle_is_decidable_or_named_problems(
        claim in json_value(), items in prop::collection::vec(json_value(), 0..4), other in json_value()
    ) {
        let mut claim = match claim { Value::Object(o) => Value::Object(o), v => json!({"x": v}) };
        claim["resourceType"] = json!("Claim");
        claim["status"] = json!("active");
        claim["use"] = json!("claim");
        claim["item"] = Value::from(items);
        let bundle = json!({"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": "urn:uuid:c", "resource": claim}, {"resource": other}]});
        if let Err(problems) = ClaimBundle::parse(&bundle, 2) {
            prop_assert!(!problems.is_empty());
        }
    }

    #[test]
    fn prices_are_exact_minor_units_or_refused(whole in 0u64..1_000_000, cents in 0u64..100) {
        let text = format!("{whole}.{cents:02}");
        let v: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(minor_units(&v, 2), Some(whole * 100 + cents));
        let finer: Value = serde_json::from_str(&format!("{whole}.{cents:02}1")).unwrap();
        prop_assert_eq!(minor_units(&finer, 2), None);
    }

    #[test]
    fn pseudonyms_and_claim_ids_are_stable_and_distinct(a in "[A-Z0-9-]{1,20}", b in "[A-Z0-9-]{1,20}") {
        let c = Hash([7; 32]);
        prop_assert_eq!(member_pseudonym(&c, &a), member_pseudonym(&c, &a));
        prop_assert_eq!(a == b, member_pseudonym(&c, &a) == member_pseudonym(&c, &b));
        let p = carechain_crypto::SecretKey::from_seed(&[3; 32]).public().did();
        prop_assert_eq!(a == b, claim_id(&p, &a) == claim_id(&p, &b));
    }
}
