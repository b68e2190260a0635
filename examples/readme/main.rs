//! The README's code, compiled (see `models.rs`): `cargo run --example readme` serves its tasks
//! and lists on 127.0.0.1:8000 with `sqlite://todo.db`.

mod models;

use models::{List, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, Task};
use rest_live::App;

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

#[tokio::main]
#[rustfmt::skip]
async fn main() -> Result<(), rest_live::Error> {
let app = App::builder()
    .database_url("sqlite://todo.db")
    .sqlite_migrations(SQLITE_MIGRATIONS)   // your tables; rest-live's own are created too
    .postgres_migrations(POSTGRES_MIGRATIONS)
    .expect_streams(["lists", "tasks"])     // fail at start-up if a resource is missing
    .build().await?;
let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
let routes = rest_live::routes(app.clone());          // or your own routes around them
rest_live::serve(app, routes, listener).with_shutdown(shutdown()).await; // SIGTERM, Ctrl-C
    Ok(())
}

/// The README's transaction: a list and a task, committed together (compiled, not called).
#[allow(dead_code)]
#[rustfmt::skip]
async fn seed(app: &App) -> Result<(), rest_live::Error> {
app.transaction(|tx| {
    let list = tx.create(List { id: 0, name: "Errands".into() })?;
    tx.create(Task { id: 0, text: "post".into(), done: false, list_id: list.id })?;
    Ok(())
}).await?;
    Ok(())
}
