//! Generates the `Resource` impl (calling the user's `Hooks` impl if there is one), its filter
//! type and the registration, from the checked model alone. The runtime is reached only through `<crate>::__private`, every
//! path is absolute (the output works under `#![no_implicit_prelude]`), and everything sits in a
//! `const _: () = { … };` block.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{Default, Field, Resource, ty_span};

pub fn expand(r: &Resource) -> TokenStream {
    let krate = &r.krate;
    let ident = &r.ident;
    let table = &r.table;
    let Some(pk) = r.pk_field() else {
        return TokenStream::new();
    };
    let stream = r.stream.as_ref().map(|s| s.value()).unwrap_or_default();
    let name = ident.to_string();
    let pk_ident = &pk.ident;
    let pk_ty = &pk.ty;
    let pk_col = &pk.column;
    let pk_name = pk.name();

    let columns: Vec<_> = r.fields.iter().map(|f| &f.column).collect();
    let cols = quote!((#(#table::#columns,)*));

    let field_meta = r.fields.iter().map(|f| field_meta(r, f));
    let group_names: Vec<_> = r.group_keys.iter().map(|g| g.name.as_str()).collect();
    let instance = r.instance_subscribable;

    // Filters: the pk, the group keys and the fields marked filterable.
    let filterable: Vec<&Field> = r.fields.iter().filter(|f| is_filterable(r, f)).collect();
    let filter_variants = filterable.iter().map(|f| {
        let (id, ty) = (&f.ident, &f.ty);
        quote!(#id(#ty))
    });
    let parse_filter_arms = filterable.iter().map(|f| {
        let (id, ty, n) = (&f.ident, &f.ty, f.name());
        quote!(#n => __rl::Some(__rl::parse_value::<#ty>(value).map(__Filter::#id)))
    });
    let apply_filter_arms = filterable.iter().map(|f| {
        let (id, col) = (&f.ident, &f.column);
        if f.is_option {
            quote! {
                __Filter::#id(v) => match v {
                    __rl::Some(v) => {
                        let v = ::core::clone::Clone::clone(v);
                        __q = __q.filter(#table::#col.eq(::core::clone::Clone::clone(&v)));
                        __n = __n.filter(#table::#col.eq(v));
                    }
                    __rl::None => {
                        __q = __q.filter(#table::#col.is_null());
                        __n = __n.filter(#table::#col.is_null());
                    }
                }
            }
        } else {
            quote! {
                __Filter::#id(v) => {
                    __q = __q.filter(#table::#col.eq(::core::clone::Clone::clone(v)));
                    __n = __n.filter(#table::#col.eq(::core::clone::Clone::clone(v)));
                }
            }
        }
    });

    let group_arms = r.group_keys.iter().filter_map(|g| {
        let f = r.field(&g.name)?;
        let (ty, n) = (&f.ty, &g.name);
        Some(quote!(#n => __rl::Some(__rl::canonical::<#ty>(value))))
    });
    let group_values = r.group_keys.iter().filter_map(|g| {
        let f = r.field(&g.name)?;
        let (id, n) = (&f.ident, &g.name);
        Some(quote!(__v.push((#n, __rl::to_json(&self.#id)));))
    });

    let all_names: Vec<String> = r.fields.iter().map(Field::name).collect();
    let writable: Vec<&Field> = r.fields.iter().filter(|f| !f.read_only).collect();
    let locals: Vec<_> = writable
        .iter()
        .map(|f| format_ident!("__f_{}", f.ident))
        .collect();
    let take_fields = writable.iter().zip(&locals).map(|(f, local)| {
        let (ty, n, required, nullable) = (&f.ty, f.name(), f.required(), f.is_option);
        quote! {
            let #local: __rl::Option<#ty> =
                __rl::field::<#ty>(data, #n, #required, #nullable, &mut __errors);
        }
    });
    let take_fields_update = writable.iter().zip(&locals).map(|(f, local)| {
        let (ty, n, required, nullable) = (&f.ty, f.name(), f.required(), f.is_option);
        quote! {
            let #local: __rl::Option<#ty> =
                __rl::field::<#ty>(data, #n, !partial && #required, #nullable, &mut __errors);
        }
    });
    let fill_defaults = writable.iter().zip(&locals).filter_map(|(f, local)| {
        let n = f.name();
        let value = default_expr(f)?;
        Some(quote! {
            let #local = match #local {
                __rl::None if !data.contains_key(#n) => __rl::Some(#value),
                other => other,
            };
        })
    });
    let check_lengths: Vec<_> = writable
        .iter()
        .zip(&locals)
        .filter_map(|(f, local)| {
            let (max, span) = f.max_length?;
            let n = f.name();
            Some(quote_spanned! {span=>
                if let __rl::Some(v) = &#local {
                    __rl::check_max_length(v, #max, #n, &mut __errors);
                }
            })
        })
        .collect();
    let read_only_inits = r.fields.iter().filter(|f| f.read_only).map(|f| {
        let id = &f.ident;
        quote!(#id: ::core::default::Default::default())
    });
    let writable_idents: Vec<_> = writable.iter().map(|f| &f.ident).collect();
    let construct = if writable.is_empty() {
        quote! {
            if !__errors.is_empty() {
                return __rl::Err(__errors);
            }
            __rl::Ok(Self { #(#read_only_inits,)* })
        }
    } else {
        quote! {
            if !__errors.is_empty() {
                return __rl::Err(__errors);
            }
            let (#(__rl::Some(#locals),)*) = (#(#locals,)*) else {
                return __rl::Err(__errors);
            };
            __rl::Ok(Self { #(#read_only_inits,)* #(#writable_idents: #locals,)* })
        }
    };

    // Stored columns: every field but a read-only (database-generated) pk on insert; every field
    // but the pk on update. Read-only fields keep what the struct holds (a hook may set them).
    let insert_fields: Vec<&Field> = r
        .fields
        .iter()
        .filter(|f| !(f.ident == pk.ident && f.read_only))
        .collect();
    let insert_values = assignments(table, &insert_fields);
    let insert = if insert_fields.is_empty() {
        quote!(__rl::diesel::insert_into(#table::table).default_values())
    } else {
        quote!(__rl::diesel::insert_into(#table::table).values(#insert_values))
    };
    let update_fields: Vec<&Field> = r.fields.iter().filter(|f| f.ident != pk.ident).collect();
    let update_values = assignments(table, &update_fields);
    let update = if update_fields.is_empty() {
        quote!(#table::table.find(::core::clone::Clone::clone(&row.#pk_ident)).select(#cols).first::<Self>(c))
    } else {
        quote! {
            __rl::diesel::update(#table::table.find(::core::clone::Clone::clone(&row.#pk_ident)))
                .set(#update_values)
                .returning(#cols)
                .get_result::<Self>(c)
        }
    };

    // The user's `Hooks` impl if there is one, else none (see `__private::HooksOf`).
    let hooks_of = quote!((&__rl::HooksOf::<Self>::NEW));
    let hooks_flag = r.hooks.map(|span| {
        // Spanned at the flag, where the error belongs when there is no impl.
        let ty = syn::Ident::new(&ident.to_string(), span);
        quote_spanned! {span=>
            #[allow(dead_code)]
            fn __rest_live_hooks_flag() {
                __rl::assert_hooks::<#ty>();
            }
        }
    });
    let table_name = table
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();

    let bound_checks = bound_checks(r);
    let retired_constants = retired_constants(r);
    let policy = match &r.permissions {
        Some(path) => quote!(#path),
        None => quote!(__rl::AllowAll),
    };
    let label = match &r.label {
        Some(l) => l.value(),
        None => name.clone(),
    };

    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, non_snake_case, unused_qualifications, clippy::all)]
        const _: () = {
            use #krate::__private as __rl;
            #[allow(unused_imports)]
            use __rl::diesel::prelude::*;
            #[allow(unused_imports)]
            use __rl::{NoHooks as _, UserHooks as _};

            /// One typed equality filter on a filterable field.
            pub enum __Filter {
                #(#filter_variants,)*
            }

            #bound_checks

            #retired_constants

            #hooks_flag

            #[automatically_derived]
            impl __rl::Resource for #ident {
                type Pk = #pk_ty;
                type Filter = __Filter;
                type Policy = #policy;

                const META: &'static __rl::ResourceMeta = &__rl::ResourceMeta {
                    stream: #stream,
                    label: #label,
                    type_name: ::core::concat!(::core::module_path!(), "::", #name),
                    location: ::core::concat!(::core::file!(), ":", ::core::line!()),
                    pk: #pk_name,
                    fields: &[#(#field_meta,)*],
                    group_keys: &[#(#group_names,)*],
                    instance_subscribable: #instance,
                };
                const TABLE: &'static str = #table_name;

                fn pk(&self) -> Self::Pk {
                    ::core::clone::Clone::clone(&self.#pk_ident)
                }

                fn parse_pk(value: &__rl::Value) -> __rl::Result<Self::Pk, __rl::String> {
                    __rl::parse_value::<#pk_ty>(value)
                }

                fn parse_filter(
                    field: &str,
                    value: &__rl::Value,
                ) -> __rl::Option<__rl::Result<__Filter, __rl::String>> {
                    match field {
                        #(#parse_filter_arms,)*
                        _ => __rl::None,
                    }
                }

                fn parse_group_value(
                    key: &str,
                    value: &__rl::Value,
                ) -> __rl::Option<__rl::Result<__rl::String, __rl::String>> {
                    let _ = value;
                    match key {
                        #(#group_arms,)*
                        _ => __rl::None,
                    }
                }

                fn group_values(&self) -> __rl::Vec<(&'static str, __rl::Value)> {
                    let mut __v = __rl::Vec::new();
                    #(#group_values)*
                    __v
                }

                fn from_input(
                    data: &__rl::Map<__rl::String, __rl::Value>,
                ) -> __rl::Result<Self, __rl::FieldErrors> {
                    let mut __errors = __rl::FieldErrors::new();
                    __rl::reject_unknown(data, &[#(#all_names,)*], &mut __errors);
                    #(#take_fields)*
                    #(#fill_defaults)*
                    #(#check_lengths)*
                    #construct
                }

                fn apply_input(
                    &mut self,
                    data: &__rl::Map<__rl::String, __rl::Value>,
                    partial: bool,
                ) -> __rl::Result<(), __rl::FieldErrors> {
                    let _ = partial;
                    let mut __errors = __rl::FieldErrors::new();
                    __rl::reject_unknown(data, &[#(#all_names,)*], &mut __errors);
                    #(#take_fields_update)*
                    #(#check_lengths)*
                    if !__errors.is_empty() {
                        return __rl::Err(__errors);
                    }
                    #(if let __rl::Some(v) = #locals { self.#writable_idents = v; })*
                    __rl::Ok(())
                }

                fn db_get(
                    conn: __rl::AnyConn<'_>,
                    pk: &Self::Pk,
                ) -> __rl::diesel::QueryResult<__rl::Option<Self>> {
                    __rl::__with_conn!(conn, |c| {
                        #table::table
                            .find(::core::clone::Clone::clone(pk))
                            .select(#cols)
                            // Not first(): a bound LIMIT makes SQLite re-prepare every time.
                            .get_result::<Self>(c)
                            .optional()
                    })
                }

                fn db_list(
                    conn: __rl::AnyConn<'_>,
                    filters: &[__Filter],
                    limit: __rl::Option<i64>,
                    offset: i64,
                ) -> __rl::diesel::QueryResult<(i64, __rl::Vec<Self>)> {
                    __rl::__with_conn!(conn, |c| {
                        let mut __q = #table::table.select(#cols).into_boxed::<__Backend>();
                        let mut __n = #table::table.count().into_boxed::<__Backend>();
                        for __f in filters {
                            match __f {
                                #(#apply_filter_arms)*
                            }
                        }
                        let __count: i64 = __n.get_result(c)?;
                        // SQLite needs a LIMIT for an OFFSET: "no limit" is the largest one.
                        let __rows = __q
                            .order_by(#table::#pk_col.asc())
                            .limit(limit.unwrap_or(i64::MAX))
                            .offset(offset)
                            .load::<Self>(c)?;
                        __rl::Ok((__count, __rows))
                    })
                }

                fn db_insert(conn: __rl::AnyConn<'_>, row: &Self) -> __rl::diesel::QueryResult<Self> {
                    __rl::__with_conn!(conn, |c| {
                        #insert.returning(#cols).get_result::<Self>(c)
                    })
                }

                fn db_update(conn: __rl::AnyConn<'_>, row: &Self) -> __rl::diesel::QueryResult<Self> {
                    __rl::__with_conn!(conn, |c| { #update })
                }

                fn db_delete(
                    conn: __rl::AnyConn<'_>,
                    pk: &Self::Pk,
                ) -> __rl::diesel::QueryResult<usize> {
                    __rl::__with_conn!(conn, |c| {
                        __rl::diesel::delete(#table::table.find(::core::clone::Clone::clone(pk))).execute(c)
                    })
                }

                fn db_probe(conn: __rl::AnyConn<'_>) -> __rl::diesel::QueryResult<()> {
                    __rl::__with_conn!(conn, |c| {
                        #table::table.select(#cols).limit(0).load::<Self>(c).map(|_| ())
                    })
                }

                fn hook_before_save(
                    &mut self,
                    tx: &mut __rl::Tx<'_>,
                    old: __rl::Option<&Self>,
                ) -> __rl::Result<(), __rl::ApiError> {
                    #hooks_of.before_save(self, tx, old)
                }

                fn hook_before_delete(
                    &self,
                    tx: &mut __rl::Tx<'_>,
                ) -> __rl::Result<(), __rl::ApiError> {
                    #hooks_of.before_delete(self, tx)
                }

                fn hook_after_save(&self, created: bool) {
                    #hooks_of.after_save(self, created)
                }

                fn hook_after_delete(&self) {
                    #hooks_of.after_delete(self)
                }
            }

            __rl::inventory::submit! {
                __rl::Registration { binding: &__rl::Bound::<#ident>::INSTANCE }
            }
        };
    }
}

fn is_filterable(r: &Resource, f: &Field) -> bool {
    f.filterable
        || r.pk_field().is_some_and(|pk| pk.ident == f.ident)
        || r.group_keys.iter().any(|g| f.ident == g.name)
}

fn field_meta(r: &Resource, f: &Field) -> TokenStream {
    let ty = &f.ty;
    let n = f.name();
    let (read_only, required, nullable) = (f.read_only, f.required(), f.is_option);
    let filterable = is_filterable(r, f);
    let max_length = match f.max_length {
        Some((n, _)) => quote!(__rl::Some(#n)),
        None => quote!(__rl::None),
    };
    quote! {
        __rl::FieldMeta {
            name: #n,
            rust_type: ::core::stringify!(#ty),
            read_only: #read_only,
            required: #required,
            filterable: #filterable,
            nullable: #nullable,
            max_length: #max_length,
        }
    }
}

fn default_expr(f: &Field) -> Option<TokenStream> {
    match &f.default {
        Default::None => None,
        Default::Trait => Some(quote!(::core::default::Default::default())),
        Default::Path(p) => Some(quote!(#p())),
    }
}

fn assignments(table: &syn::Path, fields: &[&Field]) -> TokenStream {
    let pairs = fields.iter().map(|f| {
        let (id, col) = (&f.ident, &f.column);
        quote!(#table::#col.eq(&row.#id))
    });
    quote!((#(#pairs,)*))
}

/// A warning, spanned on the policy, when it still sets `PRESENTS` or `OPEN` (which no longer do
/// anything): Rust does not warn about overriding a deprecated trait item, so the generated code
/// calls a function deprecated only for a policy that sets one (see `__private::SetsPresents`).
fn retired_constants(r: &Resource) -> TokenStream {
    let Some(path) = &r.permissions else {
        return quote!();
    };
    let ident = &r.ident;
    let span = path.span();
    let policy = quote!(<<#ident as __rl::Resource>::Policy as __rl::Permissions<#ident>>);
    quote_spanned! {span=>
        const _: () = {
            #[allow(deprecated)]
            const PRESENTS: bool = #policy::PRESENTS;
            #[allow(deprecated)]
            const OPEN: bool = #policy::OPEN;
            __rl::SetsPresents::<PRESENTS>::check();
            __rl::SetsOpen::<OPEN>::check();
        };
    }
}

/// Trait requirements checked at the user's field types, so a wrong type errors there.
fn bound_checks(r: &Resource) -> TokenStream {
    let checks = r.fields.iter().map(|f| {
        let ty = &f.ty;
        let span = ty_span(ty);
        let col = &f.column;
        let table = &r.table;
        let mut out = quote_spanned! {span=>
            __rl::assert_column::<#ty, <#table::#col as __rl::diesel::Expression>::SqlType>();
            __rl::assert_field::<#ty>();
        };
        if f.read_only || matches!(f.default, Default::Trait) {
            out.extend(quote_spanned! {span=> __rl::assert_default::<#ty>(); });
        }
        if f.max_length.is_some() {
            out.extend(quote_spanned! {span=> __rl::assert_char_length::<#ty>(); });
        }
        out
    });
    quote! {
        #[allow(dead_code)]
        fn __rest_live_bound_checks() {
            #(#checks)*
        }
    }
}
