//! The to-do app of the seeds: lists, and tasks that belong to a list. Lists belong to a user:
//! only the owner reads and writes its lists and their tasks. Anonymous clients share the lists
//! created anonymously, so without sign-in the app behaves as a plain shared to-do app.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use rest_live::prelude::*;
use rest_live::{Action, Permissions, Scope};
use rest_live::{AppBuilder, JobContext, JobError, TokenStore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The app's tables, created at start-up by the app builder (the SQL differs per backend).
pub const SQLITE_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("examples/todo/migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("examples/todo/migrations/postgres");

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
        priority -> Integer,
        note -> Nullable<Text>,
    }
}

diesel::joinable!(tasks -> lists (list_id));
diesel::allow_tables_to_appear_in_same_query!(lists, tasks);

/// A to-do list: `/api/lists/`, stream `lists`, followed by pk.
#[resource(
    stream = "lists",
    hooks,
    permissions = OwnerOnly,
    label = "todolist.List",
    ordering = "id"
)]
#[subscribable]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[diesel(table_name = lists)]
pub struct List {
    #[resource(read_only, filter(exact, in), order)]
    pub id: i32,
    #[resource(max_length = 64, filter(exact, iexact, icontains, istartswith), order)]
    pub name: String,
    /// Set from the principal on create; shown to admins only (so only they may filter on it).
    #[resource(read_only, filter(exact, isnull))]
    #[serde(default)]
    pub owner: Option<String>,
}

/// A task: `/api/tasks/`, stream `tasks`, followed by pk or by list.
#[resource(
    stream = "tasks",
    hooks,
    permissions = OwnerOnly,
    label = "todolist.Task",
    ordering = "id"
)]
#[subscribable]
#[subscribable(group_key = "list_id")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[diesel(table_name = tasks)]
pub struct Task {
    #[resource(read_only, filter(exact, in, lt, lte, gt, gte), order)]
    pub id: i32,
    #[resource(
        max_length = 140,
        filter(exact, iexact, contains, icontains, startswith, istartswith),
        order
    )]
    pub text: String,
    #[serde(default)]
    #[resource(filter(exact, ne), order)]
    pub done: bool,
    #[resource(filter(exact, ne, in), order)]
    pub list_id: i32,
    /// The owner of the task's list (set by the hook); shown to admins only.
    #[resource(read_only, filter(exact, isnull))]
    #[serde(default)]
    pub owner: Option<String>,
    /// 0 to 9 (checked by the hook).
    #[serde(default)]
    #[resource(filter(exact, ne, in, lt, lte, gt, gte), order)]
    pub priority: i32,
    #[resource(max_length = 500, filter(exact, isnull, contains, icontains))]
    pub note: Option<String>,
}

/// The arguments of `clear_done`.
#[derive(Deserialize, Serialize)]
pub struct ClearDone {
    /// The list whose done tasks go.
    pub list_id: i32,
}

/// What `clear_done` did.
#[derive(Deserialize, Serialize)]
pub struct Cleared {
    pub deleted: usize,
}

#[actions]
impl Task {
    /// Marks the task done (a done task stays done).
    #[action(detail)]
    fn complete(&mut self, _tx: &mut Tx<'_>) -> Result<Task, ApiError> {
        self.done = true;
        Ok(self.clone())
    }

    /// Deletes the done tasks of a list that the caller may see, in one transaction.
    #[action(collection)]
    fn clear_done(tx: &mut Tx<'_>, args: ClearDone) -> Result<Cleared, ApiError> {
        let filter = json!({ "list_id": args.list_id, "done": true });
        let done: Vec<Task> = tx.filter(filter.as_object().unwrap_or(&Map::new()))?;
        let mut deleted = 0;
        for task in done {
            if tx.can_read(&task)? {
                tx.delete(task)?;
                deleted += 1;
            }
        }
        Ok(Cleared { deleted })
    }
}

/// Users read and write what they own; anonymous clients what was made anonymously; admins
/// everything. The `owner` field is shown to admins only.
pub struct OwnerOnly;

fn is_admin(principal: &Principal) -> bool {
    principal.has_role("admin")
}

/// Whether `principal` may see an object owned by `owner`.
fn owns(principal: &Principal, owner: &Option<String>) -> bool {
    principal.is_system() || is_admin(principal) || principal.id == *owner
}

impl<R> Permissions<R> for OwnerOnly {
    fn allows(_principal: &Principal, _action: Action) -> bool {
        true
    }

    fn scope(principal: &Principal) -> Scope {
        if is_admin(principal) {
            Scope::All
        } else {
            Scope::field_equals("owner", principal.id.clone())
        }
    }

    fn present(principal: &Principal, object: &mut Map<String, Value>) {
        if !is_admin(principal) {
            object.shift_remove("owner");
        }
    }

    /// Coarser than the default (one audience per principal): every admin sees everything with
    /// `owner`, and every other principal sees its own objects without it, so admins share one
    /// encoding of each event and the others one per owner.
    fn audience(principal: &Principal) -> String {
        if is_admin(principal) {
            "admin".into()
        } else {
            <Self as Permissions<R>>::scope(principal).key()
        }
    }
}

impl Hooks for List {
    /// A new list belongs to whoever creates it; names are stored trimmed, and a blank one is
    /// refused.
    fn before_save(&mut self, tx: &mut Tx<'_>, old: Option<&Self>) -> Result<(), ApiError> {
        match old {
            None if !tx.principal().is_system() => self.owner = tx.principal().id.clone(),
            None => {}
            Some(old) => self.owner = old.owner.clone(),
        }
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
    /// A task goes into a list its principal can see, and belongs to that list's owner; text is
    /// stored trimmed, and a blank one is refused.
    fn before_save(&mut self, tx: &mut Tx<'_>, _old: Option<&Self>) -> Result<(), ApiError> {
        self.text = self.text.trim().to_owned();
        if self.text.is_empty() {
            return Err(FieldErrors::single("text", "This field may not be blank.").into());
        }
        if !(0..=9).contains(&self.priority) {
            let message = "Ensure this value is between 0 and 9.";
            return Err(FieldErrors::single("priority", message).into());
        }
        // Someone else's list answers exactly like a missing one: nothing about it leaks.
        let list = tx
            .get::<List>(&self.list_id)?
            .filter(|l| owns(tx.principal(), &l.owner))
            .ok_or_else(|| ApiError::Conflict("foreign key constraint violated: list_id".into()))?;
        self.owner = list.owner;
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

/// `POST /api/lists/<pk>/archive_done/`: archives (deletes) the done tasks of one list, one by
/// one with a pause between them (`delay_ms`, default 200) so that progress is visible to
/// subscribers. Result: `{"archived": n}`.
pub struct ArchiveListDone;

/// `POST /api/tasks/archive_done/` with `{"list_id": 1}`: the same, naming the list in the body.
pub struct ArchiveDone;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveArgs {
    #[serde(default)]
    pub list_id: Option<i32>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

#[derive(Serialize)]
pub struct Archived {
    pub archived: usize,
}

fn check_delay(args: &ArchiveArgs) -> Result<(), FieldErrors> {
    match args.delay_ms {
        Some(ms) if ms > 10_000 => Err(FieldErrors::single(
            "delay_ms",
            "Ensure this value is less than or equal to 10000.",
        )),
        _ => Ok(()),
    }
}

async fn archive_done(
    ctx: &JobContext,
    list_id: i32,
    delay: Duration,
) -> Result<Archived, JobError> {
    let filter = json!({ "list_id": list_id, "done": true });
    let done: Vec<Task> = ctx
        .transaction(move |tx| {
            // The list must be one the job's principal can see.
            let visible = tx
                .get::<List>(&list_id)?
                .is_some_and(|l| owns(tx.principal(), &l.owner));
            if !visible {
                return Err(ApiError::bad_request(format!(
                    "List {list_id} does not exist."
                )));
            }
            tx.filter::<Task>(filter.as_object().unwrap_or(&Map::new()))
        })
        .await?;
    let mut archived = 0;
    for task in done {
        ctx.sleep(delay).await?;
        ctx.transaction(move |tx| match tx.get_for_update::<Task>(&task.id)? {
            Some(task) if task.done => tx.delete(task),
            _ => Ok(()),
        })
        .await?;
        archived += 1;
    }
    Ok(Archived { archived })
}

impl rest_live::Job for ArchiveListDone {
    type Resource = List;
    type Args = ArchiveArgs;
    type Output = Archived;
    const NAME: &'static str = "archive_done";
    const ON_OBJECT: bool = true;

    fn validate(args: &ArchiveArgs) -> Result<(), FieldErrors> {
        if args.list_id.is_some() {
            return Err(FieldErrors::single(
                "list_id",
                "Unknown field: the list is in the URL.",
            ));
        }
        check_delay(args)
    }

    async fn run(ctx: JobContext, args: ArchiveArgs) -> Result<Archived, JobError> {
        let list_id: i32 = ctx.pk()?;
        let delay = Duration::from_millis(args.delay_ms.unwrap_or(200));
        archive_done(&ctx, list_id, delay).await
    }
}

impl rest_live::Job for ArchiveDone {
    type Resource = Task;
    type Args = ArchiveArgs;
    type Output = Archived;
    const NAME: &'static str = "archive_done";

    fn validate(args: &ArchiveArgs) -> Result<(), FieldErrors> {
        if args.list_id.is_none() {
            return Err(FieldErrors::single("list_id", "This field is required."));
        }
        check_delay(args)
    }

    async fn run(ctx: JobContext, args: ArchiveArgs) -> Result<Archived, JobError> {
        let list_id = args.list_id.ok_or("list_id is required")?;
        let delay = Duration::from_millis(args.delay_ms.unwrap_or(200));
        archive_done(&ctx, list_id, delay).await
    }
}

/// `POST /api/lists/<pk>/add_samples/` with `{"count": 3, "prefix": "idea"}`: adds sample tasks
/// "idea #1" … to the list. Result: `{"created": n}`.
pub struct AddSamples;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleArgs {
    pub count: u32,
    #[serde(default)]
    pub prefix: Option<String>,
}

impl rest_live::Job for AddSamples {
    type Resource = List;
    type Args = SampleArgs;
    type Output = Value;
    const NAME: &'static str = "add_samples";
    const ON_OBJECT: bool = true;

    fn validate(args: &SampleArgs) -> Result<(), FieldErrors> {
        if !(1..=100).contains(&args.count) {
            return Err(FieldErrors::single(
                "count",
                "Ensure this value is between 1 and 100.",
            ));
        }
        Ok(())
    }

    async fn run(ctx: JobContext, args: SampleArgs) -> Result<Value, JobError> {
        let list_id: i32 = ctx.pk()?;
        let prefix = args.prefix.unwrap_or_else(|| "sample".to_owned());
        let count = args.count;
        ctx.transaction(move |tx| {
            for i in 1..=count {
                let text = format!("{prefix} #{i}");
                tx.create(Task {
                    id: 0,
                    text,
                    done: false,
                    list_id,
                    owner: None,
                    priority: 0,
                    note: None,
                })?;
            }
            Ok(())
        })
        .await?;
        Ok(json!({ "created": count }))
    }
}

rest_live::register_job!(ArchiveListDone);
rest_live::register_job!(ArchiveDone);
rest_live::register_job!(AddSamples);

/// The app with its migrations; start-up fails if either resource is missing from the binary.
/// Without an authenticator every client is anonymous.
pub fn builder() -> AppBuilder {
    App::builder()
        .sqlite_migrations(SQLITE_MIGRATIONS)
        .postgres_migrations(POSTGRES_MIGRATIONS)
        .expect_streams(["lists", "tasks"])
}

/// The demo users of `--demo-users`: alice and bob (users), carol (admin).
pub fn demo_tokens() -> Arc<TokenStore> {
    let tokens = TokenStore::new();
    tokens.insert("alice-token", Principal::user("alice", ["user"]));
    tokens.insert("bob-token", Principal::user("bob", ["user"]));
    tokens.insert("carol-token", Principal::user("carol", ["admin"]));
    tokens
}

/// The app with sign-in by bearer token (`tokens`): requests without a valid token are refused.
pub fn builder_with_users(tokens: Arc<TokenStore>) -> AppBuilder {
    builder().authenticator(tokens)
}

/// `POST /logout` with the bearer token to end: the token stops working and every open socket of
/// its user is closed with 4003.
pub fn logout(
    app: App,
    tokens: Arc<TokenStore>,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    use warp::Reply;
    warp::path("logout")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .map(move |auth: Option<String>| {
            let token = auth
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or_default();
            match tokens.remove(token) {
                Some(principal) => {
                    let closed = principal.id.as_deref().map_or(0, |id| app.revoke(id));
                    tracing::info!(user = ?principal.id, closed, "logged out");
                    warp::http::StatusCode::NO_CONTENT.into_response()
                }
                None => warp::http::StatusCode::UNAUTHORIZED.into_response(),
            }
        })
}
