//! Mistakes that `AppBuilder::build` refuses with one message naming the resource (or the
//! database) and the fix, instead of answering 500 at the first request (issue 16): a missing
//! table or column, and a database that cannot be opened, which fails at once rather than after
//! the pool's retries. (A scope on a field that is not filterable: `tests/startup_scope.rs`, as
//! such a resource would stop every app of this binary.)

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use rest_live::prelude::*;
use rest_live::testing::TestDatabase;
use rest_live::{AppBuilder, Error};
use serde::{Deserialize, Serialize};

const SQLITE: EmbeddedMigrations = embed_migrations!("tests/fixtures/startup-migrations/sqlite");
const POSTGRES: EmbeddedMigrations =
    embed_migrations!("tests/fixtures/startup-migrations/postgres");

diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
        pinned -> Bool,
    }
}

#[resource(stream = "notes")]
#[derive(Queryable, Serialize, Deserialize, Clone, Debug)]
#[diesel(table_name = notes)]
pub struct Note {
    #[resource(read_only)]
    pub id: i32,
    pub body: String,
    #[serde(default)]
    pub pinned: bool,
}

/// Long enough for a loaded machine, far shorter than the pool's 30 s of retries.
const PROMPTLY: Duration = Duration::from_secs(10);

/// `build()`'s error, which must come within [`PROMPTLY`].
async fn start_up_error(builder: AppBuilder) -> Error {
    let started = Instant::now();
    let result = tokio::time::timeout(PROMPTLY, builder.build())
        .await
        .unwrap_or_else(|_| panic!("build() still waiting after {PROMPTLY:?}"));
    match result {
        Ok(_) => panic!("build() must fail"),
        Err(error) => {
            assert!(started.elapsed() < PROMPTLY);
            error
        }
    }
}

#[track_caller]
fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

#[tokio::test]
async fn the_app_starts_when_the_table_is_there() {
    let database = TestDatabase::for_tests().await;
    let app = App::builder()
        .database_url(database.url.clone())
        .sqlite_migrations(SQLITE)
        .postgres_migrations(POSTGRES)
        .build()
        .await
        .expect("the app starts on its migrated tables");
    let stored = app
        .transaction(|tx| {
            tx.create(Note {
                id: 0,
                body: "kept".into(),
                pinned: true,
            })
        })
        .await
        .expect("a write through the checked resource");
    assert_eq!((stored.body.as_str(), stored.pinned), ("kept", true));
}

#[tokio::test]
async fn a_missing_table_stops_start_up_naming_the_resource_the_table_and_the_fix() {
    // Without the migrations that create `notes`.
    let database = TestDatabase::for_tests().await;
    let error = start_up_error(App::builder().database_url(database.url.clone())).await;
    assert!(matches!(error, Error::Database(_)), "{error:?}");
    let message = error.to_string();
    assert_mentions(
        &message,
        &[
            "resource \"notes\"",
            "startup::Note",
            "table \"notes\" does not exist",
            &database.url,
            "migration",
            "#[diesel(table_name = …)]",
        ],
    );
    assert!(!message.contains('\n'), "one paragraph: {message}");
}

#[tokio::test]
async fn a_missing_column_stops_start_up_naming_the_column() {
    let database = TestDatabase::sqlite();
    let path = database.url.trim_start_matches("sqlite://").to_owned();
    let mut conn = SqliteConnection::establish(&path).expect("the test database");
    // The table of an older version of the struct, without `pinned`.
    diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY NOT NULL, body TEXT NOT NULL)")
        .execute(&mut conn)
        .expect("an old `notes` table");
    drop(conn);

    let error = start_up_error(App::builder().database_url(database.url.clone())).await;
    assert!(matches!(error, Error::Database(_)), "{error:?}");
    assert_mentions(
        &error.to_string(),
        &[
            "resource \"notes\"",
            "table \"notes\"",
            &database.url,
            "pinned",
            "Add the missing column in a migration",
        ],
    );
}

#[tokio::test]
async fn a_sqlite_file_that_cannot_be_created_fails_at_once() {
    let url = "sqlite:///nonexistent-dir/startup.db";
    let error = start_up_error(App::builder().database_url(url)).await;
    assert!(matches!(error, Error::Database(_)), "{error:?}");
    assert_mentions(
        &error.to_string(),
        &[
            "cannot open sqlite:///nonexistent-dir/startup.db",
            "directory exists",
        ],
    );
}

#[tokio::test]
async fn an_unreachable_postgres_server_fails_within_seconds_without_showing_the_password() {
    // Nothing listens on port 1.
    let url = "postgres://postgres:hunter2@127.0.0.1:1/startup?sslmode=disable";
    let error = start_up_error(App::builder().database_url(url)).await;
    assert!(matches!(error, Error::Database(_)), "{error:?}");
    let message = error.to_string();
    assert_mentions(
        &message,
        &[
            "cannot connect to postgres://postgres@127.0.0.1:1/startup?sslmode=disable",
            "server is running",
        ],
    );
    assert!(
        !message.contains("hunter2"),
        "the password shows: {message}"
    );
    assert!(!message.contains('\n'), "one paragraph: {message}");
}

#[tokio::test]
async fn an_allowed_origin_that_can_never_match_stops_start_up_naming_it() {
    let database = TestDatabase::for_tests().await;
    // Without a scheme, this entry would silently never match the front-end's Origin.
    let error = start_up_error(
        App::builder()
            .database_url(database.url.clone())
            .sqlite_migrations(SQLITE)
            .postgres_migrations(POSTGRES)
            .allowed_origins(["https://app.example.com", "localhost:5173"]),
    )
    .await;
    assert!(matches!(error, Error::Config(_)), "{error}");
    let message = error.to_string();
    assert_mentions(
        &message,
        &[
            "allowed_origins",
            "\"localhost:5173\"",
            "http://localhost:5173",
        ],
    );
    assert!(!message.contains("app.example.com"), "{message}");
}
