//! Checks across attributes, once the whole declaration is parsed.

use proc_macro2::Span;

use crate::ctxt::Ctxt;
use crate::model::Resource;

/// Stream names rest-live keeps for itself (mirrors `rest_live_core::registry::RESERVED_STREAMS`).
const RESERVED_STREAMS: &[&str] = &["jobs"];

pub fn check(cx: &Ctxt, r: &Resource) {
    match &r.stream {
        None => cx.syn_error(syn::Error::new(
            Span::call_site(),
            "missing `stream = \"…\"` in #[resource]: e.g. #[resource(stream = \"tasks\")]",
        )),
        Some(lit) => {
            let name = lit.value();
            if name.is_empty() {
                cx.error_spanned_by(lit, "the stream name is empty");
            } else if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                // It is a URL path segment and a WebSocket stream key: no escaping anywhere.
                cx.error_spanned_by(
                    lit,
                    format!(
                        "stream \"{name}\" may only contain ASCII letters, digits, '_' and '-'"
                    ),
                );
            } else if RESERVED_STREAMS.contains(&name.as_str()) {
                cx.error_spanned_by(lit, format!("stream \"{name}\" is reserved by rest-live"));
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
}
