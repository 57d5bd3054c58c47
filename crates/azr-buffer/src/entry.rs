//! An entry and its deduplication key.

use crate::error::Error;
use crate::task::TaskType;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One stored task: the record as JSON bytes, the step it entered, its content
/// hash and an id that never changes (also across restarts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub step: u64,
    pub hash: [u8; 16],
    pub record: Box<[u8]>,
}

impl Entry {
    /// The record parsed back into JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.record).expect("records are validated JSON when added")
    }
}

/// Collapse formatting that does not change a program: line endings, trailing
/// spaces, blank lines, and surrounding whitespace.
fn normalize_code(text: &str) -> String {
    text.replace("\r\n", "\n")
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The content hash that deduplicates tasks: normalized (program, input) for
/// deduction and abduction, (program, inputs) for induction. Records without
/// those fields are keyed by their whole canonical JSON.
pub fn content_hash(task: TaskType, record: &Value) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(task.as_str().as_bytes());
    let program = record.get("program").and_then(Value::as_str);
    let key_field = match task {
        TaskType::Induction => record.get("inputs"),
        _ => record.get("input"),
    };
    match (program, key_field) {
        (Some(program), Some(key)) => {
            hasher.update(b"\0program\0");
            hasher.update(normalize_code(program).as_bytes());
            hasher.update(b"\0input\0");
            match key {
                Value::String(s) => hasher.update(s.trim().as_bytes()),
                Value::Array(items) => {
                    for item in items {
                        hasher.update(
                            item.as_str()
                                .map(str::trim)
                                .unwrap_or(&item.to_string())
                                .as_bytes(),
                        );
                        hasher.update(b"\0");
                    }
                }
                other => hasher.update(other.to_string().as_bytes()),
            }
        }
        // serde_json's Map is ordered by key, so this text is canonical.
        _ => hasher.update(record.to_string().as_bytes()),
    }
    let digest = hasher.finalize();
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&digest[..16]);
    hash
}

/// Parse a record and check it is a JSON object.
pub(crate) fn parse_record(bytes: &[u8]) -> Result<Value, Error> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| Error::BadRecord(e.to_string()))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(Error::BadRecord("a record must be a JSON object".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formatting_does_not_change_the_key() {
        let a = json!({"program": "def f(a):\n    return a\n", "input": "'x'", "output": "'x'"});
        let b = json!({"program": "def f(a):   \r\n\n    return a", "input": " 'x' ", "output": "other"});
        assert_eq!(
            content_hash(TaskType::Deduction, &a),
            content_hash(TaskType::Deduction, &b)
        );
        assert_ne!(
            content_hash(TaskType::Deduction, &a),
            content_hash(TaskType::Abduction, &a)
        );
        let c = json!({"program": "def f(a):\n    return a", "input": "'y'"});
        assert_ne!(
            content_hash(TaskType::Deduction, &a),
            content_hash(TaskType::Deduction, &c)
        );
    }

    #[test]
    fn induction_keys_on_all_inputs() {
        let a = json!({"program": "def f(a):\n    return a", "inputs": ["1", "2"]});
        let b = json!({"program": "def f(a):\n    return a", "inputs": ["1", "3"]});
        assert_ne!(
            content_hash(TaskType::Induction, &a),
            content_hash(TaskType::Induction, &b)
        );
    }
}
