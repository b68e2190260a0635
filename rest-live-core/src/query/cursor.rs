//! Keyset cursors: the opaque `next` of a page and the `after` that continues it. A cursor holds
//! the last row's position (its ordering values, then its primary key) and a fingerprint of the
//! query it belongs to, under a checksum: a cursor that was edited, or that is passed with
//! another filter or ordering, is refused. It is not secret and grants nothing: the query it
//! continues is scoped by the principal's permissions like any other.

use std::hash::Hasher;

use data_encoding::BASE64URL_NOPAD;
use serde_json::Value;

use super::Query;
use crate::meta::ResourceMeta;

/// A stable fingerprint of what a client asked: of its [`canonical`](super::canonical) text.
pub fn fingerprint(meta: &ResourceMeta, query: &Query) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(super::canonical(meta, query).as_bytes());
    h.finish()
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let mut h = fnv::FnvHasher::default();
    h.write(b"rest-live cursor v1\0");
    h.write(payload);
    h.finish().to_be_bytes()
}

/// The cursor of `position` in the query with `fingerprint`.
pub fn encode(fingerprint: u64, position: &[Value]) -> String {
    let body = Value::Array(
        std::iter::once(Value::from(format!("{fingerprint:016x}")))
            .chain(position.iter().cloned())
            .collect(),
    );
    let mut bytes = body.to_string().into_bytes();
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);
    BASE64URL_NOPAD.encode(&bytes)
}

/// The position a cursor holds, if it is intact and belongs to the query with `fingerprint`
/// and `len` position values.
pub fn decode(cursor: &str, fingerprint: u64, len: usize) -> Option<Vec<Value>> {
    let bytes = BASE64URL_NOPAD.decode(cursor.as_bytes()).ok()?;
    let (payload, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    if checksum(payload) != sum {
        return None;
    }
    let Ok(Value::Array(mut values)) = crate::json::from_slice(payload) else {
        return None;
    };
    if values.len() != len + 1 || values[0] != format!("{fingerprint:016x}") {
        return None;
    }
    values.remove(0);
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_refuses_edits() {
        let position = vec![json!(3), json!("ä"), json!(7)];
        let c = encode(42, &position);
        assert_eq!(decode(&c, 42, 3), Some(position));
        assert_eq!(decode(&c, 43, 3), None);
        assert_eq!(decode(&c, 42, 2), None);
        let mut edited = c.into_bytes();
        edited[3] = if edited[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(decode(std::str::from_utf8(&edited).unwrap(), 42, 3), None);
        assert_eq!(decode("", 42, 3), None);
        assert_eq!(decode("!!", 42, 3), None);
    }
}
