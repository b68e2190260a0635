//! Helpers that macro-generated code calls (through `__private`), so the generated code stays small.
// Hidden from the documentation: support for the code `#[resource]` generates (`__private`).
#![allow(missing_docs)]

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrors};
use crate::resource::Hooks;
use crate::resource::tx::Tx;

/// Reads a typed value from JSON; the message says what was wrong.
pub fn parse_value<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| e.to_string())
}

/// A value as JSON (canonical form for hub keys and change-log group values).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Parses a client value of type `T` and returns it as canonical JSON.
pub fn canonical_value<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, String> {
    let typed: T = parse_value(value)?;
    Ok(to_json(&typed))
}

/// Parses a client value and returns its canonical JSON text.
pub fn canonical<T: DeserializeOwned + Serialize>(value: &Value) -> Result<String, String> {
    let typed: T = parse_value(value)?;
    Ok(to_json(&typed).to_string())
}

/// Records an error for each input key that names no field of the resource.
pub fn reject_unknown(data: &Map<String, Value>, known: &[&str], errors: &mut FieldErrors) {
    for key in data.keys() {
        if !known.contains(&key.as_str()) {
            errors.add(key.clone(), "Unknown field.");
        }
    }
}

/// Takes one writable field from input. `None` when absent (an error if `required`) or invalid
/// (the error is recorded).
pub fn field<T: DeserializeOwned>(
    data: &Map<String, Value>,
    name: &str,
    required: bool,
    nullable: bool,
    errors: &mut FieldErrors,
) -> Option<T> {
    match data.get(name) {
        None => {
            if required {
                errors.add(name, "This field is required.");
            }
            None
        }
        Some(Value::Null) if !nullable => {
            errors.add(name, "This field may not be null.");
            None
        }
        // PostgreSQL cannot store NUL in text; refuse it everywhere so both backends agree.
        Some(Value::String(s)) if s.contains('\0') => {
            errors.add(name, "Null characters are not allowed.");
            None
        }
        Some(value) => match T::deserialize(value).or_else(|e| match integral(value) {
            Some(int) => T::deserialize(&int).map_err(|_| e),
            None => Err(e),
        }) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.add(name, format!("Invalid value: {e}."));
                None
            }
        },
    }
}

/// `1.0` as `1`: JSON Schema (and so OpenAPI) counts a number with a zero fraction as an
/// integer, and some JSON encoders write integers that way.
fn integral(value: &Value) -> Option<Value> {
    let f = value.as_f64().filter(|_| value.is_f64())?;
    // -2^63 ≤ f < 2^63: the conversion is exact.
    let in_range = f >= i64::MIN as f64 && f < i64::MAX as f64;
    (f.fract() == 0.0 && in_range).then(|| Value::from(f as i64))
}

/// Text whose length `#[resource(max_length = N)]` can check.
// The message names the attribute: users never meet this trait otherwise.
#[diagnostic::on_unimplemented(
    message = "`#[resource(max_length = …)]` needs a text field, not `{Self}`",
    label = "not text: use `String` or `Option<String>`, or remove `max_length`"
)]
pub trait CharLength {
    /// Length in characters; `None` for an absent optional value.
    fn char_length(&self) -> Option<usize>;
}

impl CharLength for str {
    fn char_length(&self) -> Option<usize> {
        Some(self.chars().count())
    }
}

impl CharLength for String {
    fn char_length(&self) -> Option<usize> {
        Some(self.chars().count())
    }
}

impl<T: CharLength> CharLength for Option<T> {
    fn char_length(&self) -> Option<usize> {
        self.as_ref().and_then(CharLength::char_length)
    }
}

/// Records an error if `value` is longer than `max` characters.
pub fn check_max_length<T: CharLength + ?Sized>(
    value: &T,
    max: usize,
    name: &str,
    errors: &mut FieldErrors,
) {
    if value.char_length().is_some_and(|n| n > max) {
        errors.add(
            name,
            format!("Ensure this field has no more than {max} characters."),
        );
    }
}

/// Bound checks that generated code places at each field's type, so a wrong type errors there.
pub fn assert_field<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static>() {}

/// Read-only fields and `#[serde(default)]` fields are filled with `Default::default()`.
pub fn assert_default<T: Default>() {}

/// A field reads from its column (`ST`, the column's SQL type): checked at the field, so that a
/// type that does not match its column errors there, first. SQLite is always compiled in, so
/// every column type a resource can have is one SQLite reads.
pub fn assert_column<T, ST>()
where
    T: diesel::deserialize::FromSql<ST, diesel::sqlite::Sqlite>,
{
}

/// `#[resource(max_length = N)]` needs text.
pub fn assert_char_length<T: CharLength + ?Sized>() {}

/// `#[resource(hooks)]` states that the type implements [`Hooks`].
pub fn assert_hooks<T: Hooks>() {}

/// The hooks of `T`: its [`Hooks`] impl if it has one, else none. Generated code calls the methods
/// on `&HooksOf::<Task>::NEW` with [`UserHooks`] and [`NoHooks`] in scope: method lookup tries
/// the receiver as it is before it borrows it again, so `UserHooks` (implemented for `HooksOf<T>`
/// where `T: Hooks`) wins over `NoHooks` (implemented for `&HooksOf<T>`) whenever it applies.
/// This works because the macro names the concrete type, so no `hooks` flag is needed.
pub struct HooksOf<T>(PhantomData<fn() -> T>);

impl<T> HooksOf<T> {
    pub const NEW: Self = HooksOf(PhantomData);
}

/// The user's [`Hooks`] impl (see [`HooksOf`]).
pub trait UserHooks<T> {
    fn before_save(&self, row: &mut T, tx: &mut Tx<'_>, old: Option<&T>) -> Result<(), ApiError>;
    fn before_delete(&self, row: &T, tx: &mut Tx<'_>) -> Result<(), ApiError>;
    fn after_save(&self, row: &T, created: bool);
    fn after_delete(&self, row: &T);
}

impl<T: Hooks> UserHooks<T> for HooksOf<T> {
    fn before_save(&self, row: &mut T, tx: &mut Tx<'_>, old: Option<&T>) -> Result<(), ApiError> {
        row.before_save(tx, old)
    }
    fn before_delete(&self, row: &T, tx: &mut Tx<'_>) -> Result<(), ApiError> {
        row.before_delete(tx)
    }
    fn after_save(&self, row: &T, created: bool) {
        row.after_save(created);
    }
    fn after_delete(&self, row: &T) {
        row.after_delete();
    }
}

/// No hooks: what a type without a [`Hooks`] impl gets (see [`HooksOf`]).
pub trait NoHooks<T> {
    fn before_save(&self, row: &mut T, tx: &mut Tx<'_>, old: Option<&T>) -> Result<(), ApiError>;
    fn before_delete(&self, row: &T, tx: &mut Tx<'_>) -> Result<(), ApiError>;
    fn after_save(&self, row: &T, created: bool);
    fn after_delete(&self, row: &T);
}

impl<T> NoHooks<T> for &HooksOf<T> {
    fn before_save(&self, _: &mut T, _: &mut Tx<'_>, _: Option<&T>) -> Result<(), ApiError> {
        Ok(())
    }
    fn before_delete(&self, _: &T, _: &mut Tx<'_>) -> Result<(), ApiError> {
        Ok(())
    }
    fn after_save(&self, _: &T, _: bool) {}
    fn after_delete(&self, _: &T) {}
}
