//! What the runtime knows of one resource, built by the macro from the struct (one source of
//! truth for field lists, group keys, the pk, and what queries may do with each field).

/// What the runtime knows of one resource, built by the macro from the struct (one source of truth).
#[derive(Debug)]
pub struct ResourceMeta {
    /// Stream name: the WebSocket `stream` and the HTTP path segment.
    pub stream: &'static str,
    /// The model label clients of the django-rest-live format name (`"todolist.Task"`);
    /// `#[resource(label = "…")]`, by default the type's name.
    pub label: &'static str,
    /// The Rust type, for messages (`my_app::models::Task`).
    pub type_name: &'static str,
    /// Where the declaration is, for messages (`src/models.rs:12`).
    pub location: &'static str,
    /// The primary-key field.
    pub pk: &'static str,
    /// The fields, in declaration order.
    pub fields: &'static [FieldMeta],
    /// Group keys clients may `subscribe` by, in declaration order.
    pub group_keys: &'static [&'static str],
    /// Whether `subscribe_instance` (by pk) is allowed.
    pub instance_subscribable: bool,
    /// The declared default order (`#[resource(ordering = "-priority,text")]`): orderable
    /// fields, each with `-` for descending. Empty: by primary key.
    pub ordering: &'static [&'static str],
}

/// One field of a resource, as declared.
#[derive(Debug)]
pub struct FieldMeta {
    /// The field's name on the wire.
    pub name: &'static str,
    /// The Rust type as written, for documentation (OpenAPI, the inspector).
    pub rust_type: &'static str,
    /// Never taken from input; filled by the database or by hooks.
    pub read_only: bool,
    /// Must be present on create and full update.
    pub required: bool,
    /// Has at least one lookup (see [`FieldMeta::lookups`]).
    pub filterable: bool,
    /// The lookups a query may use on this field (`#[resource(filter(exact, lt))]`; the bare
    /// `filter` flag is `exact`).
    pub lookups: &'static [Lookup],
    /// Whether `ordering` may name the field (`#[resource(order)]`).
    pub orderable: bool,
    /// What kind of value the field holds, for comparing in memory as the database does.
    pub kind: Kind,
    /// `None` is a valid value.
    pub nullable: bool,
    /// `#[resource(max_length = N)]`: the most characters a text may have.
    pub max_length: Option<usize>,
}

impl ResourceMeta {
    /// The field named `name`, if there is one.
    pub fn field(&self, name: &str) -> Option<&'static FieldMeta> {
        self.fields.iter().find(|f| f.name == name)
    }
}

impl FieldMeta {
    /// Whether a query may use `lookup` on this field.
    pub fn allows(&self, lookup: Lookup) -> bool {
        self.lookups.contains(&lookup)
    }
}

/// The kind of value a field holds, as far as queries care: the macro reads it off the field's
/// type (`bool`, the integer and float types, `String`, each optionally in `Option`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`.
    Bool,
    /// An integer type (`i16`, `i32`, `i64`, …).
    Int,
    /// `f32` or `f64`.
    Float,
    /// `String`.
    Text,
    /// Anything else: equality only, compared as JSON.
    Other,
}

/// One lookup of a query condition (`priority__gte`): PROTOCOL §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// Equal (also the condition without a lookup).
    Exact,
    /// Not equal; a null never matches.
    Ne,
    /// One of a list.
    In,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Is (`true`) or is not (`false`) null.
    IsNull,
    /// Substring, case-sensitive.
    Contains,
    /// Prefix, case-sensitive.
    StartsWith,
    /// Substring, case-insensitive.
    IContains,
    /// Prefix, case-insensitive.
    IStartsWith,
    /// Equal, case-insensitive.
    IExact,
}

impl Lookup {
    /// Every lookup.
    pub const ALL: [Lookup; 13] = [
        Lookup::Exact,
        Lookup::Ne,
        Lookup::In,
        Lookup::Lt,
        Lookup::Lte,
        Lookup::Gt,
        Lookup::Gte,
        Lookup::IsNull,
        Lookup::Contains,
        Lookup::StartsWith,
        Lookup::IContains,
        Lookup::IStartsWith,
        Lookup::IExact,
    ];

    /// The name as clients write it after `__`.
    pub const fn name(self) -> &'static str {
        match self {
            Lookup::Exact => "exact",
            Lookup::Ne => "ne",
            Lookup::In => "in",
            Lookup::Lt => "lt",
            Lookup::Lte => "lte",
            Lookup::Gt => "gt",
            Lookup::Gte => "gte",
            Lookup::IsNull => "isnull",
            Lookup::Contains => "contains",
            Lookup::StartsWith => "startswith",
            Lookup::IContains => "icontains",
            Lookup::IStartsWith => "istartswith",
            Lookup::IExact => "iexact",
        }
    }

    /// The lookup named `name`.
    pub fn from_name(name: &str) -> Option<Lookup> {
        Lookup::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Whether the lookup compares text (and so needs a text field).
    pub const fn is_text(self) -> bool {
        matches!(
            self,
            Lookup::Contains
                | Lookup::StartsWith
                | Lookup::IContains
                | Lookup::IStartsWith
                | Lookup::IExact
        )
    }

    /// Whether the lookup orders values (and so needs numbers or text).
    pub const fn is_ordered(self) -> bool {
        matches!(self, Lookup::Lt | Lookup::Lte | Lookup::Gt | Lookup::Gte)
    }
}
