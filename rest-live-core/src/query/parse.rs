//! Client queries into typed [`Query`]s, at the edge: every condition, ordering and cursor is
//! checked against what the resource declared, and refused with the errors of PROTOCOL §3 (in
//! the validation shape, keyed by the condition as sent) before the database is touched.

use serde_json::Value;

use super::{Condition, Operand, OrderTerm, Query, field_index, pk_index};
use crate::error::FieldErrors;
use crate::meta::{FieldMeta, Kind, Lookup, ResourceMeta};

/// A client-supplied value: JSON (WebSocket, bodies) or text (URL path and query string).
#[derive(Debug, Clone)]
pub enum Input {
    /// From JSON: typed already.
    Json(Value),
    /// From a URL: text, parsed as the field's type.
    Text(String),
}

/// The most elements an `in` list may have.
pub const MAX_IN: usize = 1000;

/// Parses one field's single value into canonical JSON of its type (the inner type of an
/// `Option`); generated per resource. The error is serde's message.
pub type Canonical<'a> = &'a dyn Fn(usize, &Value) -> Result<Value, String>;

/// What a `list` (or a live query) asked for, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct QueryInput {
    /// The conditions, by key as sent (`priority__gte`).
    pub filter: Vec<(String, Input)>,
    /// `ordering`: a JSON array of names (or one comma-separated string), or the HTTP text.
    pub ordering: Option<Input>,
}

/// Checks `input` against `meta` for a principal who may not see `hidden` fields.
pub fn parse(
    meta: &'static ResourceMeta,
    hidden: &[&str],
    canonical: Canonical<'_>,
    input: &QueryInput,
) -> Result<Query, FieldErrors> {
    let mut errors = FieldErrors::new();
    let mut query = Query::default();
    for (key, value) in &input.filter {
        match condition(meta, hidden, canonical, key, value) {
            Ok(c) => query.conditions.push(c),
            Err(message) => errors.add(key.clone(), message),
        }
    }
    match ordering(meta, hidden, input.ordering.as_ref()) {
        Ok(Some(terms)) => query.ordering = terms,
        Ok(None) => query.ordering = super::default_ordering(meta),
        Err(message) => errors.add("ordering", message),
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(errors)
    }
}

fn visible(meta: &'static ResourceMeta, hidden: &[&str], name: &str) -> Option<usize> {
    field_index(meta, name).filter(|_| !hidden.contains(&name))
}

const UNKNOWN_FILTER: &str = "Unknown filter.";

fn condition(
    meta: &'static ResourceMeta,
    hidden: &[&str],
    canonical: Canonical<'_>,
    key: &str,
    value: &Input,
) -> Result<Condition, String> {
    let (index, lookup) = match key.rsplit_once("__") {
        Some((name, suffix)) if field_index(meta, name).is_some() => {
            (visible(meta, hidden, name), Lookup::from_name(suffix))
        }
        _ => (visible(meta, hidden, key), Some(Lookup::Exact)),
    };
    let (Some(index), Some(lookup)) = (index, lookup) else {
        return Err(UNKNOWN_FILTER.to_owned());
    };
    let field = &meta.fields[index];
    if !field.allows(lookup) {
        return Err(UNKNOWN_FILTER.to_owned());
    }
    let operand = match lookup {
        Lookup::IsNull => Operand::Flag(flag(value)?),
        Lookup::In => {
            let items: Vec<Input> = match value {
                Input::Json(Value::Array(items)) => {
                    items.iter().cloned().map(Input::Json).collect()
                }
                Input::Json(_) => return Err("Expected a list of items.".to_owned()),
                Input::Text(t) => t.split(',').map(|s| Input::Text(s.to_owned())).collect(),
            };
            if items.is_empty() {
                return Err("This list may not be empty.".to_owned());
            }
            if items.len() > MAX_IN {
                return Err(format!(
                    "Ensure this list has no more than {MAX_IN} elements."
                ));
            }
            let values = items
                .iter()
                .map(|item| scalar(canonical, index, field, item, false))
                .collect::<Result<Vec<_>, _>>()?;
            Operand::List(values)
        }
        lookup if lookup.is_text() => {
            Operand::Value(scalar(canonical, index, field, value, false)?)
        }
        Lookup::Exact | Lookup::Ne => {
            Operand::Value(scalar(canonical, index, field, value, field.nullable)?)
        }
        _ => Operand::Value(scalar(canonical, index, field, value, false)?),
    };
    Ok(Condition {
        field: index,
        lookup,
        operand,
    })
}

fn flag(value: &Input) -> Result<bool, String> {
    match value {
        Input::Json(Value::Bool(b)) => Ok(*b),
        Input::Text(t) if t == "true" => Ok(true),
        Input::Text(t) if t == "false" => Ok(false),
        _ => Err("Must be a valid boolean.".to_owned()),
    }
}

/// What a value of the kind must be, in the words of Django REST Framework.
fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "Must be a valid boolean.",
        Kind::Int => "A valid integer is required.",
        Kind::Float => "A valid number is required.",
        Kind::Text => "Not a valid string.",
        Kind::Other => "Invalid value.",
    }
}

/// One value of `field`, as canonical JSON; `null` only where `nullable`.
fn scalar(
    canonical: Canonical<'_>,
    index: usize,
    field: &FieldMeta,
    value: &Input,
    nullable: bool,
) -> Result<Value, String> {
    let kind = field.kind;
    let json = match value {
        Input::Json(Value::Null) if nullable => return Ok(Value::Null),
        Input::Json(Value::Null) => return Err("This field may not be null.".to_owned()),
        Input::Json(v @ (Value::Array(_) | Value::Object(_))) if kind != Kind::Other => {
            let _ = v;
            return Err(expected(kind).to_owned());
        }
        Input::Json(v) => v.clone(),
        Input::Text(t) => match kind {
            Kind::Text => Value::String(t.clone()),
            Kind::Bool => Value::Bool(flag(value).map_err(|_| expected(kind).to_owned())?),
            Kind::Int => match t.parse::<i64>() {
                Ok(i) => Value::from(i),
                Err(_) => match t.parse::<u64>() {
                    Ok(u) => Value::from(u),
                    Err(_) => return Err(expected(kind).to_owned()),
                },
            },
            Kind::Float => match t.parse::<f64>() {
                Ok(f) if f.is_finite() => Value::from(f),
                _ => return Err(expected(kind).to_owned()),
            },
            // No type to go by: the text as a string, else as JSON (a number, a boolean).
            Kind::Other => {
                return canonical(index, &Value::String(t.clone())).or_else(|e| {
                    crate::json::from_str(t)
                        .ok()
                        .filter(|v| !v.is_null())
                        .and_then(|v| canonical(index, &v).ok())
                        .ok_or_else(|| format!("Invalid value: {e}."))
                });
            }
        },
    };
    if let Value::String(s) = &json
        && s.contains('\0')
    {
        return Err("Null characters are not allowed.".to_owned());
    }
    // An integer written `2.0` is the integer 2, as in input.
    let json = match (&json, kind) {
        (Value::Number(n), Kind::Int) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                Value::from(f as i64)
            }
            _ => return Err(expected(kind).to_owned()),
        },
        _ => json,
    };
    canonical(index, &json).map_err(|e| match kind {
        Kind::Other => format!("Invalid value: {e}."),
        _ => expected(kind).to_owned(),
    })
}

/// The ordering asked for: `None` for the default.
fn ordering(
    meta: &'static ResourceMeta,
    hidden: &[&str],
    input: Option<&Input>,
) -> Result<Option<Vec<OrderTerm>>, String> {
    let names: Vec<String> = match input {
        None | Some(Input::Json(Value::Null)) => return Ok(None),
        Some(Input::Text(t)) | Some(Input::Json(Value::String(t))) => {
            if t.is_empty() {
                return Ok(None);
            }
            t.split(',').map(str::to_owned).collect()
        }
        Some(Input::Json(Value::Array(items))) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err("Expected a list of field names.".to_owned()),
            })
            .collect::<Result<_, _>>()?,
        Some(Input::Json(_)) => return Err("Expected a list of field names.".to_owned()),
    };
    let pk = pk_index(meta);
    let mut terms: Vec<OrderTerm> = Vec::new();
    for name in &names {
        let (desc, bare) = match name.strip_prefix('-') {
            Some(bare) => (true, bare),
            None => (false, name.as_str()),
        };
        let Some(index) = visible(meta, hidden, bare) else {
            return Err(format!("Unknown field {}.", Value::from(bare)));
        };
        if !meta.fields[index].orderable {
            return Err(format!("Cannot order by {}.", Value::from(bare)));
        }
        if terms.iter().any(|t| t.field == index) {
            continue;
        }
        terms.push(OrderTerm { field: index, desc });
    }
    // The primary key ends every order: terms after it change nothing, and ascending it is
    // the tiebreaker that is always there.
    if let Some(at) = terms.iter().position(|t| t.field == pk) {
        let keep = if terms[at].desc { at + 1 } else { at };
        terms.truncate(keep);
    }
    Ok(Some(terms))
}
