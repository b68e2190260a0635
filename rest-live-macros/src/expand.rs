//! Generates the `Resource` impl (calling the user's `Hooks` impl if there is one), its filter
//! type and the registration, from the checked model alone. The runtime is reached only through `<crate>::__private`, every
//! path is absolute (the output works under `#![no_implicit_prelude]`), and everything sits in a
//! `const _: () = { … };` block.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{Default, Field, Kind, Resource, ty_span};

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

    let (queries, order_arms) = queries(r, pk);
    let canonical_arms = r.fields.iter().enumerate().map(|(i, f)| {
        let inner = &f.inner;
        quote!(#i => __rl::canonical_value::<#inner>(value))
    });
    let ordering_terms: Vec<String> = r
        .ordering
        .as_ref()
        .map(|lit| {
            lit.value()
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();

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

            #bound_checks

            #retired_constants

            #hooks_flag

            #[automatically_derived]
            impl __rl::Resource for #ident {
                type Pk = #pk_ty;
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
                    ordering: &[#(#ordering_terms,)*],
                };
                const TABLE: &'static str = #table_name;

                fn pk(&self) -> Self::Pk {
                    ::core::clone::Clone::clone(&self.#pk_ident)
                }

                fn parse_pk(value: &__rl::Value) -> __rl::Result<Self::Pk, __rl::String> {
                    __rl::parse_value::<#pk_ty>(value)
                }

                fn canonical_value(
                    field: usize,
                    value: &__rl::Value,
                ) -> __rl::Result<__rl::Value, __rl::String> {
                    match field {
                        #(#canonical_arms,)*
                        _ => __rl::Err(<__rl::String as ::core::convert::From<&str>>::from("no such field")),
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

                fn db_read(
                    conn: __rl::AnyConn<'_>,
                    query: &__rl::Query,
                    read: __rl::Read<'_>,
                ) -> __rl::diesel::QueryResult<__rl::Fetched<Self>> {
                    __rl::__with_conn!(conn, |c| {
                        #queries
                        match read {
                            __rl::Read::Rows(slice) => {
                                let mut __q = #table::table.select(#cols).into_boxed::<__Backend>();
                                for __c in &query.conditions {
                                    __q = __q.filter(__condition(__c)?);
                                }
                                if let __rl::Some(__p) = slice.after {
                                    __q = __q.filter(__after(&query.ordering, __p)?);
                                }
                                for __t in &query.ordering {
                                    __q = match (__t.field, __t.desc) {
                                        #(#order_arms)*
                                        _ => return __rl::Err(__rl::bad_operand()),
                                    };
                                }
                                // SQLite needs a LIMIT for an OFFSET: "no limit" is the largest one.
                                let __rows = __q
                                    .then_order_by(#table::#pk_col.asc())
                                    .limit(slice.limit.unwrap_or(i64::MAX))
                                    .offset(slice.offset)
                                    .load::<Self>(c)?;
                                __rl::Ok(__rl::Fetched::Rows(__rows))
                            }
                            __rl::Read::Count { upto } => {
                                let mut __n = #table::table.count().into_boxed::<__Backend>();
                                for __c in &query.conditions {
                                    __n = __n.filter(__condition(__c)?);
                                }
                                if let __rl::Some(__p) = upto {
                                    __n = __n.filter(__rl::diesel::dsl::not(__after(&query.ordering, __p)?));
                                }
                                __rl::Ok(__rl::Fetched::Count(__n.get_result(c)?))
                            }
                        }
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

fn is_pk(r: &Resource, f: &Field) -> bool {
    r.pk_field().is_some_and(|pk| pk.ident == f.ident)
}

/// The lookups a field allows: those of `filter(…)`, and `exact` on the pk and the group keys.
fn lookups_of(r: &Resource, f: &Field) -> Vec<String> {
    let mut lookups: Vec<String> = f
        .lookups
        .iter()
        .map(|(l, _)| l.clone())
        .filter(|l| rest_live_names::LOOKUPS.contains(&l.as_str()))
        .collect();
    let keyed = is_pk(r, f) || r.group_keys.iter().any(|g| f.ident == g.name);
    if keyed && !lookups.iter().any(|l| l == "exact") {
        lookups.insert(0, "exact".to_owned());
    }
    lookups.dedup();
    lookups
}

/// Whether `ordering` may name the field: the `order` flag, and always the pk (the tiebreaker).
fn is_orderable(r: &Resource, f: &Field) -> bool {
    f.order.is_some() || is_pk(r, f)
}

fn lookup_variant(name: &str) -> &'static str {
    match name {
        "exact" => "Exact",
        "ne" => "Ne",
        "in" => "In",
        "lt" => "Lt",
        "lte" => "Lte",
        "gt" => "Gt",
        "gte" => "Gte",
        "isnull" => "IsNull",
        "contains" => "Contains",
        "startswith" => "StartsWith",
        "icontains" => "IContains",
        "istartswith" => "IStartsWith",
        _ => "IExact",
    }
}

/// The functions `db_read` runs a query with, inside one backend's arm of `__with_conn!`:
/// `__condition` (one condition as a boxed SQL expression), `__compare` (a field against a
/// value, for keyset cursors), `__after` (the rows after a position) (an order's terms are `order_arms`).
fn queries(r: &Resource, pk: &Field) -> (TokenStream, Vec<TokenStream>) {
    let table = &r.table;
    let pk_index = r
        .fields
        .iter()
        .position(|f| f.ident == pk.ident)
        .unwrap_or(0);
    let mut condition_arms = Vec::new();
    let mut compare_arms = Vec::new();
    let mut order_arms = Vec::new();
    for (i, f) in r.fields.iter().enumerate() {
        let col = &f.column;
        let col = quote!(#table::#col);
        let text = f.kind == Kind::Text;
        let cmp = if text {
            quote!(__rl::collate(#col))
        } else {
            col.clone()
        };
        let inner = &f.inner;
        let null_arm = |sql: TokenStream| {
            if f.is_option {
                quote!(__rl::Operand::Value(__rl::Value::Null) => __rl::Box::new(#sql),)
            } else {
                quote!()
            }
        };
        for lookup in lookups_of(r, f) {
            let v = syn::Ident::new(lookup_variant(&lookup), proc_macro2::Span::call_site());
            let body = match lookup.as_str() {
                "exact" | "ne" => {
                    let (op, null) = if lookup == "exact" {
                        (quote!(eq), quote!(#col.is_null().nullable()))
                    } else {
                        (quote!(ne), quote!(#col.is_not_null().nullable()))
                    };
                    let null = null_arm(null);
                    quote! {
                        match &__c.operand {
                            #null
                            __rl::Operand::Value(__v) => {
                                let __v: #inner = __rl::operand(__v)?;
                                __rl::Box::new(#col.#op(__v).nullable())
                            }
                            _ => return __rl::Err(__rl::bad_operand()),
                        }
                    }
                }
                "in" => quote! {
                    match &__c.operand {
                        __rl::Operand::List(__l) => {
                            let __l: __rl::Vec<#inner> = __rl::operands(__l)?;
                            __rl::Box::new(#col.eq_any(__l).nullable())
                        }
                        _ => return __rl::Err(__rl::bad_operand()),
                    }
                },
                "isnull" => quote! {
                    match &__c.operand {
                        __rl::Operand::Flag(true) => __rl::Box::new(#col.is_null().nullable()),
                        __rl::Operand::Flag(false) => __rl::Box::new(#col.is_not_null().nullable()),
                        _ => return __rl::Err(__rl::bad_operand()),
                    }
                },
                "lt" | "lte" | "gt" | "gte" => {
                    let op = syn::Ident::new(&lookup, proc_macro2::Span::call_site());
                    let op = match lookup.as_str() {
                        "lte" => quote!(le),
                        "gte" => quote!(ge),
                        _ => quote!(#op),
                    };
                    quote! {
                        match &__c.operand {
                            __rl::Operand::Value(__v) => {
                                let __v: #inner = __rl::operand(__v)?;
                                __rl::Box::new(#cmp.#op(__v).nullable())
                            }
                            _ => return __rl::Err(__rl::bad_operand()),
                        }
                    }
                }
                _ => {
                    let expr = if f.is_option {
                        col.clone()
                    } else {
                        quote!(#col.nullable())
                    };
                    quote! {
                        match &__c.operand {
                            __rl::Operand::Value(__v) => {
                                let __v: __rl::String = __rl::operand(__v)?;
                                __rl::Box::new(__rl::text_match(#expr, __c.lookup, __v))
                            }
                            _ => return __rl::Err(__rl::bad_operand()),
                        }
                    }
                }
            };
            condition_arms.push(quote!((#i, __rl::Lookup::#v) => #body,));
        }
        if is_orderable(r, f) && !f.is_option {
            compare_arms.push(quote! {
                #i => {
                    let __v: #inner = __rl::operand(__v)?;
                    match __cmp {
                        __rl::Cmp::Eq => __rl::Box::new(#col.eq(__v).nullable()),
                        __rl::Cmp::Lt => __rl::Box::new(#cmp.lt(__v).nullable()),
                        __rl::Cmp::Gt => __rl::Box::new(#cmp.gt(__v).nullable()),
                    }
                }
            });
            order_arms.push(quote! {
                (#i, false) => __q.then_order_by(#cmp.asc()),
                (#i, true) => __q.then_order_by(#cmp.desc()),
            });
        }
    }
    let fns = quote! {
        type __Cond = __rl::Box<
            dyn __rl::diesel::expression::BoxableExpression<
                #table::table,
                __Backend,
                SqlType = __rl::diesel::sql_types::Nullable<__rl::diesel::sql_types::Bool>,
            >,
        >;

        #[allow(unreachable_code)]
        fn __condition(__c: &__rl::Condition) -> __rl::diesel::QueryResult<__Cond> {
            let __e: __Cond = match (__c.field, __c.lookup) {
                #(#condition_arms)*
                _ => return __rl::Err(__rl::bad_operand()),
            };
            __rl::Ok(__e)
        }

        #[allow(unreachable_code)]
        fn __compare(
            __field: usize,
            __cmp: __rl::Cmp,
            __v: &__rl::Value,
        ) -> __rl::diesel::QueryResult<__Cond> {
            let __e: __Cond = match __field {
                #(#compare_arms)*
                _ => return __rl::Err(__rl::bad_operand()),
            };
            __rl::Ok(__e)
        }

        fn __after(
            __terms: &[__rl::OrderTerm],
            __position: &[__rl::Value],
        ) -> __rl::diesel::QueryResult<__Cond> {
            let __keys = __rl::keyset_terms(__terms, #pk_index);
            if __position.len() != __keys.len() {
                return __rl::Err(__rl::bad_operand());
            }
            let mut __or: __rl::Option<__Cond> = __rl::None;
            for __k in 0..__keys.len() {
                let __step = if __keys[__k].desc { __rl::Cmp::Lt } else { __rl::Cmp::Gt };
                let mut __and: __Cond = __compare(__keys[__k].field, __step, &__position[__k])?;
                for __j in ::core::iter::Iterator::rev(0..__k) {
                    let __eq = __compare(__keys[__j].field, __rl::Cmp::Eq, &__position[__j])?;
                    __and = __rl::Box::new(__eq.and(__and));
                }
                let __next: __Cond = match __or {
                    __rl::None => __and,
                    __rl::Some(__o) => __rl::Box::new(__o.or(__and)),
                };
                __or = __rl::Some(__next);
            }
            __or.ok_or_else(__rl::bad_operand)
        }
    };
    (fns, order_arms)
}

fn field_meta(r: &Resource, f: &Field) -> TokenStream {
    let ty = &f.ty;
    let n = f.name();
    let (read_only, required, nullable) = (f.read_only, f.required(), f.is_option);
    let lookups = lookups_of(r, f);
    let filterable = !lookups.is_empty();
    let lookup_variants = lookups.iter().map(|l| {
        let v = syn::Ident::new(lookup_variant(l), proc_macro2::Span::call_site());
        quote!(__rl::Lookup::#v)
    });
    let orderable = is_orderable(r, f);
    let kind = syn::Ident::new(f.kind.variant(), proc_macro2::Span::call_site());
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
            lookups: &[#(#lookup_variants,)*],
            orderable: #orderable,
            kind: __rl::Kind::#kind,
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
