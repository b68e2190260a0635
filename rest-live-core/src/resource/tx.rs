//! Write transactions. Every write made through a [`Tx`] appends its change to the change log in
//! the same transaction, so it yields its events once (and only if) the transaction commits.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::Resource;
use super::permissions::{Action, Permissions, Scope};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::query::{Query, Slice};
use crate::store::changelog::{self, Change, ChangeAction, NewChange};
use crate::store::{AnyConn, Finished, Store};

/// An open write transaction. Every write made through it appends its change to the change log, so
/// it yields its events once (and only if) the transaction commits. Hooks receive it to make
/// further writes in the same transaction.
pub struct Tx<'a> {
    conn: AnyConn<'a>,
    principal: Principal,
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    /// What this transaction appended to the change log, in order.
    changes: Vec<Change>,
    now_ms: i64,
}

/// Runs `f` in a write transaction of `store` acting for `principal`: its writes commit together,
/// and their events go out after the commit, in order; an error rolls all of them back.
pub(crate) async fn write<T, F>(store: &Store, principal: Principal, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Tx<'_>) -> Result<T, ApiError> + Send + 'static,
{
    store
        .write(move |conn| {
            let mut tx = Tx::new(conn, principal);
            let value = f(&mut tx)?;
            Ok(tx.finish(value))
        })
        .await
}

impl<'a> Tx<'a> {
    fn new(conn: AnyConn<'a>, principal: Principal) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        Self {
            conn,
            principal,
            after_commit: Vec::new(),
            changes: Vec::new(),
            now_ms,
        }
    }

    fn finish<T>(self, value: T) -> Finished<T> {
        Finished {
            value,
            changes: self.changes,
            after_commit: self.after_commit,
        }
    }

    /// Who this transaction acts for ([`Principal::system`] for the application's own writes).
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Refuses (403) a write the principal's policy does not allow on `object`.
    fn check_write<R: Resource>(&self, object: &R, action: Action) -> Result<(), ApiError> {
        if self.principal.is_system() {
            return Ok(());
        }
        let Value::Object(object) = serde_json::to_value(object).map_err(ApiError::internal)?
        else {
            return Err(ApiError::internal(
                "a resource must serialize to a JSON object",
            ));
        };
        if R::Policy::can_write(&self.principal, &object, action) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied)
        }
    }

    /// The raw connection, for reads. Writes made through it bypass the change log and send no event.
    pub fn conn(&mut self) -> AnyConn<'_> {
        self.conn.reborrow()
    }

    /// Reads the `R` with primary key `pk` inside the transaction (as the system: no policy applies).
    pub fn get<R: Resource>(&mut self, pk: &R::Pk) -> Result<Option<R>, ApiError> {
        Ok(R::db_get(self.conn.reborrow(), pk)?)
    }

    /// Reads an object to change it. On PostgreSQL this first takes the stream's write lock (its
    /// change-log counter row), so the row read is the latest committed one and no concurrent
    /// write of the stream can slip in before this transaction's own (old group values in the
    /// log stay exact). On SQLite writers are serialized anyway.
    pub fn get_for_update<R: Resource>(&mut self, pk: &R::Pk) -> Result<Option<R>, ApiError> {
        changelog::lock_stream(self.conn.reborrow(), R::META.stream)?;
        self.get(pk)
    }

    /// Whether the transaction's principal may read `row` (its policy's scope): what it could
    /// retrieve or list. The reads of a transaction ([`Tx::get`], [`Tx::filter`]) are not scoped;
    /// an action that works on what its caller sees keeps the rows this says yes to.
    pub fn can_read<R: Resource>(&self, row: &R) -> Result<bool, ApiError> {
        if self.principal.is_system() {
            return Ok(true);
        }
        Ok(
            match <R::Policy as Permissions<R>>::scope(&self.principal) {
                Scope::All => true,
                Scope::Nothing => false,
                scope => match serde_json::to_value(row).map_err(ApiError::internal)? {
                    Value::Object(object) => scope.contains(&object),
                    _ => false,
                },
            },
        )
    }

    /// Every object matching equality filters on filterable fields, e.g. `{"list_id": 1}`.
    pub fn filter<R: Resource>(
        &mut self,
        filters: &Map<String, Value>,
    ) -> Result<Vec<R>, ApiError> {
        let mut query = Query::everything(R::META);
        query.conditions = super::equalities::<R>(filters.iter().map(|(k, v)| (k.as_str(), v)))
            .map_err(|e| ApiError::bad_request(format!("{e}.")))?;
        Ok(R::db_select(
            self.conn.reborrow(),
            &query,
            Slice::default(),
        )?)
    }

    /// Inserts `row` (read-only fields are generated by the database) after its `before_save` hook.
    pub fn create<R: Resource>(&mut self, mut row: R) -> Result<R, ApiError> {
        row.hook_before_save(self, None)?;
        self.check_write(&row, Action::Create)?;
        let stored = R::db_insert(self.conn.reborrow(), &row)?;
        self.log(ChangeAction::Create, None, &stored)?;
        let hook_row = stored.clone();
        self.after_commit
            .push(Box::new(move || hook_row.hook_after_save(true)));
        Ok(stored)
    }

    /// Replaces the stored `old` with `new` (same primary key) after `new`'s `before_save` hook.
    pub fn update<R: Resource>(&mut self, old: &R, mut new: R) -> Result<R, ApiError> {
        self.check_write(old, Action::Update)?;
        new.hook_before_save(self, Some(old))?;
        self.check_write(&new, Action::Update)?;
        let stored = R::db_update(self.conn.reborrow(), &new)?;
        self.log(ChangeAction::Update, Some(old), &stored)?;
        let hook_row = stored.clone();
        self.after_commit
            .push(Box::new(move || hook_row.hook_after_save(false)));
        Ok(stored)
    }

    /// Deletes the stored `row` after its `before_delete` hook.
    pub fn delete<R: Resource>(&mut self, row: R) -> Result<(), ApiError> {
        self.check_write(&row, Action::Delete)?;
        row.hook_before_delete(self)?;
        if R::db_delete(self.conn.reborrow(), &row.pk())? == 0 {
            return Err(ApiError::NotFound);
        }
        self.log(ChangeAction::Delete, Some(&row), &row)?;
        self.after_commit
            .push(Box::new(move || row.hook_after_delete()));
        Ok(())
    }

    /// Bulk create: every row goes through its hooks and the change log, so each yields its event.
    pub fn create_many<R: Resource>(
        &mut self,
        rows: impl IntoIterator<Item = R>,
    ) -> Result<Vec<R>, ApiError> {
        rows.into_iter().map(|row| self.create(row)).collect()
    }

    /// Bulk update by filter: `change` is applied to every object matching `filters` (equality on
    /// filterable fields, e.g. `{"list_id": 1}`); each changed object is stored through its hooks
    /// and the change log (a change of a group key is a move, as for a single update). Returns
    /// the stored objects.
    pub fn update_where<R: Resource>(
        &mut self,
        filters: &Map<String, Value>,
        mut change: impl FnMut(&mut R),
    ) -> Result<Vec<R>, ApiError> {
        changelog::lock_stream(self.conn.reborrow(), R::META.stream)?;
        let mut stored = Vec::new();
        for old in self.filter::<R>(filters)? {
            let mut new = old.clone();
            change(&mut new);
            stored.push(self.update(&old, new)?);
        }
        Ok(stored)
    }

    /// Bulk delete by filter: every matching object is deleted through its hooks and the change
    /// log. Returns how many were deleted.
    pub fn delete_where<R: Resource>(
        &mut self,
        filters: &Map<String, Value>,
    ) -> Result<usize, ApiError> {
        changelog::lock_stream(self.conn.reborrow(), R::META.stream)?;
        let rows = self.filter::<R>(filters)?;
        let n = rows.len();
        for row in rows {
            self.delete(row)?;
        }
        Ok(n)
    }

    /// Appends a change the framework made itself (job states).
    pub(crate) fn append(&mut self, change: NewChange) -> Result<(), ApiError> {
        let (id, seq) = changelog::append(self.conn.reborrow(), &change)?;
        self.changes.push(change.into_change(id, seq));
        Ok(())
    }

    fn log<R: Resource>(
        &mut self,
        action: ChangeAction,
        old: Option<&R>,
        row: &R,
    ) -> Result<(), ApiError> {
        let groups = |r: &R| -> Result<Option<String>, ApiError> {
            if R::META.group_keys.is_empty() {
                return Ok(None);
            }
            let map: Map<String, Value> = r
                .group_values()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            serde_json::to_string(&map)
                .map(Some)
                .map_err(ApiError::internal)
        };
        let change = NewChange {
            stream: R::META.stream,
            action,
            pk: serde_json::to_string(&row.pk()).map_err(ApiError::internal)?,
            old_groups: match old {
                Some(o) => groups(o)?,
                None => None,
            },
            new_groups: match action {
                ChangeAction::Delete => None,
                _ => groups(row)?,
            },
            row: serde_json::to_string(row).map_err(ApiError::internal)?,
            old_row: match (action, old) {
                (ChangeAction::Update, Some(o)) => {
                    Some(serde_json::to_string(o).map_err(ApiError::internal)?)
                }
                _ => None,
            },
            committed_at: self.now_ms,
        };
        self.append(change)
    }
}
