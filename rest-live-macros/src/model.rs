//! Parses the annotated struct and its attributes into a typed model. Errors go to the context and
//! parsing carries on, so every mistake is reported in one compile.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Attribute, DeriveInput, Ident, LitInt, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;

/// How a field without a value in `create` input is filled.
pub enum Default {
    /// No default: the field is required.
    None,
    /// `Default::default()` (`#[serde(default)]`, or an `Option`).
    Trait,
    /// `#[serde(default = "path")]`.
    Path(Path),
}

/// What a query may do with values of a field: read off its type (`Option` stripped).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Bool,
    Int,
    Float,
    Text,
    Other,
}

impl Kind {
    pub fn variant(self) -> &'static str {
        match self {
            Kind::Bool => "Bool",
            Kind::Int => "Int",
            Kind::Float => "Float",
            Kind::Text => "Text",
            Kind::Other => "Other",
        }
    }
}

pub struct Field {
    pub ident: Ident,
    pub ty: Type,
    /// The diesel column (`#[diesel(column_name = …)]`, else the field name).
    pub column: Ident,
    pub read_only: bool,
    /// The lookups of `filter(…)` as written (the bare `filter` flag: `exact`).
    pub lookups: Vec<(String, Span)>,
    /// The `order` flag.
    pub order: Option<Span>,
    /// The type inside `Option` (the type itself for a field that is not optional).
    pub inner: Type,
    pub kind: Kind,
    pub max_length: Option<(usize, Span)>,
    pub default: Default,
    pub is_option: bool,
}

impl Field {
    pub fn name(&self) -> String {
        self.ident.to_string()
    }

    pub fn required(&self) -> bool {
        !self.read_only && matches!(self.default, Default::None)
    }
}

pub struct GroupKey {
    pub name: String,
    pub lit: LitStr,
}

/// The whole declaration.
pub struct Resource {
    pub ident: Ident,
    pub stream: Option<LitStr>,
    /// The `hooks` flag, where it is written: it states (checked) that the type implements
    /// `Hooks`, which the generated code finds by itself anyway.
    pub hooks: Option<Span>,
    /// The policy type, `Self` for the bare `permissions` flag, `None` for the default.
    pub permissions: Option<Path>,
    /// The model label of the django-rest-live format (`"todolist.Task"`).
    pub label: Option<LitStr>,
    /// Path to the `rest-live` facade (`#[resource(crate = "…")]`), `::rest_live` by default.
    pub krate: Path,
    /// The diesel table module.
    pub table: Path,
    pub pk: Option<(String, Span)>,
    pub instance_subscribable: bool,
    pub group_keys: Vec<GroupKey>,
    pub fields: Vec<Field>,
    /// `ordering = "-priority,text"`: the default order.
    pub ordering: Option<LitStr>,
}

impl Resource {
    pub fn pk_field(&self) -> Option<&Field> {
        let name = self.pk.as_ref().map_or("id", |(n, _)| n.as_str());
        self.fields.iter().find(|f| f.ident == name)
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.ident == name)
    }
}

/// Whether an attribute's path ends in `name` (`#[resource]`, `#[rest_live::resource]`).
pub fn is_attr(attr: &Attribute, name: &str) -> bool {
    attr.path().segments.last().is_some_and(|s| s.ident == name)
}

/// Consumes the value of a key we do not know or do not care about (`= …` or `(…)`).
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.input.parse::<Token![=]>()?;
        while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
            meta.input.parse::<TokenTree>()?;
        }
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn key_name(path: &Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// Parses the struct and the arguments of `#[resource(…)]`; strips the attributes it consumes.
pub fn parse(cx: &Ctxt, args: TokenStream, input: &mut DeriveInput) -> Resource {
    let mut stream = None;
    let mut hooks = None;
    let mut permissions = None;
    let mut label = None;
    let mut krate: Path = syn::parse_quote!(::rest_live);
    let mut pk = None;
    let mut ordering = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("stream") {
            stream = Some(meta.value()?.parse::<LitStr>()?);
        } else if meta.path.is_ident("hooks") {
            hooks = Some(meta.path.span());
        } else if meta.path.is_ident("permissions") {
            permissions = Some(if meta.input.peek(Token![=]) {
                meta.value()?.parse::<Path>()?
            } else {
                // Spanned on the flag, so that what is said about the policy points at it.
                syn::parse_quote_spanned!(meta.path.span()=> Self)
            });
        } else if meta.path.is_ident("label") {
            label = Some(meta.value()?.parse::<LitStr>()?);
        } else if meta.path.is_ident("pk") {
            let lit: LitStr = meta.value()?.parse()?;
            pk = Some((lit.value(), lit.span()));
        } else if meta.path.is_ident("ordering") {
            ordering = Some(meta.value()?.parse::<LitStr>()?);
        } else if meta.path.is_ident("crate") {
            let lit: LitStr = meta.value()?.parse()?;
            match lit.parse::<Path>() {
                Ok(path) => krate = path,
                Err(_) => cx.error_spanned_by(&lit, "`crate` must be a path, e.g. \"::rest_live\""),
            }
        } else {
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "unknown key `{}` in #[resource]: expected `stream`, `hooks`, `permissions`, `pk`, `label`, `ordering` or `crate`",
                    key_name(&meta.path)
                ),
            );
            skip_value(&meta)?;
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(args) {
        cx.syn_error(e);
    }

    const GENERIC: &str = "#[resource] cannot be used on a generic struct: a registered resource needs one concrete type";
    // `Generics` prints its parameters only: a bare `where` clause is spanned by itself.
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, GENERIC);
    } else if let Some(where_clause) = &input.generics.where_clause {
        cx.error_spanned_by(where_clause, GENERIC);
    }

    let mut table = None;
    let mut instance_subscribable = false;
    let mut group_keys: Vec<GroupKey> = Vec::new();
    let mut kept = Vec::new();
    for attr in std::mem::take(&mut input.attrs) {
        if is_attr(&attr, "subscribable") {
            parse_subscribable(cx, &attr, &mut instance_subscribable, &mut group_keys);
            continue;
        }
        if attr.path().is_ident("diesel") {
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("table_name") {
                    table = Some(meta.value()?.parse::<Path>()?);
                } else if meta.path.is_ident("primary_key") {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let cols =
                        content.parse_terminated(<Ident as syn::parse::Parse>::parse, Token![,])?;
                    if cols.len() != 1 {
                        cx.error_spanned_by(
                            &cols,
                            "#[resource] supports a single-column primary key",
                        );
                    }
                    if pk.is_none() {
                        pk = cols.first().map(|c| (c.to_string(), c.span()));
                    }
                } else {
                    skip_value(&meta)?;
                }
                Ok(())
            });
        }
        kept.push(attr);
    }
    input.attrs = kept;

    let ident = input.ident.clone();
    // diesel's own default: the snake-cased struct name plus "s".
    let table = table.unwrap_or_else(|| {
        let name = format!("{}s", snake_case(&ident.to_string()));
        Path::from(Ident::new(&name, ident.span()))
    });

    let fields = parse_fields(cx, input);

    Resource {
        ident,
        stream,
        hooks,
        permissions,
        label,
        krate,
        table,
        pk,
        instance_subscribable,
        group_keys,
        fields,
        ordering,
    }
}

fn parse_subscribable(
    cx: &Ctxt,
    attr: &Attribute,
    instance: &mut bool,
    group_keys: &mut Vec<GroupKey>,
) {
    let mut group_key: Option<LitStr> = None;
    let result = match &attr.meta {
        syn::Meta::Path(_) => Ok(()),
        _ => attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("group_key") {
                group_key = Some(meta.value()?.parse()?);
            } else {
                cx.error_spanned_by(
                    &meta.path,
                    format!(
                        "unknown key `{}` in #[subscribable]: expected `group_key`",
                        key_name(&meta.path)
                    ),
                );
                skip_value(&meta)?;
            }
            Ok(())
        }),
    };
    if let Err(e) = result {
        cx.syn_error(e);
        return;
    }
    match group_key {
        None => *instance = true,
        Some(lit) => {
            let name = lit.value();
            if group_keys.iter().any(|g| g.name == name) {
                cx.error_spanned_by(&lit, format!("group key `{name}` is declared twice"));
            } else {
                group_keys.push(GroupKey { name, lit });
            }
        }
    }
}

fn parse_fields(cx: &Ctxt, input: &mut DeriveInput) -> Vec<Field> {
    let data = match &mut input.data {
        syn::Data::Struct(data) => data,
        syn::Data::Enum(e) => {
            cx.error_spanned_by(
                e.enum_token,
                "#[resource] can only be used on a struct with named fields",
            );
            return Vec::new();
        }
        syn::Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "#[resource] can only be used on a struct with named fields",
            );
            return Vec::new();
        }
    };
    let syn::Fields::Named(named) = &mut data.fields else {
        cx.error_spanned_by(
            &data.fields,
            "#[resource] needs named fields (`struct Task { id: i32, … }`)",
        );
        return Vec::new();
    };
    let mut fields = Vec::new();
    for field in named.named.iter_mut() {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let mut read_only = false;
        let mut lookups: Vec<(String, Span)> = Vec::new();
        let mut order = None;
        let mut max_length = None;
        let mut default = Default::None;
        let mut column = ident.clone();
        let mut kept = Vec::new();
        for attr in std::mem::take(&mut field.attrs) {
            if attr.path().is_ident("resource") {
                let result = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("read_only") {
                        read_only = true;
                    } else if meta.path.is_ident("filter") || meta.path.is_ident("filterable") {

                        if meta.input.peek(syn::token::Paren) {
                            let content;
                            syn::parenthesized!(content in meta.input);
                            let names = content
                                .parse_terminated(Ident::parse_any, Token![,])?;
                            if names.is_empty() {
                                cx.error_spanned_by(
                                    &meta.path,
                                    "`filter()` names no lookup: write e.g. `filter(exact, in)`, or the bare `filter` for `exact`",
                                );
                            }
                            for name in names {
                                lookups.push((name.to_string(), name.span()));
                            }
                        } else {
                            lookups.push(("exact".to_owned(), meta.path.span()));
                        }
                    } else if meta.path.is_ident("order") {
                        order = Some(meta.path.span());
                    } else if meta.path.is_ident("max_length") {
                        let lit: LitInt = meta.value()?.parse()?;
                        max_length = Some((lit.base10_parse::<usize>()?, lit.span()));
                    } else {
                        cx.error_spanned_by(
                            &meta.path,
                            format!(
                                "unknown key `{}` in field #[resource]: expected `read_only`, `filter`, `order` or `max_length`",
                                key_name(&meta.path)
                            ),
                        );
                        skip_value(&meta)?;
                    }
                    Ok(())
                });
                if let Err(e) = result {
                    cx.syn_error(e);
                }
                continue;
            }
            if attr.path().is_ident("serde") {
                let _ = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("default") {
                        default = if meta.input.peek(Token![=]) {
                            let lit: LitStr = meta.value()?.parse()?;
                            match lit.parse::<Path>() {
                                Ok(p) => Default::Path(p),
                                Err(_) => Default::Trait,
                            }
                        } else {
                            Default::Trait
                        };
                    } else if ["rename", "flatten", "skip", "skip_serializing", "skip_deserializing"]
                        .iter()
                        .any(|k| meta.path.is_ident(k))
                    {
                        cx.error_spanned_by(
                            &meta.path,
                            format!(
                                "#[serde({})] is not supported on a #[resource] field: JSON keys are the field names",
                                key_name(&meta.path)
                            ),
                        );
                        skip_value(&meta)?;
                    } else {
                        skip_value(&meta)?;
                    }
                    Ok(())
                });
            }
            if attr.path().is_ident("diesel") {
                let _ = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("column_name") {
                        column = meta.value()?.parse::<Ident>()?;
                    } else {
                        skip_value(&meta)?;
                    }
                    Ok(())
                });
            }
            kept.push(attr);
        }
        field.attrs = kept;
        let is_option = is_option(&field.ty);
        let inner = if is_option {
            option_inner(&field.ty).unwrap_or_else(|| field.ty.clone())
        } else {
            field.ty.clone()
        };
        let kind = kind_of(&inner);
        if is_option && matches!(default, Default::None) {
            default = Default::Trait;
        }
        fields.push(Field {
            ident,
            ty: field.ty.clone(),
            column,
            read_only,
            lookups,
            order,
            inner,
            kind,
            max_length,
            default,
            is_option,
        });
    }
    fields
}

fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Option" && !s.arguments.is_empty()),
        _ => false,
    }
}

fn option_inner(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}

/// The kind of a (non-optional) type, by its name: an alias or a wrapper is `Other`.
fn kind_of(ty: &Type) -> Kind {
    let Type::Path(p) = ty else {
        return Kind::Other;
    };
    if p.qself.is_some() {
        return Kind::Other;
    }
    let Some(last) = p.path.segments.last() else {
        return Kind::Other;
    };
    if !last.arguments.is_empty() {
        return Kind::Other;
    }
    match last.ident.to_string().as_str() {
        "bool" => Kind::Bool,
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" => Kind::Int,
        "f32" | "f64" => Kind::Float,
        "String" => Kind::Text,
        _ => Kind::Other,
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The span of a type, for bound checks reported at the user's field.
pub fn ty_span(ty: &Type) -> Span {
    ty.span()
}
