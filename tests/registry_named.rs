//! The simplest remedy for registrations that vanish: name the crate, even only as `use … as _`,
//! and the linker keeps its resources. Nothing else here mentions `vanish_models` (not even its
//! migrations: the table its resource needs at start-up is made by hand).

use diesel::{Connection, RunQueryDsl, SqliteConnection};
use rest_live::App;
use vanish_models as _;

#[tokio::test]
async fn naming_the_crate_keeps_its_resources() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("named.db");
    let mut conn = SqliteConnection::establish(&path.display().to_string()).expect("a database");
    diesel::sql_query("CREATE TABLE notes (id INTEGER PRIMARY KEY NOT NULL, body TEXT NOT NULL)")
        .execute(&mut conn)
        .expect("the table of `notes`");
    drop(conn);

    let app = App::builder()
        .database_url(format!("sqlite://{}", path.display()))
        .expect_streams(["notes"])
        .build()
        .await
        .expect("`use vanish_models as _` links the crate and its `notes` resource");
    // The declared resource, once, beside the built-in stream of job states.
    assert_eq!(app.streams(), ["jobs", "notes"]);
}
