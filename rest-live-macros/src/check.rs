//! Checks across attributes, once the whole declaration is parsed.

use proc_macro2::Span;

use crate::ctxt::Ctxt;
use crate::model::{Field, Kind, Resource};

pub fn check(cx: &Ctxt, r: &Resource) {
    match &r.stream {
        None => cx.syn_error(syn::Error::new(
            Span::call_site(),
            "missing `stream = \"…\"` in #[resource]: e.g. #[resource(stream = \"tasks\")]",
        )),
        Some(lit) => {
            // One rule for the macro and the runtime (which checks hand-made registrations).
            if let Some(problem) = rest_live_names::check_stream_name(&lit.value()) {
                cx.error_spanned_by(lit, problem);
            }
        }
    }
    for key in &r.group_keys {
        if r.field(&key.name).is_none() {
            cx.error_spanned_by(
                &key.lit,
                format!("group_key `{}` names no field of `{}`", key.name, r.ident),
            );
        }
    }
    if !r.fields.is_empty() && r.pk_field().is_none() {
        match &r.pk {
            Some((name, span)) => cx.syn_error(syn::Error::new(
                *span,
                format!("primary key `{name}` names no field of `{}`", r.ident),
            )),
            None => cx.error_spanned_by(
                &r.ident,
                "no `id` field: name the primary key with #[resource(pk = \"…\")] or #[diesel(primary_key(…))]",
            ),
        }
    }
    for field in &r.fields {
        check_queries(cx, field);
    }
    check_ordering(cx, r);
}

fn type_name(field: &Field) -> String {
    let ty = &field.ty;
    quote::quote!(#ty).to_string().replace(' ', "")
}

/// Each lookup of `filter(…)` and the `order` flag fit the field's type.
fn check_queries(cx: &Ctxt, field: &Field) {
    let name = field.name();
    let mut seen: Vec<&str> = Vec::new();
    for (lookup, span) in &field.lookups {
        let lookup = lookup.as_str();
        let error = |message: String| cx.syn_error(syn::Error::new(*span, message));
        if !rest_live_names::LOOKUPS.contains(&lookup) {
            error(format!(
                "unknown lookup `{lookup}`: expected one of {}",
                rest_live_names::LOOKUPS.join(", ")
            ));
            continue;
        }
        if seen.contains(&lookup) {
            error(format!("lookup `{lookup}` is listed twice"));
            continue;
        }
        seen.push(lookup);
        let text = matches!(
            lookup,
            "contains" | "startswith" | "icontains" | "istartswith" | "iexact"
        );
        let ordered = matches!(lookup, "lt" | "lte" | "gt" | "gte");
        if text && field.kind != Kind::Text {
            error(format!(
                "`{lookup}` needs a text field, and `{name}` is `{}`",
                type_name(field)
            ));
        } else if ordered && !matches!(field.kind, Kind::Int | Kind::Float | Kind::Text) {
            error(format!(
                "`{lookup}` needs a number or text field, and `{name}` is `{}` (write the type itself, not an alias)",
                type_name(field)
            ));
        } else if lookup == "isnull" && !field.is_option {
            error(format!(
                "`isnull` needs a field that can be null, and `{name}` is `{}`",
                type_name(field)
            ));
        }
    }
    if let Some(span) = field.order {
        let message = if field.is_option {
            Some(format!(
                "`order` on `{name}`: ordering by a field that can be null is not supported"
            ))
        } else if field.kind == Kind::Other {
            Some(format!(
                "`order` needs a boolean, number or text field, and `{name}` is `{}` (write the type itself, not an alias)",
                type_name(field)
            ))
        } else {
            None
        };
        if let Some(message) = message {
            cx.syn_error(syn::Error::new(span, message));
        }
    }
}

/// The struct's `ordering = "…"` names orderable fields.
fn check_ordering(cx: &Ctxt, r: &Resource) {
    let Some(lit) = &r.ordering else { return };
    let value = lit.value();
    let pk = r.pk_field().map(Field::name);
    let mut seen = Vec::new();
    for term in value.split(',').map(str::trim) {
        let name = term.strip_prefix('-').unwrap_or(term);
        let problem = match r.field(name) {
            _ if name.is_empty() => Some(
                "`ordering` has an empty term: write field names separated by commas, e.g. \"-priority,text\""
                    .to_owned(),
            ),
            None => Some(format!(
                "`ordering` names `{name}`, which is no field of `{}`",
                r.ident
            )),
            Some(f) if f.order.is_none() && Some(f.name()) != pk => Some(format!(
                "`ordering` names `{name}`, which is not orderable: mark it #[resource(order)]"
            )),
            Some(_) if seen.contains(&name) => Some(format!("`ordering` names `{name}` twice")),
            Some(_) => None,
        };
        seen.push(name);
        if let Some(problem) = problem {
            cx.error_spanned_by(lit, problem);
        }
    }
}
