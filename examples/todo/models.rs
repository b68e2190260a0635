//! The to-do app of the seeds: lists, and tasks that belong to a list.

use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use rest_live::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The app's tables, created at start-up by the app builder (the SQL differs per backend).
pub const SQLITE_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("examples/todo/migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("examples/todo/migrations/postgres");

diesel::table! {
    lists (id) {
        id -> Integer,
        name -> Text,
    }
}

diesel::table! {
    tasks (id) {
        id -> Integer,
        text -> Text,
        done -> Bool,
        list_id -> Integer,
    }
}

diesel::joinable!(tasks -> lists (list_id));
diesel::allow_tables_to_appear_in_same_query!(lists, tasks);

/// A to-do list: `/api/lists/`, stream `lists`, followed by pk.
#[resource(stream = "lists", hooks)]
#[subscribable]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[diesel(table_name = lists)]
pub struct List {
    #[resource(read_only)]
    pub id: i32,
    #[resource(max_length = 64)]
    pub name: String,
}

/// A task: `/api/tasks/`, stream `tasks`, followed by pk or by list.
#[resource(stream = "tasks", hooks)]
#[subscribable]
#[subscribable(group_key = "list_id")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[diesel(table_name = tasks)]
pub struct Task {
    #[resource(read_only)]
    pub id: i32,
    #[resource(max_length = 140)]
    pub text: String,
    #[serde(default)]
    #[resource(filter)]
    pub done: bool,
    pub list_id: i32,
}

impl Hooks for List {
    /// Names are stored trimmed, and a blank one is refused.
    fn before_save(&mut self, _tx: &mut Tx<'_>, _old: Option<&Self>) -> Result<(), ApiError> {
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() {
            return Err(FieldErrors::single("name", "This field may not be blank.").into());
        }
        Ok(())
    }

    /// Deleting a list deletes its tasks in the same transaction, through the framework, so every
    /// subscriber of those tasks is told (a database cascade would delete them silently).
    fn before_delete(&self, tx: &mut Tx<'_>) -> Result<(), ApiError> {
        let filter = json!({ "list_id": self.id });
        tx.delete_where::<Task>(filter.as_object().unwrap_or(&Default::default()))?;
        Ok(())
    }

    fn after_delete(&self) {
        tracing::info!(list = self.id, name = %self.name, "list deleted");
    }
}

impl Hooks for Task {
    /// Text is stored trimmed, and a blank one is refused.
    fn before_save(&mut self, _tx: &mut Tx<'_>, _old: Option<&Self>) -> Result<(), ApiError> {
        self.text = self.text.trim().to_owned();
        if self.text.is_empty() {
            return Err(FieldErrors::single("text", "This field may not be blank.").into());
        }
        Ok(())
    }

    /// Runs once the change is committed: the place for side effects that must not happen for a
    /// write that rolls back (mail, metrics, ...). Here: a log line when a task gets done.
    fn after_save(&self, created: bool) {
        if self.done {
            tracing::info!(task = self.id, list = self.list_id, created, "task done");
        }
    }
}

/// The app with its migrations; start-up fails if either resource is missing from the binary.
pub fn builder() -> rest_live::AppBuilder {
    App::builder()
        .sqlite_migrations(SQLITE_MIGRATIONS)
        .postgres_migrations(POSTGRES_MIGRATIONS)
        .expect_streams(["lists", "tasks"])
}
