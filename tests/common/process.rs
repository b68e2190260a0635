//! The example server (`target/<profile>/examples/todo`) as a child process, for the tests that
//! need a real process: to kill it, interrupt it, or run several on one database.
//!
//! The process listens on 127.0.0.1, port 0; [`ExampleProcess::start`] waits for the
//! `listening on http://<addr>` line it prints when ready, and keeps draining its stdout so that
//! it never blocks on a full pipe.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::oneshot;

/// How long the example may take to start (a debug build migrating a fresh database on a busy
/// machine), or to exit once interrupted. Generous: nothing here is timed.
pub const PATIENCE: Duration = Duration::from_secs(60);

const LISTENING: &str = "listening on http://";

/// `target/<profile>/examples/todo`, next to the test executable's `deps` directory.
///
/// `cargo test --workspace` (or `cargo build --examples`) builds it; `cargo test --test <name>`
/// does not build examples, so build them first when selecting tests that way.
pub fn example_binary() -> PathBuf {
    // target/<profile>/deps/<test>-<hash> → target/<profile>/examples/todo
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    profile_dir.join("examples").join("todo")
}

/// One process of the example app. Killed (SIGKILL) and reaped when dropped, unless it has
/// already been stopped with [`kill`](Self::kill) or [`wait`](Self::wait).
pub struct ExampleProcess {
    name: String,
    pid: u32,
    /// `None` once stopped and reaped.
    child: Option<Child>,
    /// `127.0.0.1:<port>`
    addr: String,
}

impl ExampleProcess {
    /// Starts the example on `database_url` with `args`, and `env` on top of `REST_LIVE_BIND`,
    /// `DATABASE_URL` and `RUST_LOG=warn` (it may override them), then waits for its
    /// `listening on` line. Its log is echoed: stdout lines as `[name] …`, stderr as is.
    /// Panics (naming `name`) if it cannot start, exits, or is not listening within [`PATIENCE`].
    pub async fn start(
        name: &str,
        database_url: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        Self::spawn(name, database_url, env, args, true).await
    }

    /// As [`start`](Self::start), but the log is discarded (stdout drained, stderr to null).
    pub async fn start_quiet(
        name: &str,
        database_url: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        Self::spawn(name, database_url, env, args, false).await
    }

    async fn spawn(
        name: &str,
        database_url: &str,
        env: &[(&str, &str)],
        args: &[&str],
        echo: bool,
    ) -> Self {
        let binary = example_binary();
        assert!(
            binary.exists(),
            "{} is missing: `cargo test --workspace` builds the examples; with `--test` filters, \
             run `cargo build --examples` first",
            binary.display()
        );
        let mut child = Command::new(&binary)
            .args(args)
            .env("REST_LIVE_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(if echo {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        // Owned from here on: a panic below kills the child.
        let mut process = Self {
            name: name.to_owned(),
            pid: child.id(),
            child: Some(child),
            addr: String::new(),
        };

        let (ready, listening) = oneshot::channel();
        let prefix = format!("[{name}]");
        // Reads the address, then keeps draining stdout (the log goes there too) so that the
        // child never blocks on it.
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split(LISTENING).nth(1)
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(addr.trim().to_owned());
                } else if echo {
                    eprintln!("{prefix} {line}");
                }
            }
        });
        process.addr = match tokio::time::timeout(PATIENCE, listening).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => panic!(
                "{name} closed its stdout without a '{LISTENING}' line{}",
                if echo { " (its log is above)" } else { "" }
            ),
            Err(_) => panic!("{name} printed no '{LISTENING}' line within {PATIENCE:?}"),
        };
        process
    }

    /// `127.0.0.1:<port>`
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://<addr><path>`; `path` starts with `/` (or is empty, for the base).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://<addr>/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGKILL: the process dies mid-whatever, without a chance to clean up. Waits for it and
    /// returns its exit status.
    pub fn kill(&mut self) -> ExitStatus {
        let name = &self.name;
        let child = running(name, &mut self.child);
        child
            .kill()
            .unwrap_or_else(|e| panic!("SIGKILL {name}: {e}"));
        let status = child
            .wait()
            .unwrap_or_else(|e| panic!("reap the killed {name}: {e}"));
        self.child = None;
        status
    }

    /// SIGINT, as Ctrl-C: the process should shut down cleanly. [`wait`](Self::wait) for it.
    #[cfg(unix)]
    pub fn interrupt(&mut self) {
        running(&self.name, &mut self.child);
        let sent = Command::new("kill")
            .args(["-INT", &self.pid.to_string()])
            .status()
            .expect("run kill -INT");
        assert!(
            sent.success(),
            "kill -INT {} ({}): {sent}",
            self.pid,
            self.name
        );
    }

    /// Waits (up to [`PATIENCE`]) for the process to exit, and returns its exit status.
    pub async fn wait(&mut self) -> ExitStatus {
        let name = &self.name;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let exited = running(name, &mut self.child)
                .try_wait()
                .unwrap_or_else(|e| panic!("wait for {name}: {e}"));
            if let Some(status) = exited {
                self.child = None;
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} did not exit within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The child, if it has not been stopped yet.
fn running<'a>(name: &str, child: &'a mut Option<Child>) -> &'a mut Child {
    child
        .as_mut()
        .unwrap_or_else(|| panic!("{name} has already been stopped"))
}

impl Drop for ExampleProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh SQLite database URL in a new temporary directory, and the directory (the database goes
/// with it when it is dropped).
pub fn temp_sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("todo.db").display());
    (dir, database_url)
}
