//! JSON Schemas of Rust types that only implement serde's traits: a custom action's arguments
//! and result (docs/protocol.md §5), for the OpenAPI document and the inspector. The type's
//! `Deserialize` is traced by `serde-reflection` (it records the fields and the types it is asked
//! for), and the traced format becomes a schema. A type whose `Deserialize` validates what it reads
//! cannot be traced: it is described as any JSON value (`None` here).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use serde_reflection::{ContainerFormat, Format, Named, Tracer, TracerConfig, VariantFormat};

/// The JSON Schema of `T`, traced through its `Deserialize`; `None` where it cannot be traced.
pub fn schema_of<T: DeserializeOwned>() -> Option<Value> {
    let mut tracer = Tracer::new(TracerConfig::default());
    let (format, _) = tracer.trace_simple_type::<T>().ok()?;
    let registry = tracer.registry().ok()?;
    Some(
        Converter {
            registry: &registry,
        }
        .format(&format, 0),
    )
}

/// The schema of `T` where `T` implements `Deserialize`, else `None`, chosen at compile time
/// (generated code calls `(&SchemaProbe::<T>::new()).schema()` with both traits in scope).
pub struct SchemaProbe<T>(PhantomData<fn() -> T>);

impl<T> SchemaProbe<T> {
    /// The probe of `T`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

/// The probe of a `Deserialize` type: its traced schema.
pub trait TraceDeserialize {
    /// The schema.
    fn schema(&self) -> Option<Value>;
}

impl<T: DeserializeOwned> TraceDeserialize for SchemaProbe<T> {
    fn schema(&self) -> Option<Value> {
        schema_of::<T>()
    }
}

/// The probe of any other type: no schema (one step of auto-reference further).
pub trait TraceNothing {
    /// No schema.
    fn schema(&self) -> Option<Value> {
        None
    }
}

impl<T> TraceNothing for &SchemaProbe<T> {}

struct Converter<'a> {
    registry: &'a BTreeMap<String, ContainerFormat>,
}

/// Deeper than this (a recursive type), a value is any JSON.
const MAX_DEPTH: usize = 16;

impl Converter<'_> {
    fn format(&self, format: &Format, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return json!({});
        }
        match format {
            Format::Unit => json!({"type": "null"}),
            Format::Bool => json!({"type": "boolean"}),
            Format::I8 | Format::I16 | Format::I32 | Format::I64 | Format::I128 => {
                json!({"type": "integer"})
            }
            Format::U8 | Format::U16 | Format::U32 | Format::U64 | Format::U128 => {
                json!({"type": "integer", "minimum": 0})
            }
            Format::F32 | Format::F64 => json!({"type": "number"}),
            Format::Char => json!({"type": "string", "minLength": 1, "maxLength": 1}),
            Format::Str => json!({"type": "string"}),
            Format::Bytes => {
                json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}})
            }
            Format::Option(inner) => {
                let inner = self.format(inner, depth + 1);
                json!({"anyOf": [inner, {"type": "null"}]})
            }
            Format::Seq(inner) => json!({"type": "array", "items": self.format(inner, depth + 1)}),
            Format::Map { value, .. } => {
                json!({"type": "object", "additionalProperties": self.format(value, depth + 1)})
            }
            Format::Tuple(items) => self.tuple(items, depth),
            Format::TupleArray { content, size } => json!({
                "type": "array", "items": self.format(content, depth + 1),
                "minItems": size, "maxItems": size,
            }),
            Format::TypeName(name) => match self.registry.get(name) {
                Some(container) => self.container(container, depth + 1),
                None => json!({}),
            },
            // Unresolved: anything.
            _ => json!({}),
        }
    }

    fn tuple(&self, items: &[Format], depth: usize) -> Value {
        let items: Vec<Value> = items.iter().map(|f| self.format(f, depth + 1)).collect();
        json!({"type": "array", "prefixItems": items, "minItems": items.len(), "maxItems": items.len()})
    }

    fn fields(&self, fields: &[Named<Format>], depth: usize) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in fields {
            // A missing `Option` reads as `None`; every other field must be there (a
            // `#[serde(default)]` cannot be seen through the trace).
            if !matches!(field.value, Format::Option(_)) {
                required.push(Value::from(field.name.clone()));
            }
            properties.insert(field.name.clone(), self.format(&field.value, depth + 1));
        }
        let mut schema = json!({"type": "object", "properties": properties});
        if !required.is_empty() {
            schema["required"] = Value::from(required);
        }
        schema
    }

    fn container(&self, container: &ContainerFormat, depth: usize) -> Value {
        match container {
            ContainerFormat::UnitStruct => json!({"type": "null"}),
            ContainerFormat::NewTypeStruct(inner) => self.format(inner, depth),
            ContainerFormat::TupleStruct(items) => self.tuple(items, depth),
            ContainerFormat::Struct(fields) => self.fields(fields, depth),
            ContainerFormat::Enum(variants) => {
                // serde's default, externally tagged representation.
                let one_of: Vec<Value> = variants
                    .values()
                    .map(|v| match &v.value {
                        VariantFormat::Unit => json!({"const": v.name}),
                        VariantFormat::NewType(inner) => json!({
                            "type": "object", "required": [v.name],
                            "properties": {v.name.clone(): self.format(inner, depth + 1)},
                        }),
                        VariantFormat::Tuple(items) => json!({
                            "type": "object", "required": [v.name],
                            "properties": {v.name.clone(): self.tuple(items, depth + 1)},
                        }),
                        VariantFormat::Struct(fields) => json!({
                            "type": "object", "required": [v.name],
                            "properties": {v.name.clone(): self.fields(fields, depth + 1)},
                        }),
                        _ => json!({}),
                    })
                    .collect();
                json!({"oneOf": one_of})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::{SchemaProbe, TraceDeserialize as _, TraceNothing as _, schema_of};

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct ClearDone {
        list_id: i32,
        note: Option<String>,
        tags: Vec<String>,
    }

    #[test]
    fn a_struct_becomes_an_object_with_its_required_fields() {
        assert_eq!(
            schema_of::<ClearDone>(),
            Some(json!({
                "type": "object",
                "properties": {
                    "list_id": {"type": "integer"},
                    "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["list_id", "tags"],
            }))
        );
    }

    #[test]
    #[allow(clippy::needless_borrow)] // the borrow is the point: it selects the fallback
    fn the_probe_traces_only_what_can_be_deserialized() {
        struct Opaque;
        assert!((&SchemaProbe::<ClearDone>::new()).schema().is_some());
        assert_eq!((&SchemaProbe::<Opaque>::new()).schema(), None);
        assert_eq!(
            (&SchemaProbe::<u32>::new()).schema(),
            Some(json!({"type": "integer", "minimum": 0}))
        );
    }
}
