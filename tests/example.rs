//! The example binary as a user runs it: it prints `listening on http://<addr>` when ready,
//! serves, and shuts down cleanly on Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn example_binary() -> PathBuf {
    // target/<profile>/deps/example-<hash> → target/<profile>/examples/todo
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    profile_dir.join("examples").join("todo")
}

#[cfg(unix)]
#[tokio::test]
async fn the_example_serves_and_stops_cleanly_on_ctrl_c() {
    let binary = example_binary();
    assert!(
        binary.exists(),
        "{} is missing: cargo test builds examples before running tests",
        binary.display()
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut child = Command::new(&binary)
        .env("REST_LIVE_BIND", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("todo.db").display()),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the example");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        lines.find_map(|l| l.ok().filter(|l| l.contains("listening on http://")))
    });
    let line = tokio::time::timeout(Duration::from_secs(30), line)
        .await
        .expect("the example starts within 30 s")
        .expect("reader")
        .expect("a 'listening on http://' line");
    let addr = line
        .split("listening on http://")
        .nth(1)
        .expect("address")
        .trim()
        .to_owned();

    let client = reqwest::Client::new();
    let created = client
        .post(format!("http://{addr}/api/lists/"))
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

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("waiter")
        .expect("exit status");
    assert!(status.success(), "the example exits cleanly: {status}");
}
