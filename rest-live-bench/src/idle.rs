//! `idle`: N connections, each with one group subscription, doing nothing. The server's RSS is read
//! from `/proc/<pid>/status` before and after (the server is a child process, so the client's own
//! memory is not in the figure), then once more after one event reached every connection, since
//! buffers grown by a first write stay allocated.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::Result;
use crate::args::{Args, Common};
use crate::client::{self, Ws};
use crate::report::{self, Report, Table};
use crate::server::{Kind, Server};

pub async fn run(args: &Args) -> Result<Report> {
    let common = args.common()?;
    let conns: usize = args.get("conns", 10_000)?;
    let settle = Duration::from_secs_f64(args.get("settle", 1.0)?);
    if conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    eprintln!("idle: {conns} subscribed connections");
    let bare = measure(Kind::Bare, conns, settle, &common).await?;
    eprintln!("  bare: {:.0} B/connection", bare.per_conn_bytes);
    let rest_live = measure(Kind::RestLive, conns, settle, &common).await?;
    eprintln!("  rest-live: {:.0} B/connection", rest_live.per_conn_bytes);

    let mut report = Report::new(
        "idle",
        json!({"conns": conns, "settle_s": settle.as_secs_f64(), "options": args.options()}),
    );
    let mut table = Table::new(
        format!("idle: {conns} connections, one subscription each"),
        vec![
            "server",
            "connected",
            "RSS before",
            "RSS idle",
            "per conn",
            "after 1 event",
            "per conn",
            "ratio",
        ],
    );
    for (name, o) in [("bare (baseline)", &bare), ("rest-live", &rest_live)] {
        table.row(vec![
            name.to_owned(),
            o.connected.to_string(),
            format!("{} MiB", o.rss_before_kib / 1024),
            format!("{} MiB", o.rss_idle_kib / 1024),
            kib(o.per_conn_bytes),
            format!("{} MiB", o.rss_after_event_kib / 1024),
            kib(o.per_conn_after_event_bytes),
            report::x(report::ratio(o.per_conn_bytes, bare.per_conn_bytes)),
        ]);
    }
    report.tables.push(table);
    report.notes.push(
        "per conn = (server RSS with the connections − RSS before) ÷ connections; the server is a child process, measured alone; target: rest-live <= 10 KiB per idle subscribed connection at 10,000".into(),
    );
    report.notes.push(format!(
        "the bare baseline's tungstenite read buffer: {} bytes (rest-live's default `ws_read_buffer_bytes`: 4096)",
        common.bare_read_buffer
    ));
    report.results = json!({
        "cases": [bare.json("bare", true, &bare), rest_live.json("rest-live", false, &bare)],
    });
    Ok(report)
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

#[derive(Debug)]
pub struct Outcome {
    pub conns: usize,
    pub connected: usize,
    pub events_received: usize,
    pub connect_s: f64,
    pub rss_before_kib: u64,
    pub rss_idle_kib: u64,
    pub rss_after_event_kib: u64,
    pub per_conn_bytes: f64,
    pub per_conn_after_event_bytes: f64,
}

impl Outcome {
    fn json(&self, server: &str, baseline: bool, base: &Outcome) -> Value {
        json!({
            "server": server,
            "baseline": baseline,
            "conns": self.conns,
            "connected": self.connected,
            "events_received": self.events_received,
            "connect_s": report::round3(self.connect_s),
            "server_rss_before_kib": self.rss_before_kib,
            "server_rss_idle_kib": self.rss_idle_kib,
            "server_rss_after_event_kib": self.rss_after_event_kib,
            "server_bytes_per_conn": self.per_conn_bytes.round(),
            "server_bytes_per_conn_after_event": self.per_conn_after_event_bytes.round(),
            "ratio_bytes_per_conn": report::ratio(self.per_conn_bytes, base.per_conn_bytes),
        })
    }
}

pub async fn measure(
    kind: Kind,
    conns: usize,
    settle: Duration,
    common: &Common,
) -> Result<Outcome> {
    if kind == Kind::BareReqrep {
        return Err("idle: the request/reply baseline has no subscriptions".into());
    }
    let server = Server::start(kind, common).await?;
    let (list, task) = match kind {
        Kind::RestLive => client::create_list_and_task(server.addr, "0:0").await?,
        Kind::Bare | Kind::BareReqrep => (1, 1),
    };
    // One connection first, so that what is allocated once (thread-locals, the hub's group entry,
    // allocator arenas) is in the "before" figure rather than spread over the connections.
    let warm = client::subscribers(server.addr, "/ws", 1, list, common).await?;
    drop(warm);
    tokio::time::sleep(settle).await;
    let rss_before_kib = server.rss_kib();

    let start = Instant::now();
    let mut sockets = client::subscribers(server.addr, "/ws", conns, list, common).await?;
    let connect_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_idle_kib = server.rss_kib();

    // One event to every connection.
    let writer_path = if kind == Kind::Bare { "/pub" } else { "/ws" };
    let mut writer =
        client::ws_connect(server.addr, writer_path, conns, common.client_read_buffer).await?;
    let frame = match kind {
        Kind::Bare | Kind::BareReqrep => format!(
            r#"{{"stream":"tasks","payload":{{"action":"update","request_id":"s","response_status":200,"errors":[],"seq":1,"data":{{"id":{task},"text":"idle","done":false,"list_id":{list}}}}}}}"#
        ),
        Kind::RestLive => format!(
            r#"{{"stream":"tasks","payload":{{"action":"patch","request_id":1,"pk":{task},"data":{{"text":"idle"}}}}}}"#
        ),
    };
    writer
        .send(Message::text(frame))
        .await
        .map_err(|e| format!("writer: {e}"))?;
    let events_received = receive_one_each(&mut sockets, Duration::from_secs(60)).await;
    tokio::time::sleep(settle).await;
    let rss_after_event_kib = server.rss_kib();

    let per = |after: u64, before: u64| after.saturating_sub(before) as f64 * 1024.0 / conns as f64;
    let outcome = Outcome {
        conns,
        connected: sockets.len(),
        events_received,
        connect_s,
        rss_before_kib,
        rss_idle_kib,
        rss_after_event_kib,
        per_conn_bytes: per(rss_idle_kib, rss_before_kib),
        per_conn_after_event_bytes: per(rss_after_event_kib, rss_before_kib),
    };
    drop(sockets);
    drop(server);
    Ok(outcome)
}

/// Reads one text frame from each socket (the event); how many got one in time.
async fn receive_one_each(sockets: &mut [Ws], patience: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + patience;
    let mut received = 0;
    for ws in sockets.iter_mut() {
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if t.as_str().contains(r#""action":"update""#) {
                        received += 1;
                    }
                    break;
                }
                Ok(Some(Ok(_))) => continue,
                _ => break,
            }
        }
    }
    received
}
