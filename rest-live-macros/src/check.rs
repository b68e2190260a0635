//! Checks across attributes, once the whole declaration is parsed.

use proc_macro2::Span;

use crate::ctxt::Ctxt;
use crate::model::Resource;

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
}
