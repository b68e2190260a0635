//! The to-do app that docs/guide.md builds, step by step. The guide quotes this file: change
//! both together (tests/guide.rs checks that every Rust block of the guide is in here).

use std::sync::Arc;

use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use rest_live::prelude::*;
use rest_live::{AppBuilder, Job, JobContext, JobError, TokenStore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

diesel::table! {
    lists (id) {
        id -> Integer,
        name -> Text,
        owner -> Nullable<Text>,
    }
}

diesel::table! {
    tasks (id) {
        id -> Integer,
        text -> Text,
        done -> Bool,
        list_id -> Integer,
        owner -> Nullable<Text>,
    }
}

/// A to-do list: `/api/lists/`, stream `lists`.
#[resource(stream = "lists", label = "todolist.List", permissions = Owned)]
#[subscribable]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = lists)]
pub struct List {
    #[resource(read_only)]
    pub id: i32,
    #[resource(max_length = 64)]
    pub name: String,
    #[resource(read_only, filter)]
    #[serde(default)]
    pub owner: Option<String>,
}

/// A task: `/api/tasks/`, stream `tasks`, followed by pk or by list.
#[resource(stream = "tasks", label = "todolist.Task", permissions = Owned)]
#[subscribable]
#[subscribable(group_key = "list_id")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
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
    #[resource(read_only, filter)]
    #[serde(default)]
    pub owner: Option<String>,
}

impl Hooks for List {
    /// A new list belongs to whoever creates it; its name is stored trimmed and may not be blank.
    fn before_save(&mut self, tx: &mut Tx<'_>, old: Option<&Self>) -> Result<(), ApiError> {
        match old {
            Some(old) => self.owner = old.owner.clone(),
            None if !tx.principal().is_system() => self.owner = tx.principal().id.clone(),
            None => {}
        }
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() {
            return Err(FieldErrors::single("name", "This field may not be blank.").into());
        }
        Ok(())
    }

    /// A list's tasks go with it, through the framework: their subscribers are told.
    fn before_delete(&self, tx: &mut Tx<'_>) -> Result<(), ApiError> {
        let mut filter = Map::new();
        filter.insert("list_id".into(), self.id.into());
        tx.delete_where::<Task>(&filter)?;
        Ok(())
    }
}

impl Hooks for Task {
    /// A task goes into a list its principal owns, and takes that list's owner.
    fn before_save(&mut self, tx: &mut Tx<'_>, _old: Option<&Self>) -> Result<(), ApiError> {
        let principal = tx.principal().clone();
        let list = tx
            .get::<List>(&self.list_id)?
            .filter(|list| principal.is_system() || list.owner == principal.id)
            .ok_or_else(|| ApiError::Conflict("no such list: list_id".into()))?;
        self.owner = list.owner;
        Ok(())
    }

    /// After the commit, and only if there was one: the place for side effects.
    fn after_save(&self, created: bool) {
        if self.done {
            tracing::info!(task = self.id, created, "task done");
        }
    }
}

/// Everyone reads and writes only what they own.
pub struct Owned;

impl<R> Permissions<R> for Owned {
    fn allows(principal: &Principal, _action: Action) -> bool {
        !principal.is_anonymous()
    }

    fn scope(principal: &Principal) -> Scope {
        Scope::field_equals("owner", principal.id.clone())
    }
}

/// `POST /api/lists/<id>/clear_done/`: deletes the list's done tasks, in the background.
pub struct ClearDone;

#[derive(Deserialize)]
pub struct NoArgs {}

#[derive(Serialize)]
pub struct Cleared {
    pub cleared: usize,
}

impl Job for ClearDone {
    type Resource = List;
    type Args = NoArgs;
    type Output = Cleared;
    const NAME: &'static str = "clear_done";
    const ON_OBJECT: bool = true;

    async fn run(ctx: JobContext, _args: NoArgs) -> Result<Cleared, JobError> {
        let list_id: i32 = ctx.pk()?;
        let filter = json!({"list_id": list_id, "done": true});
        let cleared = ctx
            .transaction(move |tx| {
                let filter = filter.as_object().cloned().unwrap_or_default();
                tx.delete_where::<Task>(&filter)
            })
            .await?;
        Ok(Cleared { cleared })
    }
}

rest_live::register_job!(ClearDone);

/// The arguments of `reopen`.
#[derive(Deserialize)]
pub struct Reopen {
    pub list_id: i32,
}

#[derive(Serialize, Deserialize)]
pub struct Reopened {
    pub reopened: usize,
}

#[actions]
impl Task {
    /// Marks the task done.
    #[action(detail)]
    fn complete(&mut self, _tx: &mut Tx<'_>) -> Result<Task, ApiError> {
        self.done = true;
        Ok(self.clone())
    }

    /// Reopens the done tasks of a list that the caller may see.
    #[action(collection)]
    fn reopen(tx: &mut Tx<'_>, args: Reopen) -> Result<Reopened, ApiError> {
        let filter = json!({"list_id": args.list_id, "done": true});
        let mut reopened = 0;
        for task in tx.filter::<Task>(filter.as_object().unwrap_or(&Map::new()))? {
            if tx.can_read(&task)? {
                let open = Task {
                    done: false,
                    ..task.clone()
                };
                tx.update(&task, open)?;
                reopened += 1;
            }
        }
        Ok(Reopened { reopened })
    }
}

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The app: its migrations, its streams, sign-in with the tokens of `tokens`.
pub fn builder(tokens: Arc<TokenStore>) -> AppBuilder {
    App::builder()
        .sqlite_migrations(SQLITE_MIGRATIONS)
        .postgres_migrations(POSTGRES_MIGRATIONS)
        .expect_streams(["lists", "tasks"])
        .authenticator(tokens)
}

/// Two users, for trying it out.
pub fn demo_tokens() -> Arc<TokenStore> {
    let tokens = TokenStore::new();
    tokens.insert("alice-token", Principal::user("alice", ["user"]));
    tokens.insert("bob-token", Principal::user("bob", ["user"]));
    tokens
}

/// Writes from server code: one transaction, events after the commit.
pub async fn seed(app: &App, owner: &str) -> Result<List, ApiError> {
    let owner = Some(owner.to_owned());
    app.transaction(move |tx| {
        let list = tx.create(List {
            id: 0,
            name: "Welcome".into(),
            owner: owner.clone(),
        })?;
        tx.create(Task {
            id: 0,
            text: "Try the inspector".into(),
            done: false,
            list_id: list.id,
            owner,
        })?;
        Ok(list)
    })
    .await
}
