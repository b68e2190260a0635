//! What the generated SQL needs beyond diesel's own operators, written once per backend so that
//! both give the answer of PROTOCOL §3: text compared by code point (`COLLATE "C"` on
//! PostgreSQL; SQLite's default `BINARY` already is), substring and prefix tests that take `%`,
//! `_` and `\` literally (no `LIKE`), and case folding that is Unicode on both (SQLite's
//! `lower()` is ASCII-only, so it gets [`fold`](super::matcher::fold) as `rest_live_fold`).

use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Bool, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};

use crate::meta::Lookup;

diesel::define_sql_function! {
    /// [`super::matcher::fold`] in SQLite.
    fn rest_live_fold(text: Nullable<Text>) -> Nullable<Text>;
}

/// Registers `rest_live_fold` on a SQLite connection (every pooled connection gets it).
pub fn register_sqlite(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
    rest_live_fold_utils::register_impl(conn, |text: Option<String>| {
        text.map(|t| super::matcher::fold(&t))
    })
}

/// `expr` compared by code point: `expr COLLATE "C"` on PostgreSQL, `expr` on SQLite.
#[derive(Debug, Clone, Copy)]
pub struct Collate<E>(pub E);

/// `expr` (a text column) compared by code point.
pub fn collate<E>(expr: E) -> Collate<E> {
    Collate(expr)
}

impl<E: Expression> Expression for Collate<E> {
    type SqlType = E::SqlType;
}

impl<E, QS> AppearsOnTable<QS> for Collate<E> where E: AppearsOnTable<QS> {}
impl<E, QS> SelectableExpression<QS> for Collate<E> where E: SelectableExpression<QS> {}

impl<E: ValidGrouping<GB>, GB> ValidGrouping<GB> for Collate<E> {
    type IsAggregate = E::IsAggregate;
}

impl<E> QueryId for Collate<E> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<E: QueryFragment<Sqlite>> QueryFragment<Sqlite> for Collate<E> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Sqlite>) -> diesel::QueryResult<()> {
        self.0.walk_ast(out)
    }
}

#[cfg(feature = "postgres")]
impl<E: QueryFragment<diesel::pg::Pg>> QueryFragment<diesel::pg::Pg> for Collate<E> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> diesel::QueryResult<()> {
        out.push_sql("(");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(" COLLATE \"C\")");
        Ok(())
    }
}

/// A text lookup (`contains`, `startswith`, `icontains`, `istartswith`, `iexact`) of a text
/// column and a bound value; null when the column is null.
#[derive(Debug, Clone)]
pub struct TextMatch<E> {
    expr: E,
    lookup: Lookup,
    value: String,
}

/// `expr <lookup> value`; `lookup` is a text lookup (the generated code only asks for those).
pub fn text_match<E>(expr: E, lookup: Lookup, value: String) -> TextMatch<E> {
    TextMatch {
        expr,
        lookup,
        value,
    }
}

impl<E: Expression> Expression for TextMatch<E> {
    type SqlType = Nullable<Bool>;
}

impl<E, QS> AppearsOnTable<QS> for TextMatch<E> where E: AppearsOnTable<QS> {}
impl<E, QS> SelectableExpression<QS> for TextMatch<E> where E: SelectableExpression<QS> {}

impl<E: ValidGrouping<GB>, GB> ValidGrouping<GB> for TextMatch<E> {
    type IsAggregate = E::IsAggregate;
}

impl<E> QueryId for TextMatch<E> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// How one backend spells the pieces.
struct Dialect {
    fold: &'static str,
    position: &'static str,
}

impl<E> TextMatch<E> {
    fn walk<'b, DB>(&'b self, mut out: AstPass<'_, 'b, DB>, d: &Dialect) -> diesel::QueryResult<()>
    where
        DB: diesel::backend::Backend,
        E: QueryFragment<DB>,
        String: diesel::serialize::ToSql<Text, DB>,
    {
        let folded = matches!(
            self.lookup,
            Lookup::IContains | Lookup::IStartsWith | Lookup::IExact
        );
        let (open, close) = if folded { (d.fold, ")") } else { ("", "") };
        out.push_sql("(");
        match self.lookup {
            Lookup::Contains | Lookup::IContains => {
                out.push_sql(d.position);
                out.push_sql(open);
                self.expr.walk_ast(out.reborrow())?;
                out.push_sql(close);
                out.push_sql(", ");
                out.push_sql(open);
                out.push_bind_param::<Text, String>(&self.value)?;
                out.push_sql(close);
                out.push_sql(") > 0");
            }
            Lookup::StartsWith | Lookup::IStartsWith => {
                out.push_sql("substr(");
                out.push_sql(open);
                self.expr.walk_ast(out.reborrow())?;
                out.push_sql(close);
                out.push_sql(", 1, length(");
                out.push_bind_param::<Text, String>(&self.value)?;
                out.push_sql(")) = ");
                out.push_sql(open);
                out.push_bind_param::<Text, String>(&self.value)?;
                out.push_sql(close);
            }
            _ => {
                out.push_sql(open);
                self.expr.walk_ast(out.reborrow())?;
                out.push_sql(close);
                out.push_sql(" = ");
                out.push_sql(open);
                out.push_bind_param::<Text, String>(&self.value)?;
                out.push_sql(close);
            }
        }
        out.push_sql(")");
        Ok(())
    }
}

impl<E: QueryFragment<Sqlite>> QueryFragment<Sqlite> for TextMatch<E> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Sqlite>) -> diesel::QueryResult<()> {
        let d = Dialect {
            fold: "rest_live_fold(",
            position: "instr(",
        };
        self.walk(out, &d)
    }
}

#[cfg(feature = "postgres")]
impl<E: QueryFragment<diesel::pg::Pg>> QueryFragment<diesel::pg::Pg> for TextMatch<E> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, diesel::pg::Pg>) -> diesel::QueryResult<()> {
        let d = Dialect {
            fold: "lower(",
            position: "strpos(",
        };
        self.walk(out, &d)
    }
}

/// A comparison of a keyset condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`.
    Eq,
    /// `<`.
    Lt,
    /// `>`.
    Gt,
}

/// The error of an operand the query model should never have let through (a bug, not a
/// client's mistake: parsing checks every operand against the declaration first).
pub fn bad_operand() -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError("a query condition does not fit the resource".into())
}

/// An operand as the field's type.
pub fn operand<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> diesel::QueryResult<T> {
    T::deserialize(value).map_err(|_| bad_operand())
}

/// The operands of `in` as the field's type.
pub fn operands<T: serde::de::DeserializeOwned>(
    values: &[serde_json::Value],
) -> diesel::QueryResult<Vec<T>> {
    values.iter().map(operand).collect()
}
