//! The servers under test, each run as a child process of this binary (`__serve <kind>`): the
//! to-do example served by rest-live, and a bare tokio-tungstenite broadcast server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use crate::args::Common;
use crate::{Result, models, sys};

/// The hidden sub-command that runs a server.
pub const CHILD_COMMAND: &str = "__serve";

/// The frames queued per subscriber before it is dropped as too slow: rest-live's default
/// `outgoing_queue`, used as the bare server's broadcast capacity.
const QUEUE: usize = 1024;

/// The reply the bare server gives to a subscriber's first frame, shaped like rest-live's.
pub const BARE_SUBSCRIBED: &str = r#"{"stream":"tasks","payload":{"action":"subscribe","request_id":"s","response_status":201,"errors":[],"data":{"seq":0}}}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The to-do example served by `rest_live::routes`.
    RestLive,
    /// Subscribers on `/ws`, a publisher on `/pub` whose frames are broadcast as they are.
    Bare,
    /// `retrieve` answered from the rest-live server's SQLite file by a prepared point read.
    BareReqrep,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::RestLive => "rest-live",
            Kind::Bare => "bare",
            Kind::BareReqrep => "bare-reqrep",
        }
    }
}

/// A running server process. Dropping it closes its stdin (the server exits, a profiler around it
/// writes its output), then kills it after a grace period.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Child,
    /// Closing it tells the server to exit (a profiler around it then writes its output).
    stdin: Option<std::process::ChildStdin>,
    /// How long the server gets to exit before it is killed.
    exit_grace: std::time::Duration,
    log: PathBuf,
    // Removed after the child is gone (field order: dropped after `child` is killed in `drop`).
    dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(kind: Kind, common: &Common) -> Result<Self> {
        Self::start_on(kind, common, None).await
    }

    /// The rest-live server's database file (it is removed with the server).
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("bench.db")
    }

    /// A server; `database` is the SQLite file a [`Kind::BareReqrep`] server reads.
    pub async fn start_on(kind: Kind, common: &Common, database: Option<PathBuf>) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rest-live-bench")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
        let log = dir.path().join("server.log");
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        // A profiler around the server, e.g.
        // REST_LIVE_BENCH_WRAP="valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p"
        let wrap = std::env::var("REST_LIVE_BENCH_WRAP").unwrap_or_default();
        let wrap_only = std::env::var("REST_LIVE_BENCH_WRAP_ONLY").unwrap_or_default();
        let mut words = wrap
            .split_whitespace()
            .filter(|_| wrap_only.is_empty() || wrap_only == kind.name());
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        command.arg(CHILD_COMMAND).arg(kind.name());
        match kind {
            Kind::RestLive => {
                command.arg(dir.path().join("bench.db"));
            }
            Kind::Bare => {
                command.arg(common.bare_read_buffer.to_string());
            }
            Kind::BareReqrep => {
                command.arg(database.ok_or("bare-reqrep: the database file to read")?);
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting the {} server: {e}", kind.name()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stdin = child.stdin.take();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            line
        })
        .await
        .map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "the {} server did not start: {line:?}\n{log}",
                kind.name()
            ));
        };
        let exit_grace = std::time::Duration::from_secs(if wrap.is_empty() { 2 } else { 600 });
        Ok(Self {
            kind,
            addr,
            child,
            stdin,
            exit_grace,
            log,
            dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kib(&self) -> u64 {
        sys::rss_kib(Some(self.pid()))
    }

    /// Lines of the server's log (warnings and errors) that contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + self.exit_grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `__serve rest-live <db file>`, `__serve bare [<read buffer bytes>]` or
/// `__serve bare-reqrep <db file>`: prints
/// `listening <addr>`, serves until its stdin closes (the parent is gone).
pub fn child_main(args: &[String]) -> ExitCode {
    sys::raise_nofile_limit();
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("rest-live") => {
                let db = args.get(1).ok_or("rest-live: database file missing")?;
                serve_rest_live(db).await
            }
            Some("bare") => {
                let read_buffer = args.get(1).and_then(|b| b.parse().ok());
                serve_bare(read_buffer).await
            }
            Some("bare-reqrep") => {
                let db = args.get(1).ok_or("bare-reqrep: database file missing")?;
                serve_bare_reqrep(db).await
            }
            other => Err(format!("unknown server {other:?}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// 127.0.0.1, port 0, with the kernel's largest accept backlog (`somaxconn` caps it).
fn listen() -> Result<TcpListener> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.set_reuseaddr(true).map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| e.to_string())?;
    socket.listen(65535).map_err(|e| e.to_string())
}

fn announce(listener: &TcpListener) -> Result<()> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening {addr}").map_err(|e| e.to_string())?;
    stdout.flush().map_err(|e| e.to_string())
}

/// The example's resources, served as `examples/todo/main.rs` does.
async fn serve_rest_live(db: &str) -> Result<()> {
    let app = models::builder()
        .database_url(format!("sqlite://{db}"))
        // The request throttles (per connection, principal, address) are a policy, not a cost:
        // off, so that they cannot cap the writer or the request loops.
        .throttle(false)
        // `REST_LIVE_EVENT_LINGER_MS`, as the example reads it, to measure other lingers.
        .configure(|c| {
            if let Some(ms) = std::env::var("REST_LIVE_EVENT_LINGER_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                c.event_linger = std::time::Duration::from_millis(ms);
            }
        })
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let listener = listen()?;
    announce(&listener)?;
    let routes = rest_live::routes(app.clone());
    rest_live::serve(app, routes, listener).await;
    Ok(())
}

/// The baseline: no framework. A subscriber sends one frame (its subscription) and gets a fixed
/// reply; every text frame of a publisher (`/pub`) is broadcast unchanged, one shared buffer for all
/// subscribers. Each connection has a reader loop and a writer task that batches what is queued into
/// one flush, like rest-live's adapter; a subscriber that falls `QUEUE` frames behind is closed
/// with 4008, like rest-live's.
async fn serve_bare(read_buffer: Option<usize>) -> Result<()> {
    let mut config = WebSocketConfig::default();
    if let Some(bytes) = read_buffer {
        config = config.read_buffer_size(bytes);
    }
    let listener = listen()?;
    announce(&listener)?;
    let (events, _) = broadcast::channel::<Utf8Bytes>(QUEUE);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let events = events.clone();
        tokio::spawn(async move {
            let _ = bare_connection(stream, events, config).await;
        });
    }
}

// The handshake callback's error type is tungstenite's (an HTTP response).
#[allow(clippy::result_large_err)]
async fn bare_connection(
    stream: TcpStream,
    events: broadcast::Sender<Utf8Bytes>,
    config: WebSocketConfig,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut publisher = false;
    let socket = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |request: &tokio_tungstenite::tungstenite::handshake::server::Request, response| {
            publisher = request.uri().path() == "/pub";
            Ok(response)
        },
        Some(config),
    )
    .await?;
    let (mut sink, mut stream) = socket.split();
    if publisher {
        while let Some(message) = stream.next().await {
            if let Message::Text(frame) = message? {
                let _ = events.send(frame);
            }
        }
        return Ok(());
    }
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(_))) => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e),
            None => return Ok(()),
        }
    }
    let mut queue = events.subscribe();
    sink.send(Message::text(BARE_SUBSCRIBED)).await?;
    let writer = tokio::spawn(async move {
        loop {
            match queue.recv().await {
                Ok(frame) => {
                    if sink.feed(Message::Text(frame)).await.is_err() {
                        return;
                    }
                    loop {
                        match queue.try_recv() {
                            Ok(frame) => {
                                if sink.feed(Message::Text(frame)).await.is_err() {
                                    return;
                                }
                            }
                            Err(broadcast::error::TryRecvError::Lagged(_)) => {
                                let _ = sink.send(slow_consumer()).await;
                                return;
                            }
                            Err(_) => break,
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = sink.send(slow_consumer()).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    while let Some(message) = stream.next().await {
        if matches!(message, Ok(Message::Close(_)) | Err(_)) {
            break;
        }
    }
    writer.abort();
    Ok(())
}

fn slow_consumer() -> Message {
    tracing::warn!("subscriber lagged; closing with 4008");
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(4008),
        reason: Utf8Bytes::from_static("client did not read fast enough"),
    }))
}

/// The request/reply baseline: no framework. Each WebSocket connection opens the same SQLite
/// file as the rest-live server it is compared with, and answers every `retrieve` frame
/// (`{"stream":"tasks","payload":{"action":"retrieve","request_id":…,"pk":…}}`) with the task
/// read by one prepared point query on its own connection, in place (no thread hand-off), and
/// encoded with serde, in rest-live's reply shape. The fastest a server can do that read on this
/// machine: the reqrep target is ≥ 0.5× it.
async fn serve_bare_reqrep(db: &str) -> Result<()> {
    let listener = listen()?;
    announce(&listener)?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let db = db.to_owned();
        tokio::spawn(async move {
            if let Err(e) = bare_reqrep_connection(stream, &db).await {
                tracing::debug!("bare reqrep connection: {e}");
            }
        });
    }
}

async fn bare_reqrep_connection(stream: TcpStream, db: &str) -> Result<()> {
    use diesel::prelude::*;
    let _ = stream.set_nodelay(true);
    let mut conn = diesel::SqliteConnection::establish(db).map_err(|e| e.to_string())?;
    let socket = tokio_tungstenite::accept_async(stream)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sink, mut source) = socket.split();
    while let Some(message) = source.next().await {
        let text = match message.map_err(|e| e.to_string())? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        let request: serde_json::Value =
            serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
        let payload = &request["payload"];
        let request_id = payload["request_id"].to_string();
        let pk = payload["pk"].as_i64().unwrap_or(0) as i32;
        let reply = match models::tasks::table
            .find(pk)
            .first::<models::Task>(&mut conn)
            .optional()
        {
            Ok(Some(task)) => format!(
                r#"{{"stream":"tasks","payload":{{"action":"retrieve","request_id":{request_id},"response_status":200,"errors":[],"data":{}}}}}"#,
                serde_json::to_string(&task).map_err(|e| e.to_string())?
            ),
            Ok(None) => format!(
                r#"{{"stream":"tasks","payload":{{"action":"retrieve","request_id":{request_id},"response_status":404,"errors":["Not found."],"data":null}}}}"#
            ),
            Err(e) => return Err(e.to_string()),
        };
        sink.send(Message::text(reply))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
