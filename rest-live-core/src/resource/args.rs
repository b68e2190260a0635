//! The arguments of a job or a custom action: the request's JSON object decoded into their `Args`, with an error
//! in the validation shape that names the argument at fault (`{"delay_ms": ["A valid integer is
//! required."]}`), as a resource's field errors do, rather than one `non_field_errors` message.
//!
//! The arguments are decoded once, as serde_json decodes any value. Only when that fails are
//! they decoded again through [`Arguments`], a deserializer of the top-level object that knows
//! which argument it is reading, to tell which one was wrong.

use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::FieldErrors;

/// Decodes `args` into `T`; the error names the argument when one is at fault.
pub(crate) fn parse<T: DeserializeOwned>(args: &Value) -> Result<T, FieldErrors> {
    T::deserialize(args).map_err(|error| {
        let located = match args {
            Value::Object(map) => T::deserialize(Arguments(map)).err(),
            _ => None,
        };
        match located {
            Some(ArgError {
                argument: Some(name),
                message,
            }) => FieldErrors::single(name, message),
            _ => FieldErrors::single(FieldErrors::NON_FIELD, error.to_string()),
        }
    })
}

/// What went wrong, and with which argument if the error is about one.
#[derive(Debug)]
struct ArgError {
    argument: Option<String>,
    message: String,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ArgError {}

impl de::Error for ArgError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self {
            argument: None,
            message: message.to_string(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            argument: Some(field.to_owned()),
            message: "This field is required.".into(),
        }
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        Self {
            argument: Some(field.to_owned()),
            message: "Unknown field.".into(),
        }
    }
}

/// The arguments object, read entry by entry.
struct Arguments<'de>(&'de Map<String, Value>);

impl<'de> Deserializer<'de> for Arguments<'de> {
    type Error = ArgError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ArgError> {
        visitor.visit_map(Entries {
            entries: self.0.iter(),
            current: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

struct Entries<'de> {
    entries: serde_json::map::Iter<'de>,
    current: Option<(&'de str, &'de Value)>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = ArgError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ArgError> {
        let Some((name, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some((name, value));
        seed.deserialize(BorrowedStrDeserializer::new(name))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ArgError> {
        let Some((name, value)) = self.current.take() else {
            return Err(de::Error::custom("a value without its key"));
        };
        seed.deserialize(value).map_err(|error| ArgError {
            argument: Some(name.to_owned()),
            message: message(value, &error.to_string()),
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// The message for a value that did not decode, worded as the validation messages clients know
/// (Django REST framework's) where serde's says which type was expected; serde's otherwise.
fn message(value: &Value, serde_message: &str) -> String {
    if value.is_null() && serde_message.starts_with("invalid type: null") {
        return "This field may not be null.".into();
    }
    // An error inside an object or array is about some part of it: serde's message says which.
    let about_the_value = match value {
        Value::Object(_) => serde_message.starts_with("invalid type: map,"),
        Value::Array(_) => serde_message.starts_with("invalid type: sequence,"),
        _ => true,
    };
    if !about_the_value {
        return format!("Invalid value: {serde_message}.");
    }
    let wrong = serde_message.starts_with("invalid type: ");
    let out_of_range = serde_message.starts_with("invalid value: integer ");
    let expected = serde_message
        .rsplit_once(", expected ")
        .map_or("", |(_, expected)| expected);
    if wrong || out_of_range {
        if let Some((min, max)) = integer_range(expected) {
            // A number out of the type's range says which bound it passed.
            if out_of_range && let Some(n) = value.as_i64().map(i128::from) {
                return if n < min {
                    format!("Ensure this value is greater than or equal to {min}.")
                } else {
                    format!("Ensure this value is less than or equal to {max}.")
                };
            }
            if out_of_range && value.is_u64() {
                return format!("Ensure this value is less than or equal to {max}.");
            }
            return "A valid integer is required.".into();
        }
        match expected {
            "f32" | "f64" => return "A valid number is required.".into(),
            "a boolean" => return "Must be a valid boolean.".into(),
            "a string" | "a borrowed string" | "a character" => {
                return "Not a valid string.".into();
            }
            _ => {}
        }
    }
    format!("Invalid value: {serde_message}.")
}

/// The bounds of the integer type serde names `expected` (`u64`, `i32`, …).
fn integer_range(expected: &str) -> Option<(i128, u128)> {
    Some(match expected {
        "i8" => (i8::MIN.into(), i8::MAX as u128),
        "i16" => (i16::MIN.into(), i16::MAX as u128),
        "i32" => (i32::MIN.into(), i32::MAX as u128),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX as u128),
        "i128" => (i128::MIN, i128::MAX as u128),
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "u128" => (0, u128::MAX),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::parse;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Archive {
        list_id: Option<i32>,
        delay_ms: Option<u64>,
        #[serde(default)]
        quick: bool,
        #[serde(default)]
        label: String,
        #[serde(default)]
        ratio: f64,
        #[serde(default)]
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Nested {
        depth: u8,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Count {
        count: u32,
    }

    fn errors<T: serde::de::DeserializeOwned + std::fmt::Debug>(args: Value) -> Value {
        let errors = parse::<T>(&args).expect_err("refused");
        crate::error::ApiError::Validation(errors).errors()[0].clone()
    }

    #[test]
    fn each_error_names_its_argument() {
        let cases = [
            (
                json!({"delay_ms": "x"}),
                json!({"delay_ms": ["A valid integer is required."]}),
            ),
            (
                json!({"delay_ms": 1.5}),
                json!({"delay_ms": ["A valid integer is required."]}),
            ),
            (
                json!({"delay_ms": -1}),
                json!({"delay_ms": ["Ensure this value is greater than or equal to 0."]}),
            ),
            (
                json!({"list_id": 4_294_967_296_u64}),
                json!({"list_id": ["Ensure this value is less than or equal to 2147483647."]}),
            ),
            (
                json!({"list_id": -4_294_967_296_i64}),
                json!({"list_id": ["Ensure this value is greater than or equal to -2147483648."]}),
            ),
            (
                json!({"quick": "yes"}),
                json!({"quick": ["Must be a valid boolean."]}),
            ),
            (
                json!({"label": 5}),
                json!({"label": ["Not a valid string."]}),
            ),
            (
                json!({"label": null}),
                json!({"label": ["This field may not be null."]}),
            ),
            (
                json!({"ratio": "1"}),
                json!({"ratio": ["A valid number is required."]}),
            ),
            (json!({"nope": 1}), json!({"nope": ["Unknown field."]})),
            (
                json!({"delay_ms": [1]}),
                json!({"delay_ms": ["A valid integer is required."]}),
            ),
            (
                json!({"nested": {"depth": 300}}),
                json!({"nested": ["Invalid value: invalid value: integer `300`, expected u8."]}),
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(errors::<Archive>(args.clone()), expected, "{args}");
        }
        assert_eq!(
            errors::<Count>(json!({})),
            json!({"count": ["This field is required."]})
        );
        assert_eq!(
            errors::<Count>(json!({"count": null})),
            json!({"count": ["This field may not be null."]})
        );
        // A map of arguments names the entry at fault too.
        assert_eq!(
            errors::<HashMap<String, u8>>(json!({"a": 1, "b": "x"})),
            json!({"b": ["A valid integer is required."]})
        );
    }

    #[test]
    fn what_no_argument_explains_is_a_non_field_error() {
        // Not an object at all, or arguments where none are taken.
        assert_eq!(
            errors::<Count>(json!("x")),
            json!({"non_field_errors": ["invalid type: string \"x\", expected struct Count"]})
        );
        assert_eq!(
            errors::<()>(json!({"a": 1})),
            json!({"non_field_errors": ["invalid type: map, expected unit"]})
        );
        // Valid arguments decode as serde_json decodes them.
        let args = parse::<Archive>(&json!({"delay_ms": 5, "quick": true})).expect("valid");
        assert_eq!((args.delay_ms, args.quick), (Some(5), true));
    }
}
