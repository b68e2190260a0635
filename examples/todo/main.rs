//! The to-do app: `cargo run --release --example todo`.
//!
//! Serves lists and tasks over HTTP (`/api/lists/`, `/api/tasks/`) and WebSocket (`/ws`).
//! `REST_LIVE_BIND` (default `127.0.0.1:8000`) and `DATABASE_URL` (default `sqlite://todo.db`).

mod models;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), rest_live::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://todo.db".to_owned());
    let bind = std::env::var("REST_LIVE_BIND").unwrap_or_else(|_| "127.0.0.1:8000".to_owned());

    let app = models::builder().database_url(database_url).build().await?;
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving");
    // The line scripts wait for (stdout, flushed at the newline).
    println!("listening on http://{addr}");

    warp::serve(rest_live::warp::routes(app))
        .incoming(listener)
        .graceful(shutdown())
        .run()
        .await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
