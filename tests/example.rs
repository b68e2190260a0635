//! The example binary as a user runs it: it prints `listening on http://<addr>` when ready,
//! serves, and shuts down cleanly on Ctrl-C (SIGINT).

mod common;

use common::process::ExampleProcess;

#[cfg(unix)]
#[tokio::test]
async fn the_example_serves_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("todo.db").display());
    let mut example = ExampleProcess::start_quiet("example", &database_url, &[], &[]).await;

    let client = reqwest::Client::new();
    let created = client
        .post(example.url("/api/lists/"))
        .header("content-type", "application/json")
        .body(r#"{"name": "from the example test"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status().as_u16(), 201);
    assert_eq!(
        created.headers()["location"].to_str().expect("ascii"),
        "/api/lists/1/"
    );

    example.interrupt();
    let status = example.wait().await;
    assert!(status.success(), "the example exits cleanly: {status}");
}
