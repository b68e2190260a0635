//! The guide's to-do app (docs/guide.md): `cargo run --example guide`.
//!
//! `REST_LIVE_BIND` (default `127.0.0.1:8000`), `DATABASE_URL` (default `sqlite://guide.db`);
//! `--seed` adds a list for alice.
//! Sign in with `Authorization: Bearer alice-token` (or `bob-token`); in a browser, open
//! `/inspector` and put the token in its token field.

mod models;

#[tokio::main]
async fn main() -> Result<(), rest_live::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();

    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://guide.db".to_owned());
    let app = models::builder(models::demo_tokens())
        .database_url(database_url)
        .configure(|config| {
            // The browser inspector: for development only.
            config.inspector_path = Some("/inspector".into());
        })
        .build()
        .await?;
    if std::env::args().any(|a| a == "--seed") {
        let list = models::seed(&app, "alice")
            .await
            .map_err(|e| rest_live::Error::Config(format!("seeding failed: {e}")))?;
        tracing::info!(list = list.id, "seeded a list for alice");
    }

    let bind = std::env::var("REST_LIVE_BIND").unwrap_or_else(|_| "127.0.0.1:8000".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on http://{}", listener.local_addr()?);

    let routes = rest_live::routes(app.clone());
    rest_live::serve(app, routes, listener)
        .with_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
