//! One query model for HTTP query strings, WebSocket `list` and live queries (PROTOCOL §3, §4):
//! conditions, an ordering and a page, parsed at the edge against what the resource declared
//! ([`parse`]), run in SQL by the generated code ([`sql`] holds its helpers) and, for live
//! queries, in memory ([`matcher`]), with the same answer on every row.

pub mod cursor;
pub mod matcher;
pub mod parse;
pub mod sql;

use serde_json::Value;

use crate::meta::{Lookup, ResourceMeta};

/// A typed query: every condition must hold; rows come in `ordering`, then by primary key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// The conditions (AND).
    pub conditions: Vec<Condition>,
    /// The order, without the primary key (always the last tiebreaker, ascending).
    pub ordering: Vec<OrderTerm>,
}

/// One condition: a field, a lookup and its operand, checked against the declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The field's index in [`ResourceMeta::fields`].
    pub field: usize,
    /// What is compared.
    pub lookup: Lookup,
    /// With what.
    pub operand: Operand,
}

/// The right-hand side of a condition, as canonical JSON of the field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// One value (`null` only for `exact` and `ne` on a nullable field).
    Value(Value),
    /// The values of `in`.
    List(Vec<Value>),
    /// The flag of `isnull`.
    Flag(bool),
}

/// One term of an ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderTerm {
    /// The field's index in [`ResourceMeta::fields`].
    pub field: usize,
    /// Descending.
    pub desc: bool,
}

/// Which rows of a query a read returns.
#[derive(Debug, Clone, Default)]
pub struct Slice<'a> {
    /// Only the rows after this position (a row's `query::position`), in the query's order.
    pub after: Option<&'a [Value]>,
    /// At most this many (`None`: all).
    pub limit: Option<i64>,
    /// Skip this many first.
    pub offset: i64,
}

/// What a generated `db_read` reads.
#[derive(Debug, Clone)]
pub enum Read<'a> {
    /// Rows of the query, in order.
    Rows(Slice<'a>),
    /// How many rows match; with `upto`, only those at or before that position.
    Count {
        /// A position, as in [`Slice::after`].
        upto: Option<&'a [Value]>,
    },
}

/// What a generated `db_read` read.
#[derive(Debug)]
pub enum Fetched<R> {
    /// For [`Read::Rows`].
    Rows(Vec<R>),
    /// For [`Read::Count`].
    Count(i64),
}

impl Query {
    /// The query that matches everything, in `meta`'s declared order.
    pub fn everything(meta: &ResourceMeta) -> Query {
        Query {
            conditions: Vec::new(),
            ordering: default_ordering(meta),
        }
    }

    /// Adds equality conditions (a policy's scope, a group): `field = value` for each pair.
    /// A field that is not one of `meta`'s is an error naming it.
    pub fn and_equal<'a>(
        &mut self,
        meta: &ResourceMeta,
        pairs: impl IntoIterator<Item = (&'a str, &'a Value)>,
    ) -> Result<(), String> {
        for (name, value) in pairs {
            let field = field_index(meta, name).ok_or_else(|| format!("no field `{name}`"))?;
            self.conditions.push(Condition {
                field,
                lookup: Lookup::Exact,
                operand: Operand::Value(value.clone()),
            });
        }
        Ok(())
    }

    /// The equality conditions (`field = value`, not null): what an index of live queries
    /// keys by.
    pub fn equalities(&self) -> impl Iterator<Item = (usize, &Value)> {
        self.conditions
            .iter()
            .filter_map(|c| match (&c.lookup, &c.operand) {
                (Lookup::Exact, Operand::Value(v)) if !v.is_null() => Some((c.field, v)),
                _ => None,
            })
    }
}

/// The index of the field named `name`.
pub fn field_index(meta: &ResourceMeta, name: &str) -> Option<usize> {
    meta.fields.iter().position(|f| f.name == name)
}

/// The index of the primary key.
pub fn pk_index(meta: &ResourceMeta) -> usize {
    field_index(meta, meta.pk).unwrap_or(0)
}

/// `meta`'s declared default order (checked by the macro), without the primary key.
pub fn default_ordering(meta: &ResourceMeta) -> Vec<OrderTerm> {
    let pk = pk_index(meta);
    meta.ordering
        .iter()
        .filter_map(|term| {
            let (desc, name) = match term.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, *term),
            };
            field_index(meta, name).map(|field| OrderTerm { field, desc })
        })
        .take_while(|t| t.field != pk)
        .collect()
}

/// A row's position in `ordering`: its values of the ordering's fields, then its primary key
/// (what a cursor holds and what [`Slice::after`] takes).
pub fn position(
    meta: &ResourceMeta,
    ordering: &[OrderTerm],
    row: &serde_json::Map<String, Value>,
) -> Vec<Value> {
    let value = |i: usize| row.get(meta.fields[i].name).cloned().unwrap_or(Value::Null);
    ordering
        .iter()
        .map(|t| value(t.field))
        .chain(std::iter::once(value(pk_index(meta))))
        .collect()
}

/// The terms a position is made of: the ordering's, then the primary key (field `pk`)
/// ascending.
pub fn keyset_terms(ordering: &[OrderTerm], pk: usize) -> Vec<OrderTerm> {
    ordering
        .iter()
        .copied()
        .chain(std::iter::once(OrderTerm {
            field: pk,
            desc: false,
        }))
        .collect()
}

/// The canonical text of a query on `meta`'s stream: equal for queries that ask the same (the
/// conditions in any order), different otherwise. Live queries are shared by it and cursors
/// are bound to it.
pub fn canonical(meta: &ResourceMeta, query: &Query) -> String {
    let mut conditions: Vec<String> = query
        .conditions
        .iter()
        .map(|c| {
            let operand = match &c.operand {
                Operand::Value(v) => v.to_string(),
                Operand::List(l) => Value::from(l.clone()).to_string(),
                Operand::Flag(f) => f.to_string(),
            };
            format!(
                "{}__{}={operand}",
                meta.fields[c.field].name,
                c.lookup.name()
            )
        })
        .collect();
    conditions.sort();
    conditions.dedup();
    let ordering: Vec<String> = query
        .ordering
        .iter()
        .map(|t| {
            format!(
                "{}{}",
                if t.desc { "-" } else { "" },
                meta.fields[t.field].name
            )
        })
        .collect();
    // Field names and lookups cannot hold NUL, and operands are JSON (a NUL in a string is
    // escaped), so the separators cannot be forged.
    format!(
        "{}\0{}\0{}",
        meta.stream,
        conditions.join("\0"),
        ordering.join(",")
    )
}
