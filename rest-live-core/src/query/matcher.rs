//! A query evaluated in memory on a row as JSON (a change's old or new row from the change
//! log), with the database's answer on every row: the rules of PROTOCOL §3 once more, in Rust.
//! The differential tests hold the two together.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::{Condition, Operand, OrderTerm, Query, pk_index};
use crate::meta::{Kind, Lookup, ResourceMeta};

/// Lower-cases `text` one character at a time, each to one character (Unicode's simple case
/// mapping, as PostgreSQL's `lower()` under a UTF-8 locale does it): `Ä` → `ä`, `Σ` → `σ`,
/// `İ` → `i`. SQLite gets this very function (`rest_live_fold`), so both backends and the
/// matcher fold alike.
pub fn fold(text: &str) -> String {
    text.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// Whether `row` meets every condition of `query`.
pub fn matches(meta: &ResourceMeta, query: &Query, row: &Map<String, Value>) -> bool {
    query
        .conditions
        .iter()
        .all(|c| condition_holds(meta, c, row))
}

/// Whether `row` meets `condition`.
pub fn condition_holds(
    meta: &ResourceMeta,
    condition: &Condition,
    row: &Map<String, Value>,
) -> bool {
    let field = &meta.fields[condition.field];
    let value = row.get(field.name).unwrap_or(&Value::Null);
    let kind = field.kind;
    match (condition.lookup, &condition.operand) {
        (Lookup::IsNull, Operand::Flag(flag)) => value.is_null() == *flag,
        (Lookup::IsNull, _) => false,
        (Lookup::Exact, Operand::Value(Value::Null)) => value.is_null(),
        (Lookup::Ne, Operand::Value(Value::Null)) => !value.is_null(),
        (Lookup::Exact, Operand::Value(v)) => equal(kind, value, v),
        (Lookup::Ne, Operand::Value(v)) => !value.is_null() && !equal(kind, value, v),
        (Lookup::In, Operand::List(list)) => list.iter().any(|v| equal(kind, value, v)),
        (lookup @ (Lookup::Lt | Lookup::Lte | Lookup::Gt | Lookup::Gte), Operand::Value(v)) => {
            match compare(kind, value, v) {
                Some(o) => match lookup {
                    Lookup::Lt => o == Ordering::Less,
                    Lookup::Lte => o != Ordering::Greater,
                    Lookup::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                },
                None => false,
            }
        }
        (lookup, Operand::Value(Value::String(operand))) if lookup.is_text() => {
            let Value::String(text) = value else {
                return false;
            };
            match lookup {
                Lookup::Contains => text.contains(operand.as_str()),
                Lookup::StartsWith => text.starts_with(operand.as_str()),
                Lookup::IContains => fold(text).contains(&fold(operand)),
                Lookup::IStartsWith => fold(text).starts_with(&fold(operand)),
                _ => fold(text) == fold(operand),
            }
        }
        _ => false,
    }
}

/// SQL equality: a null equals nothing.
fn equal(kind: Kind, a: &Value, b: &Value) -> bool {
    match kind {
        Kind::Other => !a.is_null() && !b.is_null() && a == b,
        _ => compare(kind, a, b) == Some(Ordering::Equal),
    }
}

/// SQL comparison of two values of a field of `kind`: `None` when either is null (or when the
/// kind has no order). Text compares by code point, as `COLLATE "C"` does.
pub fn compare(kind: Kind, a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        (Value::Number(a), Value::Number(b)) => match (kind, a.as_i64(), b.as_i64()) {
            (Kind::Int | Kind::Other, Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => match (a.as_u64(), b.as_u64()) {
                (Some(a), Some(b)) if kind != Kind::Float => Some(a.cmp(&b)),
                _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
            },
        },
        _ => None,
    }
}

/// Orders two rows as the query's `ORDER BY` does: the terms, then the primary key ascending.
/// A null (which an orderable field never holds) sorts last.
pub fn order(
    meta: &ResourceMeta,
    ordering: &[OrderTerm],
    a: &Map<String, Value>,
    b: &Map<String, Value>,
) -> Ordering {
    let terms = super::keyset_terms(ordering, pk_index(meta));
    for term in terms {
        let name = meta.fields[term.field].name;
        let (x, y) = (
            a.get(name).unwrap_or(&Value::Null),
            b.get(name).unwrap_or(&Value::Null),
        );
        let o = order_values(meta, term, x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Orders two positions (see `query::position`) in `ordering` as [`order`] orders their rows.
pub fn order_positions(
    meta: &ResourceMeta,
    ordering: &[OrderTerm],
    a: &[Value],
    b: &[Value],
) -> Ordering {
    let terms = super::keyset_terms(ordering, pk_index(meta));
    for ((term, x), y) in terms.iter().zip(a).zip(b) {
        let o = order_values(meta, *term, x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn order_values(meta: &ResourceMeta, term: OrderTerm, x: &Value, y: &Value) -> Ordering {
    let o = match compare(meta.fields[term.field].kind, x, y) {
        Some(o) => o,
        None => x.is_null().cmp(&y.is_null()),
    };
    if term.desc { o.reverse() } else { o }
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn folds_one_character_to_one() {
        assert_eq!(fold("ÄÖÜ Straße"), "äöü straße");
        assert_eq!(fold("ΣΑΣ"), "σασ");
        assert_eq!(fold("İx"), "ix");
        assert_eq!(fold("ẞ"), "ß");
        assert_eq!(fold("%_\\"), "%_\\");
    }
}
