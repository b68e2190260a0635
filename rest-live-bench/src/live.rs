//! `live`: live queries (PROTOCOL §4), each case against a baseline in the same run.
//!
//! - **unaffected**: the server's CPU per change of one task while N live queries that the change
//!   cannot affect are registered, against N = 0. Indexed queries (an equality on another list)
//!   must not cost more as N grows; queries without an equality condition are matched by a scan,
//!   measured the same way.
//! - **fan-out**: S subscribers of one filtered live query against S subscribers of the group
//!   with the same tasks (the `fanout` scenario's measurement, both on rest-live).
//! - **window**: S subscribers of a `limit: 10` window ordered by priority over 100 tasks, while
//!   the writer reorders them (rows enter and leave, refills read the database), against the same
//!   writes with S group subscribers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::Result;
use crate::args::{Args, Common};
use crate::client::{self, Ws};
use crate::fanout;
use crate::report::{self, Report, Table};
use crate::server::{Kind, Server};
use crate::sys::CpuSample;

/// Live queries one connection may hold (the server's default).
const PER_CONNECTION: usize = 100;

pub async fn run(args: &Args) -> Result<Report> {
    let common = args.common()?;
    let counts: Vec<usize> = args
        .get("queries", "100,1000,10000".to_owned())?
        .split(',')
        .map(|n| n.trim().parse().map_err(|e| format!("--queries: {e}")))
        .collect::<Result<_>>()?;
    let writes: usize = args.get("writes", 2000)?;
    let subs: usize = args.get("subs", 1000)?;
    let window_subs: usize = args.get("window-subs", 1000)?;
    let repeat: usize = args.get("repeat", 3usize)?.max(1);
    let cases: String = args.get("cases", "unaffected,fanout,window".to_owned())?;
    let mut report = Report::new(
        "live",
        json!({"queries": counts, "writes": writes, "subs": subs, "window_subs": window_subs,
               "repeat": repeat, "options": args.options()}),
    );
    let mut results = serde_json::Map::new();
    if cases.contains("unaffected") {
        results.insert(
            "unaffected".into(),
            unaffected(&common, &counts, writes, repeat, &mut report).await?,
        );
    }
    if cases.contains("fanout") {
        results.insert(
            "fanout".into(),
            fan_out(&common, subs, repeat, &mut report).await?,
        );
    }
    if cases.contains("window") {
        results.insert(
            "window".into(),
            window(
                &common,
                window_subs,
                (writes / 4).max(50),
                repeat,
                &mut report,
            )
            .await?,
        );
    }
    report.results = Value::Object(results);
    Ok(report)
}

/// The median and the spread of some ratios.
fn spread(mut ratios: Vec<f64>) -> (f64, f64, f64) {
    ratios.sort_by(f64::total_cmp);
    (
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1],
    )
}

/// Server CPU per change and changes per second of `writes` patches, pipelined.
struct Cost {
    us_per_change: f64,
    changes_per_s: f64,
}

/// Sends `n` frames over one socket, `frame(i)` made as it is sent, at most `window`
/// unanswered, and checks every reply is 200.
async fn pipelined(
    ws: &mut Ws,
    n: usize,
    window: usize,
    mut frame: impl FnMut(usize) -> String,
) -> Result<()> {
    let (mut sent, mut answered) = (0, 0);
    while answered < n {
        while sent < n && sent - answered < window {
            ws.send(Message::text(frame(sent)))
                .await
                .map_err(|e| format!("writer: {e}"))?;
            sent += 1;
        }
        let reply = client::ws_next_text(ws).await?;
        if !reply.contains(r#""response_status":200"#) {
            return Err(format!("a write failed: {reply}"));
        }
        answered += 1;
    }
    Ok(())
}

/// Runs `frames` against `server` and measures the server's CPU over them.
async fn measure(server: &Server, writer: &mut Ws, frames: &[String]) -> Result<Cost> {
    let cpu = CpuSample::take(server.pid());
    let start = Instant::now();
    pipelined(writer, frames.len(), 32, |i| frames[i].clone()).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu.cores_since(server.pid());
    Ok(Cost {
        us_per_change: cpu.server * elapsed / frames.len() as f64 * 1e6,
        changes_per_s: frames.len() as f64 / elapsed,
    })
}

fn patch(task: i64, i: usize, data: Value) -> String {
    json!({"stream": "tasks", "payload": {"action": "patch", "request_id": i, "pk": task, "data": data}})
        .to_string()
}

/// Registers `n` live queries on connections of at most [`PER_CONNECTION`] each; `query(i)` is
/// the i-th. The sockets must stay open.
async fn register(
    addr: SocketAddr,
    n: usize,
    common: &Common,
    query: fn(usize, i64) -> Value,
    list: i64,
) -> Result<Vec<Ws>> {
    let read_buffer = common.client_read_buffer;
    client::open_many(n.div_ceil(PER_CONNECTION), 16, move |c| async move {
        let mut ws = client::ws_connect(addr, "/ws", c, read_buffer).await?;
        let ids = c * PER_CONNECTION..((c + 1) * PER_CONNECTION).min(n);
        for i in ids.clone() {
            let frame = json!({"stream": "tasks", "payload": {"action": "subscribe",
                "request_id": i, "query": query(i, list)}});
            ws.send(Message::text(frame.to_string()))
                .await
                .map_err(|e| e.to_string())?;
        }
        for _ in ids {
            let reply = client::ws_next_text(&mut ws).await?;
            if !reply.contains(r#""response_status":201"#) {
                return Err(format!("subscribe refused: {reply}"));
            }
        }
        Ok(ws)
    })
    .await
}

/// A query on another list (indexed by its `list_id`): never affected by the measured writes.
fn indexed(i: usize, other: i64) -> Value {
    json!({"filter": {"list_id": other, "text": format!("q{i}")}})
}

/// A query with no equality condition: every change is matched against it (it never matches).
fn scanned(i: usize, _: i64) -> Value {
    json!({"filter": {"text__startswith": format!("q{i}:")}})
}

async fn unaffected(
    common: &Common,
    counts: &[usize],
    writes: usize,
    repeat: usize,
    report: &mut Report,
) -> Result<Value> {
    let mut table = Table::new(
        format!(
            "live queries a change cannot affect: server CPU per change ({writes} patches, 32 in flight)"
        ),
        vec![
            "queries",
            "kind",
            "µs/change (median)",
            "changes/s",
            "ratio to 0 (min..max)",
        ],
    );
    let mut out = Vec::new();
    for (kind, query) in [
        ("indexed", indexed as fn(usize, i64) -> Value),
        ("scan", scanned as fn(usize, i64) -> Value),
    ] {
        for &n in counts {
            let mut ratios = Vec::new();
            let mut costs = Vec::new();
            for _ in 0..repeat {
                // Each round on a fresh server: first without the queries, then with them.
                let server = Server::start(Kind::RestLive, common).await?;
                let (_, task) = client::create_list_and_task(server.addr, "t").await?;
                let (other, _) = client::create_list_and_task(server.addr, "o").await?;
                let mut writer = client::ws_connect(server.addr, "/ws", 0, 4096).await?;
                let frames: Vec<String> = (0..writes)
                    .map(|i| patch(task, i, json!({"text": format!("w{i}")})))
                    .collect();
                // A warm-up, so that both measurements run on a warm server.
                pipelined(&mut writer, writes.min(200), 32, |i| frames[i].clone()).await?;
                let base = measure(&server, &mut writer, &frames).await?;
                let _sockets = register(server.addr, n, common, query, other).await?;
                let with = measure(&server, &mut writer, &frames).await?;
                ratios.push(report::ratio(with.us_per_change, base.us_per_change));
                costs.push((base, with));
            }
            let (lo, median, hi) = spread(ratios.clone());
            let mid = &costs[ratios.iter().position(|r| *r == median).unwrap_or_default()];
            table.row(vec![
                "0".into(),
                kind.into(),
                format!("{:.1}", mid.0.us_per_change),
                report::rate(mid.0.changes_per_s),
                "1.00x".into(),
            ]);
            table.row(vec![
                n.to_string(),
                kind.into(),
                format!("{:.1}", mid.1.us_per_change),
                report::rate(mid.1.changes_per_s),
                format!("{median:.2}x ({lo:.2}..{hi:.2})"),
            ]);
            eprintln!("  unaffected {kind} {n}: {median:.2}x ({lo:.2}..{hi:.2})");
            out.push(json!({"kind": kind, "queries": n, "ratio": {"min": lo, "median": median, "max": hi},
                "us_per_change": {"without": mid.0.us_per_change, "with": mid.1.us_per_change}}));
        }
    }
    report.tables.push(table);
    for kind in ["indexed", "scan"] {
        let of = |n: usize| {
            out.iter()
                .find(|o| o["kind"] == kind && o["queries"] == n)
                .and_then(|o| o["us_per_change"]["with"].as_f64())
        };
        if let (Some(&lo), Some(&hi)) = (counts.iter().min(), counts.iter().max())
            && let (Some(a), Some(b)) = (of(lo), of(hi))
            && lo != hi
        {
            report.notes.push(format!(
                "unaffected {kind}: µs/change with {hi} queries ÷ with {lo}: {:.2}x",
                report::ratio(b, a)
            ));
        }
    }
    report.notes.push(
        "unaffected: target for indexed queries <= 1.5x (10,000 ÷ 100, and against none); the scan grows with N by design (queries without an equality condition)".into(),
    );
    Ok(Value::from(out))
}

async fn fan_out(
    common: &Common,
    subs: usize,
    repeat: usize,
    report: &mut Report,
) -> Result<Value> {
    let writes = (2_000_000 / subs.max(1)).clamp(20, 2000);
    let params = |subscribe| fanout::Params {
        subs,
        writes,
        rate: None,
        window: 64,
        client_tasks: 0,
        drain: Duration::from_secs(15),
        stalled: 0,
        subscribe,
    };
    let mut table = Table::new(
        format!(
            "fan-out: {subs} subscribers, {writes} writes, group vs the same tasks as a live query"
        ),
        vec![
            "round",
            "group deliveries/s",
            "query deliveries/s",
            "missing",
            "ratio",
        ],
    );
    let mut ratios = Vec::new();
    for round in 1..=repeat {
        let mut rates = Vec::new();
        let mut missing = 0;
        for subscribe in [
            client::subscribe_frame as fn(i64, usize, bool) -> String,
            client::query_frame,
        ] {
            let server = Server::start(Kind::RestLive, common).await?;
            let (list, task) = client::create_list_and_task(server.addr, "0:0").await?;
            let o = fanout::phase(&server, list, task, params(subscribe), common).await?;
            missing += o.missing;
            rates.push(o.deliveries_per_s);
        }
        let ratio = report::ratio(rates[1], rates[0]);
        eprintln!("  fan-out round {round}: {ratio:.2}x");
        ratios.push(ratio);
        table.row(vec![
            round.to_string(),
            report::rate(rates[0]),
            report::rate(rates[1]),
            missing.to_string(),
            report::x(ratio),
        ]);
    }
    let (lo, median, hi) = spread(ratios);
    report.tables.push(table);
    report.notes.push(format!(
        "fan-out: live query / group deliveries/s median {median:.2}x (min {lo:.2}, max {hi:.2}); target >= 0.8x"
    ));
    Ok(json!({"ratio": {"min": lo, "median": median, "max": hi}}))
}

/// What one window subscriber saw: its view (pks) and the latency of each arrival or change.
#[derive(Default)]
struct Seen {
    view: std::collections::BTreeSet<i64>,
    latencies_us: Vec<u32>,
    events: u64,
}

/// Reads every event of `sockets` into their views until the run ends.
fn follow(
    sockets: Vec<Ws>,
) -> (
    Vec<Arc<std::sync::Mutex<Seen>>>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let mut seen = Vec::new();
    let mut tasks = Vec::new();
    for mut ws in sockets {
        let mine = Arc::new(std::sync::Mutex::new(Seen::default()));
        seen.push(mine.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let now = crate::sys::now_ns();
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                let p = &frame["payload"];
                let mut seen = mine.lock().unwrap_or_else(|e| e.into_inner());
                seen.events += 1;
                match p["action"].as_str() {
                    Some("delete") => {
                        if let Some(pk) = p["data"]["pk"].as_i64() {
                            seen.view.remove(&pk);
                        }
                    }
                    Some(_) => {
                        if let Some(pk) = p["data"]["id"].as_i64() {
                            seen.view.insert(pk);
                        }
                        let sent = p["data"]["text"]
                            .as_str()
                            .and_then(|t| t.split_once(':'))
                            .and_then(|(_, ns)| ns.parse::<u64>().ok());
                        if let Some(sent) = sent {
                            let us = (now.saturating_sub(sent) / 1000).min(u64::from(u32::MAX));
                            seen.latencies_us.push(us as u32);
                        }
                    }
                    None => {}
                }
            }
        }));
    }
    (seen, tasks)
}

async fn window(
    common: &Common,
    subs: usize,
    writes: usize,
    repeat: usize,
    report: &mut Report,
) -> Result<Value> {
    const TASKS: usize = 100;
    const LIMIT: usize = 10;
    let mut table = Table::new(
        format!(
            "window: {subs} subscribers of the first {LIMIT} of {TASKS} tasks by priority, {writes} writes that reorder them"
        ),
        vec![
            "round",
            "subscription",
            "changes/s",
            "µs/change",
            "deliveries/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "views wrong",
            "ratio",
        ],
    );
    let mut ratios = Vec::new();
    let mut wrong_total = 0;
    for round in 1..=repeat {
        let mut rates = Vec::new();
        for kind in ["group", "window"] {
            let server = Server::start(Kind::RestLive, common).await?;
            let (list, first) = client::create_list_and_task(server.addr, "t0").await?;
            let mut http = client::Http::connect(server.addr).await?;
            let mut tasks = vec![first];
            for i in 1..TASKS {
                let body = json!({"text": format!("t{i}"), "list_id": list, "priority": i % 10});
                let (status, body) = http.post("/api/tasks/", body.to_string()).await?;
                if status != 201 {
                    return Err(format!("POST /api/tasks/: {status}"));
                }
                tasks.push(client::id_of(&body)?);
            }
            let query =
                json!({"filter": {"list_id": list}, "ordering": ["-priority"], "limit": LIMIT});
            let subscribe = match kind {
                "group" => json!({"group": {"list_id": list}}),
                _ => json!({"query": query.clone(), "snapshot": true}),
            };
            let read_buffer = common.client_read_buffer;
            let addr = server.addr;
            let opened = client::open_many(subs, common.connect_concurrency, move |i| {
                let mut payload = subscribe.clone();
                async move {
                    let mut ws = client::ws_connect(addr, "/ws", i, read_buffer).await?;
                    payload["action"] = json!("subscribe");
                    payload["request_id"] = json!("w");
                    let frame = json!({"stream": "tasks", "payload": payload});
                    let reply = client::ws_request(&mut ws, frame.to_string()).await?;
                    let reply: Value = serde_json::from_str(&reply).map_err(|e| e.to_string())?;
                    if reply["payload"]["response_status"] != 201 {
                        return Err(format!("subscribe refused: {reply}"));
                    }
                    let start: Vec<i64> = reply["payload"]["data"]["results"]
                        .as_array()
                        .map(|rows| rows.iter().filter_map(|r| r["id"].as_i64()).collect())
                        .unwrap_or_default();
                    Ok((ws, start))
                }
            })
            .await?;
            let (sockets, starts): (Vec<Ws>, Vec<Vec<i64>>) = opened.into_iter().unzip();
            let (seen, readers) = follow(sockets);
            for (s, start) in seen.iter().zip(starts) {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .view
                    .extend(start);
            }
            let mut writer = client::ws_connect(server.addr, "/ws", subs, 4096).await?;
            // The send time is written when the frame is made: make them as they are sent.
            let cpu = CpuSample::take(server.pid());
            let start = Instant::now();
            pipelined(&mut writer, writes, 32, |i| {
                let task = tasks[(i * 7919) % TASKS];
                let text = format!("{i}:{}", crate::sys::now_ns());
                patch(
                    task,
                    i,
                    json!({"priority": (i * 31 + i / 7) % 10, "text": text}),
                )
            })
            .await?;
            let elapsed = start.elapsed().as_secs_f64();
            let cores = cpu.cores_since(server.pid());
            // Every window view must settle on what `list` returns (a group's view is not checked:
            // it holds only the tasks it heard of).
            let mut want = std::collections::BTreeSet::new();
            if kind == "window" {
                let reply = client::ws_request(
                    &mut writer,
                    json!({"stream": "tasks", "payload": {"action": "list", "request_id": "end",
                        "filter": {"list_id": list}, "ordering": ["-priority"], "limit": LIMIT}})
                    .to_string(),
                )
                .await?;
                let reply: Value = serde_json::from_str(&reply).map_err(|e| e.to_string())?;
                want = reply["payload"]["data"]["results"]
                    .as_array()
                    .map(|rows| rows.iter().filter_map(|r| r["id"].as_i64()).collect())
                    .unwrap_or_default();
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            let wrong = loop {
                let wrong = seen
                    .iter()
                    .filter(|s| {
                        kind == "window" && s.lock().unwrap_or_else(|e| e.into_inner()).view != want
                    })
                    .count();
                if wrong == 0 || Instant::now() > deadline {
                    break wrong;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            for r in readers {
                r.abort();
            }
            wrong_total += wrong;
            let mut samples = Vec::new();
            let mut events = 0;
            for s in &seen {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                samples.extend_from_slice(&s.latencies_us);
                events += s.events;
            }
            let latency = report::Latencies::from_micros(samples);
            rates.push(writes as f64 / elapsed);
            let mut row = vec![
                round.to_string(),
                kind.into(),
                report::rate(writes as f64 / elapsed),
                format!("{:.1}", cores.server * elapsed / writes as f64 * 1e6),
                report::rate(events as f64 / elapsed),
            ];
            row.extend(report::latency_cells(&latency));
            row.push(if kind == "window" {
                wrong.to_string()
            } else {
                "-".into()
            });
            row.push(if kind == "group" {
                "1.00x".into()
            } else {
                report::x(report::ratio(rates[1], rates[0]))
            });
            table.row(row);
        }
        let ratio = report::ratio(rates[1], rates[0]);
        eprintln!("  window round {round}: {ratio:.2}x");
        ratios.push(ratio);
    }
    let (lo, median, hi) = spread(ratios);
    report.tables.push(table);
    report.notes.push(format!(
        "window: changes/s with {subs} window subscribers / with {subs} group subscribers, median {median:.2}x (min {lo:.2}, max {hi:.2}); latency is write → arrival of creates and updates (a delete carries no send time); views wrong = subscribers whose view did not settle on `list` within 15 s ({wrong_total} in all)"
    ));
    Ok(json!({"ratio": {"min": lo, "median": median, "max": hi}, "views_wrong": wrong_total}))
}
