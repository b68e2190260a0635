//! Strict JSON: what clients send (WebSocket frames in every format, HTTP bodies) is decoded here,
//! into the same [`Value`] serde_json builds, except that an object with a duplicate key, at any
//! depth, is an error.
//!
//! serde_json keeps the last of duplicate keys, while other parsers keep the first or refuse: a
//! filter in front of the server could then read `{"action": "retrieve", …, "action": "delete"}`
//! as a retrieve while the server deletes. The check is made in the one pass that builds the
//! value (a map entry is looked up once, as serde_json's own insert does), so it costs nothing
//! measurable on the hot path.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Parses `text` as one JSON document, refusing duplicate keys.
///
/// The error reads like serde_json's own, with the position of the repeated key:
/// `duplicate key "action" at line 1 column 52`.
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// [`from_str`] for bytes (an HTTP body); invalid UTF-8 is an error like any other.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Builds a [`Value`] exactly as serde_json's own visitor does, but refuses a repeated key.
/// serde_json's recursion limit applies as usual: nesting is bounded by the deserializer.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // As serde_json: a non-finite float (unreachable from JSON text) is null.
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match map.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(access.next_value_seed(self)?);
                }
                Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate key {}",
                        Value::from(slot.key().as_str())
                    )));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use serde_json::Value;

    use super::from_str;

    /// A JSON document as written, where an object may repeat a key.
    #[derive(Debug, Clone)]
    enum Doc {
        Null,
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
        Arr(Vec<Doc>),
        /// Entries in order; `true` writes the key with every character `\u`-escaped (the same
        /// key to a parser).
        Obj(Vec<(String, bool, Doc)>),
    }

    fn escaped(key: &str) -> String {
        let mut out = String::from("\"");
        for unit in key.encode_utf16() {
            out.push_str(&format!("\\u{unit:04x}"));
        }
        out.push('"');
        out
    }

    fn render(doc: &Doc, out: &mut String) {
        match doc {
            Doc::Null => out.push_str("null"),
            Doc::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Doc::Int(n) => out.push_str(&n.to_string()),
            Doc::Float(f) => out.push_str(&Value::from(*f).to_string()),
            Doc::Str(s) => out.push_str(&Value::from(s.as_str()).to_string()),
            Doc::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    render(item, out);
                }
                out.push(']');
            }
            Doc::Obj(entries) => {
                out.push('{');
                for (i, (key, escape, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if *escape {
                        out.push_str(&escaped(key));
                    } else {
                        out.push_str(&Value::from(key.as_str()).to_string());
                    }
                    out.push(':');
                    render(value, out);
                }
                out.push('}');
            }
        }
    }

    /// Whether some object of `doc`, at any depth, repeats a key.
    fn has_duplicate(doc: &Doc) -> bool {
        match doc {
            Doc::Arr(items) => items.iter().any(has_duplicate),
            Doc::Obj(entries) => {
                let mut seen = BTreeSet::new();
                entries.iter().any(|(k, _, _)| !seen.insert(k.as_str()))
                    || entries.iter().any(|(_, _, v)| has_duplicate(v))
            }
            _ => false,
        }
    }

    fn doc() -> impl Strategy<Value = Doc> {
        let leaf = prop_oneof![
            Just(Doc::Null),
            any::<bool>().prop_map(Doc::Bool),
            any::<i64>().prop_map(Doc::Int),
            (-1e300f64..1e300).prop_map(Doc::Float),
            "[a-c\u{e9}\"\\\\]{0,3}".prop_map(Doc::Str),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            // Few key names: repeats happen often by chance, and as often not at all.
            let key = "[ab\u{e9}]{0,2}";
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Doc::Arr),
                prop::collection::vec((key, any::<bool>(), inner), 0..5).prop_map(Doc::Obj),
            ]
        })
    }

    /// `doc` with one key of one of its objects written twice (the object at the `pick`-th
    /// place of a walk, or a new one wrapping the document when it has none).
    fn inject(doc: &Doc, pick: usize) -> Doc {
        fn objects(doc: &Doc) -> usize {
            match doc {
                Doc::Arr(items) => items.iter().map(objects).sum(),
                Doc::Obj(entries) => 1 + entries.iter().map(|(_, _, v)| objects(v)).sum::<usize>(),
                _ => 0,
            }
        }
        fn walk(doc: &Doc, target: usize, at: &mut usize) -> Doc {
            match doc {
                Doc::Arr(items) => Doc::Arr(items.iter().map(|d| walk(d, target, at)).collect()),
                Doc::Obj(entries) => {
                    let here = *at == target;
                    *at += 1;
                    let mut entries: Vec<_> = entries
                        .iter()
                        .map(|(k, e, v)| (k.clone(), *e, walk(v, target, at)))
                        .collect();
                    if here {
                        match entries.first() {
                            Some((key, _, _)) => entries.push((key.clone(), true, Doc::Null)),
                            None => {
                                entries.push(("k".into(), false, Doc::Null));
                                entries.push(("k".into(), true, Doc::Bool(true)));
                            }
                        }
                    }
                    Doc::Obj(entries)
                }
                other => other.clone(),
            }
        }
        let count = objects(doc);
        if count == 0 {
            return Doc::Obj(vec![
                ("k".into(), false, doc.clone()),
                ("k".into(), false, Doc::Null),
            ]);
        }
        walk(doc, pick % count, &mut 0)
    }

    proptest! {
        #[test]
        fn refused_exactly_when_a_key_repeats(doc in doc()) {
            let mut text = String::new();
            render(&doc, &mut text);
            let strict = from_str(&text);
            if has_duplicate(&doc) {
                let error = strict.expect_err("a duplicate key is refused").to_string();
                prop_assert!(error.starts_with("duplicate key "), "{error}");
            } else {
                let expected: Value = serde_json::from_str(&text).expect("valid JSON");
                prop_assert_eq!(strict.expect("no duplicate key"), expected);
            }
        }

        #[test]
        fn an_injected_duplicate_is_always_refused(doc in doc(), pick in any::<usize>()) {
            let mut text = String::new();
            render(&inject(&doc, pick), &mut text);
            prop_assert!(from_str(&text).is_err(), "{text}");
            // serde_json itself takes the same text (last wins).
            prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
        }
    }

    #[test]
    fn the_error_names_the_key_and_its_place() {
        let error = from_str(r#"{"stream": "t", "payload": [{"a": 1, "\u0061": 2}]}"#)
            .expect_err("refused")
            .to_string();
        assert_eq!(error, "duplicate key \"a\" at line 1 column 45");
        // Equal values are a duplicate all the same.
        assert!(from_str(r#"{"a": 1, "a": 1}"#).is_err());
        // Other errors and trailing text are serde_json's.
        assert!(from_str(r#"{"a": 1} x"#).is_err());
        assert!(super::from_slice(b"{\"a\": \"\xff\"}").is_err());
        assert_eq!(
            super::from_slice(br#"{"a": [1, 2.5, "x", null, true, {}]}"#).expect("valid"),
            serde_json::json!({"a": [1, 2.5, "x", null, true, {}]})
        );
    }
}
