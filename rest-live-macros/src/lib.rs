//! Attribute macros of rest-live: `#[resource]` and `#[subscribable]`.
//!
//! Entry points only: each parses into a typed model ([`model`]), checks it ([`check`]) and
//! generates from the model alone ([`expand`]); every error is collected and spanned.

mod check;
mod ctxt;
mod expand;
mod model;

use proc_macro::TokenStream;
use quote::quote;
use syn::{Attribute, DeriveInput, parse_macro_input};

/// Declares a diesel model struct as a live resource. See the `rest-live` crate documentation.
#[proc_macro_attribute]
pub fn resource(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut input = parse_macro_input!(input as DeriveInput);
    let cx = ctxt::Ctxt::new();
    let model = model::parse(&cx, args.into(), &mut input);
    check::check(&cx, &model);
    match cx.check() {
        // Keep the struct itself, so the errors are ours and not a cascade of "cannot find type".
        Some(errors) => quote!(#input #errors).into(),
        None => {
            let generated = expand::expand(&model);
            quote!(#input #generated).into()
        }
    }
}

/// Lets clients subscribe to a resource: by pk (`#[subscribable]`) or by a group key
/// (`#[subscribable(group_key = "list_id")]`, once per key). Must accompany `#[resource]`.
#[proc_macro_attribute]
pub fn subscribable(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let mut input = parse_macro_input!(input as DeriveInput);
    // `#[subscribable]` above `#[resource]` runs first: move it below, where `#[resource]` reads it.
    let Some(at) = input
        .attrs
        .iter()
        .position(|a| model::is_attr(a, "resource"))
    else {
        let error = syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[subscribable] needs #[resource(stream = \"…\")] on the same struct",
        )
        .to_compile_error();
        return quote!(#input #error).into();
    };
    let attr: Attribute = if args.is_empty() {
        syn::parse_quote!(#[subscribable])
    } else {
        syn::parse_quote!(#[subscribable(#args)])
    };
    // After those already moved, so that group keys keep their declaration order.
    let after = input.attrs[at + 1..]
        .iter()
        .take_while(|a| model::is_attr(a, "subscribable"))
        .count();
    input.attrs.insert(at + 1 + after, attr);
    quote!(#input).into()
}
