//! Validation against GS1's official EPCIS 2.0 JSON schema, compiled once. Errors name the
//! JSON path that failed and, when it lies inside an event, the event's index, so a capture
//! can refuse one event (`proceed`) or the whole document (`rollback`).

use std::sync::OnceLock;

use serde_json::Value;

const SCHEMA: &str = include_str!("../schema/EPCIS-JSON-Schema.json");

/// One schema violation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SchemaError {
    /// The event it lies in (`epcisBody.eventList[i]`), if any.
    pub event: Option<usize>,
    /// The JSON pointer of the offending value.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA).unwrap_or(Value::Null);
        jsonschema::validator_for(&schema)
            .or_else(|_| jsonschema::validator_for(&Value::Bool(true)))
            .unwrap_or_else(|_| unreachable!("the schema `true` compiles"))
    })
}

/// The violations of `doc` (empty when it is valid), at most `limit`.
pub fn validate(doc: &Value, limit: usize) -> Vec<SchemaError> {
    validator()
        .iter_errors(doc)
        .take(limit)
        .map(|e| {
            let path = e.instance_path().to_string();
            let event = path
                .strip_prefix("/epcisBody/eventList/")
                .and_then(|r| r.split('/').next())
                .and_then(|i| i.parse().ok());
            // The message quotes the offending value: keep it short.
            let mut message = e.to_string();
            if message.len() > 300 {
                let mut cut = 300;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push('…');
            }
            SchemaError {
                event,
                path,
                message,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_gs1s_and_compiles() {
        let shared = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/epcis/EPCIS-JSON-Schema.json"
        );
        if let Ok(theirs) = std::fs::read_to_string(shared) {
            assert_eq!(theirs, SCHEMA);
        }
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        assert!(jsonschema::validator_for(&schema).is_ok());
    }

    #[test]
    fn errors_name_the_event_and_path() {
        let doc = serde_json::json!({
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
            "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2024-01-01T00:00:00Z",
            "epcisBody": {"eventList": [
                {"type": "ObjectEvent", "eventTime": "2024-01-01T00:00:00Z", "eventTimeZoneOffset": "+00:00",
                 "action": "OBSERVE", "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"]},
                {"type": "ObjectEvent", "eventTime": "yesterday", "eventTimeZoneOffset": "+00:00",
                 "action": "SOMETIMES", "epcList": []}
            ]}
        });
        let errs = validate(&doc, 10);
        assert!(!errs.is_empty());
        assert!(errs.iter().all(|e| e.event == Some(1)), "{errs:?}");
    }
}
