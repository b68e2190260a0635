//! Start-up checks of the registered resources, so that a mistake stops [`super::AppBuilder::build`]
//! with one message naming the resource and the fix, instead of answering 500 at the first
//! request: every policy's scope names only filterable fields, and every table can be read with
//! the columns its resource maps.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::auth::Principal;
use crate::error::{ApiError, Error};
use crate::registry::Registry;
use crate::resource::binding::Binding;
use crate::store::{DatabaseUrl, Store};

/// Asks each policy for the scope of representative principals (the anonymous one where the app
/// lets it in, and a signed-in user without roles) and refuses a scope that names a field lists
/// cannot filter by. A `scope()` that panics for such a principal is logged and not checked
/// further (it may rely on ids of the app's authenticator that a probe cannot know).
pub(super) fn scopes(registry: &Registry, allows_anonymous: bool) -> Result<(), Error> {
    let mut principals = vec![(
        Principal::user("rest-live-start-up-check", Vec::<String>::new()),
        "a signed-in user without roles",
    )];
    if allows_anonymous {
        principals.insert(0, (Principal::anonymous(), "the anonymous principal"));
    }
    let mut problems = Vec::new();
    for binding in registry.iter() {
        for (principal, who) in &principals {
            let fields = match catch_unwind(AssertUnwindSafe(|| {
                binding.unfilterable_scope(principal)
            })) {
                Ok(fields) => fields,
                Err(_) => {
                    tracing::warn!(
                        stream = binding.meta().stream,
                        principal = who,
                        "the policy's scope() panicked for a start-up check principal; its scope is not checked"
                    );
                    continue;
                }
            };
            if let Some(field) = fields.first() {
                problems.push(unfilterable(binding, who, field));
                break;
            }
        }
    }
    one_error(problems, Error::Registry)
}

fn unfilterable(binding: &dyn Binding, who: &str, field: &str) -> String {
    let meta = binding.meta();
    let resource = describe(binding);
    if meta.field(field).is_some() {
        format!(
            "{resource}: the scope of its policy for {who} is a condition on `{field}`, which is not filterable, so every list and group subscription would fail. Mark the field #[resource(filter)] (or make it a group key)."
        )
    } else {
        format!(
            "{resource}: the scope of its policy for {who} is a condition on `{field}`, which is no field of the resource. Name one of its fields in Permissions::scope (and mark it #[resource(filter)])."
        )
    }
}

/// Reads each resource's table (no row, every column it maps), each in a transaction of its own
/// (on PostgreSQL a failed statement spoils the rest of its transaction).
pub(super) async fn tables(
    registry: &Registry,
    store: &Store,
    url: &DatabaseUrl,
) -> Result<(), Error> {
    let mut problems = Vec::new();
    for binding in registry.iter() {
        let Some(table) = binding.table() else {
            continue;
        };
        // The reason travels as an error so that the transaction rolls back; built by hand, as
        // `ApiError::internal` would log it as a request's failure.
        let probed = store
            .read(move |conn| {
                binding
                    .probe_table(conn)
                    .map_err(|e| ApiError::Internal(e.to_string()))
            })
            .await;
        let reason = match probed {
            Ok(()) => continue,
            Err(ApiError::Internal(reason)) => reason,
            Err(other) => other.to_string(),
        };
        problems.push(unreadable(binding, table, url, &reason));
    }
    one_error(problems, Error::Database)
}

fn unreadable(binding: &dyn Binding, table: &str, url: &DatabaseUrl, reason: &str) -> String {
    let resource = describe(binding);
    let missing_table = reason.starts_with("no such table")
        || (reason.starts_with("relation ") && reason.contains("does not exist"));
    if missing_table {
        format!(
            "{resource}: table \"{table}\" does not exist in {url}. Create it in a migration the app runs (AppBuilder::sqlite_migrations / postgres_migrations), or point #[diesel(table_name = …)] at the table that holds these objects."
        )
    } else {
        format!(
            "{resource}: table \"{table}\" in {url} cannot be read as the struct's columns: {reason}. Add the missing column in a migration, or make the struct and its diesel::table! match the table (#[diesel(column_name = …)] maps a field to a column of another name)."
        )
    }
}

/// `resource "tasks" (todo::models::Task, examples/todo/models.rs:40)`
fn describe(binding: &dyn Binding) -> String {
    let meta = binding.meta();
    format!(
        "resource \"{}\" ({}, {})",
        meta.stream, meta.type_name, meta.location
    )
}

/// Every problem, one paragraph each.
fn one_error(problems: Vec<String>, kind: fn(String) -> Error) -> Result<(), Error> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(kind(problems.join("\n")))
    }
}
