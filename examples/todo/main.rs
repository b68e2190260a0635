//! The to-do app: `cargo run --release --example todo`.
//!
//! Serves lists and tasks over HTTP (`/api/lists/`, `/api/tasks/`) and WebSocket (`/ws`).
//! `REST_LIVE_BIND` (default `127.0.0.1:8000`) and `DATABASE_URL` (default `sqlite://todo.db`).
//! With `--demo-users`, clients sign in with the bearer tokens `alice-token`, `bob-token`
//! (users) or `carol-token` (admin), and `POST /logout` ends a session.
//! With `--dev` (or `REST_LIVE_INSPECTOR=1`), the browser inspector is served at `/inspector`.
//! `REST_LIVE_ALLOWED_ORIGINS` (comma-separated) allows origins besides the server's own, and
//! turns CORS on for them (credentials allowed);
//! `REST_LIVE_QUEUE_BYTES` bounds each connection's unsent bytes (default 4 MiB).
//! `REST_LIVE_LOG_RETAIN=<n>` keeps the newest n changes per stream (default 1,000,000).
//! `REST_LIVE_THROTTLE=off` turns request throttling off (it is on by default).
//! Connection limits: `REST_LIVE_HEADER_TIMEOUT_MS` (request headers, default 10000),
//! `REST_LIVE_MAX_CONNECTIONS` (default: from the open-file limit) and
//! `REST_LIVE_SHUTDOWN_GRACE_MS` (after SIGTERM or Ctrl-C, default 10000).

mod models;

use tracing_subscriber::EnvFilter;
use warp::Filter;

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

    let demo_users = std::env::args().any(|a| a == "--demo-users");
    let tokens = models::demo_tokens();
    let builder = if demo_users {
        models::builder_with_users(tokens.clone())
    } else {
        models::builder()
    };
    let inspector = std::env::args().any(|a| a == "--dev")
        || std::env::var("REST_LIVE_INSPECTOR").is_ok_and(|v| v == "1" || v == "true");
    // Changes kept per stream in the change log: a client resuming with an older `since` gets
    // 410 (default: the library's, 1,000,000 per stream).
    let builder = match env_u64("REST_LIVE_LOG_RETAIN") {
        Some(changes) => builder.retain_changes(changes),
        None => builder,
    };
    let app = builder
        .database_url(database_url)
        .configure(|c| {
            if inspector {
                c.inspector_path = Some("/inspector".into());
            }
            // How soon a job whose process died is run again (tests shorten it).
            if let Some(ms) = env_u64("REST_LIVE_JOB_LEASE_MS") {
                c.job_lease = std::time::Duration::from_millis(ms);
            }
            // Origins allowed besides the server's own (comma-separated): their pages may open
            // sockets, write with the cookie and, over CORS, call the HTTP API with credentials.
            if let Ok(origins) = std::env::var("REST_LIVE_ALLOWED_ORIGINS") {
                c.allowed_origins = origins
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned)
                    .collect();
                if !c.allowed_origins.is_empty() {
                    c.cors = Some(rest_live::Cors::new().allow_credentials(true));
                }
            }
            // Unsent bytes per connection before it is closed with 4008.
            if let Some(bytes) = env_u64("REST_LIVE_QUEUE_BYTES") {
                c.queue_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
            }
            // How long a busy connection's writer may hold events to send them together.
            if let Some(ms) = env_u64("REST_LIVE_EVENT_LINGER_MS") {
                c.event_linger = std::time::Duration::from_millis(ms);
            }
            // `off` turns every request throttle off (benchmarks, load tests).
            if std::env::var("REST_LIVE_THROTTLE").is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
                c.throttle = false;
            }
            if let Some(ms) = env_u64("REST_LIVE_HEADER_TIMEOUT_MS") {
                c.header_timeout = std::time::Duration::from_millis(ms);
            }
            if let Some(max) = env_u64("REST_LIVE_MAX_CONNECTIONS") {
                c.max_connections = Some(max as usize);
            }
            if let Some(ms) = env_u64("REST_LIVE_SHUTDOWN_GRACE_MS") {
                c.shutdown_grace = std::time::Duration::from_millis(ms);
            }
        })
        .build()
        .await?;
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, demo_users, "serving");
    let stop = shutdown();
    // The line scripts wait for (stdout, flushed at the newline).
    println!("listening on http://{addr}");
    if inspector {
        tracing::info!("inspector on http://{addr}/inspector");
    }

    let routes = models::logout(app.clone(), tokens).or(rest_live::routes(app.clone()));
    // On the signal: stop accepting, finish the requests in flight, close every WebSocket with
    // 1001, and return within the shutdown grace.
    rest_live::serve(app, routes, listener)
        .with_shutdown(stop)
        .await;
    tracing::info!("stopped");
    Ok(())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled, so a signal sent right after the "listening" line is not lost.
fn shutdown() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
