//! `#[actions]` on an `impl` block of a resource: its `#[action(detail)]` and
//! `#[action(collection)]` methods become custom actions (docs/protocol.md §5). Parsed, checked
//! and expanded here; every mistake is a compile error at the token that is wrong.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, ImplItem, ImplItemFn, ItemImpl, LitStr, Path, PathArguments,
    ReturnType, Type,
};

use crate::ctxt::Ctxt;

/// One declared action.
struct Action {
    name: String,
    method: syn::Ident,
    detail: bool,
    /// `&mut self` (else `&self`), for a detail action.
    mutable: bool,
    args: Option<Type>,
    output: Type,
    description: String,
    span: Span,
}

/// Expands `#[actions]` on `item`.
pub fn expand(args: TokenStream, mut item: ItemImpl) -> TokenStream {
    let cx = Ctxt::new();
    let krate = crate_path(&cx, args);
    if let Some(trait_) = &item.trait_ {
        cx.error_spanned_by(
            &trait_.0,
            "#[actions] goes on an inherent impl of the resource (`impl Task { … }`), not a trait impl",
        );
    }
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(&item.generics, "#[actions] cannot go on a generic impl");
    }
    let mut actions: Vec<Action> = Vec::new();
    let mut marked = false;
    for member in &mut item.items {
        let ImplItem::Fn(f) = member else { continue };
        let Some(at) = f.attrs.iter().position(|a| a.path().is_ident("action")) else {
            continue;
        };
        marked = true;
        let attr = f.attrs.remove(at);
        if let Some(again) = f.attrs.iter().find(|a| a.path().is_ident("action")) {
            cx.error_spanned_by(again, "one #[action(…)] per method");
        }
        if let Some(action) = parse_action(&cx, &attr, f) {
            if let Some(first) = actions.iter().find(|a| a.name == action.name) {
                cx.syn_error(syn::Error::new(
                    action.span,
                    format!(
                        "the action `{}` is declared twice in this impl (also `{}`)",
                        action.name, first.method
                    ),
                ));
            }
            actions.push(action);
        }
    }
    if !marked {
        cx.syn_error(syn::Error::new(
            Span::call_site(),
            "#[actions] found no #[action(detail)] or #[action(collection)] method in this impl",
        ));
    }
    match cx.check() {
        Some(errors) => quote!(#item #errors),
        None => {
            let self_ty = &item.self_ty;
            let generated = actions.iter().map(|a| expand_one(&krate, self_ty, a));
            quote! {
                #item
                #(#generated)*
            }
        }
    }
}

fn crate_path(cx: &Ctxt, args: TokenStream) -> Path {
    let mut path: Path = syn::parse_quote!(::rest_live);
    if args.is_empty() {
        return path;
    }
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            let lit: LitStr = meta.value()?.parse()?;
            path = lit.parse()?;
            Ok(())
        } else {
            Err(meta.error("#[actions] takes only `crate = \"…\"`"))
        }
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(e);
    }
    path
}

/// Reads `#[action(detail)]` / `#[action(collection)]` and the method's signature.
fn parse_action(cx: &Ctxt, attr: &Attribute, f: &ImplItemFn) -> Option<Action> {
    let mut kind: Option<(bool, Span)> = None;
    let parsed = if matches!(attr.meta, syn::Meta::Path(_)) {
        Ok(())
    } else {
        attr.parse_nested_meta(|meta| {
            let detail = if meta.path.is_ident("detail") {
                true
            } else if meta.path.is_ident("collection") {
                false
            } else {
                return Err(meta.error(
                    "unknown key: #[action(detail)] (on one object) or #[action(collection)]",
                ));
            };
            if kind.is_some() {
                return Err(meta.error("an action is either `detail` or `collection`"));
            }
            kind = Some((detail, meta.path.span()));
            Ok(())
        })
    };
    if let Err(e) = parsed {
        cx.syn_error(e);
        return None;
    }
    let Some((detail, _)) = kind else {
        cx.error_spanned_by(
            attr,
            "say which kind: #[action(detail)] (on one object, by pk) or #[action(collection)]",
        );
        return None;
    };
    let sig = &f.sig;
    let name = sig.ident.to_string();
    let mut ok = true;
    if let Some(asyncness) = &sig.asyncness {
        cx.error_spanned_by(
            asyncness,
            "an action is synchronous: it runs inside the write transaction (declare a job for async work)",
        );
        ok = false;
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(&sig.generics, "an action cannot be generic");
        ok = false;
    }
    if rest_live_names::BUILT_IN_ACTIONS.contains(&name.as_str()) {
        cx.error_spanned_by(
            &sig.ident,
            format!(
                "`{name}` is a built-in action of every resource: give the action another name"
            ),
        );
        ok = false;
    }
    let mut inputs = sig.inputs.iter();
    let mut mutable = false;
    match (detail, sig.receiver()) {
        (true, Some(receiver)) => {
            match &receiver.kind {
                syn::ReceiverKind::Reference(_, _, m) => mutable = m.is_some(),
                _ => {
                    cx.error_spanned_by(
                        receiver,
                        "a detail action takes `&mut self` (or `&self`): the object is loaded for it",
                    );
                    ok = false;
                }
            }
            inputs.next();
        }
        (true, None) => {
            cx.error_spanned_by(
                &sig.ident,
                "a detail action takes `&mut self` (or `&self`) first: fn complete(&mut self, tx: &mut Tx<'_>)",
            );
            ok = false;
        }
        (false, Some(receiver)) => {
            cx.error_spanned_by(
                receiver,
                "a collection action has no `self`: fn clear_done(tx: &mut Tx<'_>, args: Args); use #[action(detail)] for one object",
            );
            ok = false;
            inputs.next();
        }
        (false, None) => {}
    }
    match inputs.next() {
        Some(FnArg::Typed(tx)) if is_tx(&tx.ty) => {}
        Some(other) => {
            cx.error_spanned_by(
                other,
                "the transaction comes next: `tx: &mut Tx<'_>` (every write of the action goes through it)",
            );
            ok = false;
        }
        None => {
            cx.error_spanned_by(
                &sig.ident,
                "an action takes the transaction: `tx: &mut Tx<'_>`",
            );
            ok = false;
        }
    }
    let args = match inputs.next() {
        Some(FnArg::Typed(args)) => Some((*args.ty).clone()),
        Some(other) => {
            cx.error_spanned_by(other, "the arguments are one value of a `Deserialize` type");
            ok = false;
            None
        }
        None => None,
    };
    if let Some(extra) = inputs.next() {
        cx.error_spanned_by(
            extra,
            "an action takes at most one argument besides the transaction: put them in one `Deserialize` struct",
        );
        ok = false;
    }
    let output = match result_ok_type(&sig.output) {
        Some(t) => t,
        None => {
            let at: &dyn quote::ToTokens = match &sig.output {
                ReturnType::Default => &sig.ident,
                ReturnType::Type(_, ty) => ty,
            };
            cx.error_spanned_by(
                at,
                "an action returns `Result<T, ApiError>`, where T is `Serialize` (what the client receives)",
            );
            ok = false;
            syn::parse_quote!(())
        }
    };
    ok.then(|| Action {
        name,
        method: sig.ident.clone(),
        detail,
        mutable,
        args,
        output,
        description: doc_of(&f.attrs),
        span: sig.ident.span(),
    })
}

/// `&mut Tx<…>` (by its last path segment).
fn is_tx(ty: &Type) -> bool {
    let Type::Reference(r) = ty else { return false };
    if r.mutability.is_none() {
        return false;
    }
    match &*r.elem {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Tx"),
        _ => false,
    }
}

/// `T` of `-> Result<T, E>`.
fn result_ok_type(output: &ReturnType) -> Option<Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(p) = &**ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let ok = types.next()?;
    types.next()?;
    Some(ok)
}

/// The doc comment, its lines trimmed and joined.
fn doc_of(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

fn expand_one(krate: &Path, self_ty: &Type, a: &Action) -> TokenStream {
    let marker = format_ident!("__RestLiveAction_{}", a.method);
    let method = &a.method;
    let name = &a.name;
    let detail = a.detail;
    let description = &a.description;
    let output = &a.output;
    let (args_ty, pass_args) = match &a.args {
        Some(t) => (quote!(#t), quote!(, __args)),
        None => (quote!(()), quote!()),
    };
    let no_args = a.args.is_none();
    let call = if a.detail {
        let object = if a.mutable {
            quote!(__object)
        } else {
            quote!(&*__object)
        };
        quote! {
            match __object {
                ::core::option::Option::Some(__object) => {
                    <#self_ty>::#method(#object, __tx #pass_args).map_err(::core::convert::Into::into)
                }
                ::core::option::Option::None => ::core::result::Result::Err(__rl::ApiError::NotFound),
            }
        }
    } else {
        quote! {
            let _ = __object;
            <#self_ty>::#method(__tx #pass_args).map_err(::core::convert::Into::into)
        }
    };
    let location = quote_spanned!(a.span=> ::core::concat!(::core::file!(), ":", ::core::line!()));
    quote_spanned! {a.span=>
        const _: () = {
            use #krate::__private as __rl;
            #[allow(non_camel_case_types)]
            #[doc(hidden)]
            pub struct #marker;
            impl __rl::CustomAction for #marker {
                type Resource = #self_ty;
                type Args = #args_ty;
                type Output = #output;
                const NAME: &'static str = #name;
                const DETAIL: bool = #detail;
                const NO_ARGS: bool = #no_args;
                const DESCRIPTION: &'static str = #description;
                const LOCATION: &'static str = #location;
                #[allow(unused_variables)]
                fn run(
                    __tx: &mut __rl::Tx<'_>,
                    __object: ::core::option::Option<&mut #self_ty>,
                    __args: Self::Args,
                ) -> ::core::result::Result<Self::Output, __rl::ApiError> {
                    #call
                }
                fn args_schema() -> ::core::option::Option<__rl::serde_json::Value> {
                    __rl::schema_of::<Self::Args>()
                }
                #[allow(clippy::needless_borrow)]
                fn output_schema() -> ::core::option::Option<__rl::serde_json::Value> {
                    #[allow(unused_imports)]
                    use __rl::{TraceDeserialize as _, TraceNothing as _};
                    (&__rl::SchemaProbe::<Self::Output>::new()).schema()
                }
            }
            __rl::inventory::submit! {
                __rl::ActionRegistration {
                    action: &__rl::ActionBound::<#marker>::INSTANCE,
                }
            }
        };
    }
}
