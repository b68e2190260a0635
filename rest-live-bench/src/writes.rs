//! `writes`: creates/s through rest-live (WebSocket `create`, HTTP `POST`) with 0 and S
//! subscribers of the tasks' group, against a raw diesel loop inserting the same rows into an SQLite
//! file with the same settings (WAL, synchronous=NORMAL, foreign keys, one transaction per insert).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::MigrationHarness;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::Result;
use crate::args::Args;
use crate::client::{self, Http};
use crate::models;
use crate::report::{self, Latencies, Report, Table};
use crate::server::{Kind, Server};
use crate::sys::{self, Cpu, CpuSample};

#[derive(Debug, Clone, Copy)]
struct Params {
    writes: usize,
    subs: usize,
    writers: usize,
}

pub async fn run(args: &Args) -> Result<Report> {
    let common = args.common()?;
    let p = Params {
        writes: args.get("writes", 1000usize)?.max(1),
        subs: args.get("subs", 1000usize)?,
        writers: args.get("writers", 4usize)?.max(1),
    };
    eprintln!(
        "writes: {} creates per case, {} writers, {} subscribers",
        p.writes, p.writers, p.subs
    );
    let raw = raw_diesel_loop(p.writes).await?;
    eprintln!("  raw diesel loop: {:.0} inserts/s", raw.per_s);

    let server = Server::start(Kind::RestLive, &common).await?;
    let (list, _) = client::create_list_and_task(server.addr, "first").await?;
    let mut outcomes = vec![raw];
    for transport in ["ws", "http"] {
        let o = creates(&server, transport, list, p, None).await?;
        eprintln!("  {transport}, 0 subscribers: {:.0} creates/s", o.per_s);
        outcomes.push(o);
    }
    if p.subs > 0 {
        let sockets = client::subscribers(server.addr, "/ws", p.subs, list, &common).await?;
        let receivers = Receivers::spawn(sockets);
        for transport in ["ws", "http"] {
            let o = creates(&server, transport, list, p, Some(&receivers)).await?;
            eprintln!(
                "  {transport}, {} subscribers: {:.0} creates/s",
                p.subs, o.per_s
            );
            outcomes.push(o);
        }
        receivers.stop();
    }

    let mut report = Report::new(
        "writes",
        json!({"writes": p.writes, "subs": p.subs, "writers": p.writers, "options": args.options()}),
    );
    let mut table = Table::new(
        format!(
            "writes: {} creates per case, {} concurrent writers (one connection each)",
            p.writes, p.writers
        ),
        vec![
            "case",
            "subs",
            "ok",
            "errors",
            "creates/s",
            "p50 ms",
            "p99 ms",
            "delivered",
            "missing",
            "all delivered s",
            "srv CPU",
            "cli CPU",
            "other CPU",
            "ratio",
        ],
    );
    let base = outcomes[0].per_s;
    let mut cases = Vec::new();
    for o in &outcomes {
        let mut row = vec![
            o.case.clone(),
            o.subs.to_string(),
            o.ok.to_string(),
            o.errors.to_string(),
            report::rate(o.per_s),
            report::ms(o.latency.ms(0.5)),
            report::ms(o.latency.ms(0.99)),
            o.delivered.to_string(),
            o.missing.to_string(),
            format!("{:.2}", o.all_delivered_s),
        ];
        row.extend(report::cpu_cells(&o.cpu));
        row.push(report::x(report::ratio(o.per_s, base)));
        table.row(row);
        let mut case = o.json();
        case["ratio_to_raw"] = json!(report::ratio(o.per_s, base));
        cases.push(case);
    }
    report.tables.push(table);
    report.notes.push(
        "ratio = creates/s ÷ the raw diesel insert loop's (one thread, one transaction per insert, same SQLite settings); target >= 0.5".into(),
    );
    report.notes.push(
        "creates/s counts replies; with subscribers, 'all delivered s' is when the last subscriber got the last create event".into(),
    );
    report.results = json!({ "cases": cases });
    Ok(report)
}

struct Outcome {
    case: String,
    subs: usize,
    ok: u64,
    errors: u64,
    per_s: f64,
    latency: Latencies,
    expected_deliveries: u64,
    delivered: u64,
    missing: u64,
    subscribers_missing_events: u64,
    all_delivered_s: f64,
    cpu: Cpu,
}

impl Outcome {
    fn json(&self) -> Value {
        json!({
            "case": self.case,
            "baseline": self.case.starts_with("raw"),
            "subs": self.subs,
            "ok": self.ok,
            "errors": self.errors,
            "creates_per_s": self.per_s.round(),
            "latency": self.latency.json(),
            "expected_deliveries": self.expected_deliveries,
            "delivered": self.delivered,
            "missing": self.missing,
            "subscribers_missing_events": self.subscribers_missing_events,
            "all_delivered_s": report::round3(self.all_delivered_s),
            "cpu_cores": report::cpu_json(&self.cpu),
        })
    }
}

/// The baseline: the same row inserted `writes` times by diesel, one transaction each.
async fn raw_diesel_loop(writes: usize) -> Result<Outcome> {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::Builder::new()
            .prefix("rest-live-bench-raw")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let path = dir.path().join("raw.db");
        let mut conn = SqliteConnection::establish(&path.display().to_string())
            .map_err(|e| e.to_string())?;
        // rest-live's settings (rest-live-core/src/store.rs).
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        )
        .map_err(|e| e.to_string())?;
        conn.run_pending_migrations(models::SQLITE_MIGRATIONS)
            .map_err(|e| e.to_string())?;
        let list: models::List = diesel::insert_into(models::lists::table)
            .values(models::lists::name.eq("raw"))
            .get_result(&mut conn)
            .map_err(|e| e.to_string())?;
        let cpu_before = sys::cpu_secs(None);
        let machine_before = sys::machine_busy_secs();
        let mut micros = Vec::with_capacity(writes);
        let start = Instant::now();
        for i in 0..writes {
            let started = Instant::now();
            conn.immediate_transaction(|c| {
                diesel::insert_into(models::tasks::table)
                    .values((
                        models::tasks::text.eq(format!("w{i}")),
                        models::tasks::done.eq(false),
                        models::tasks::list_id.eq(list.id),
                    ))
                    .get_result::<models::Task>(c)
            })
            .map_err(|e| e.to_string())?;
            micros.push(started.elapsed().as_micros() as u32);
        }
        let elapsed = start.elapsed().as_secs_f64();
        let client = (sys::cpu_secs(None) - cpu_before) / elapsed.max(1e-9);
        let machine = (sys::machine_busy_secs() - machine_before) / elapsed.max(1e-9);
        let cpu = Cpu {
            server: 0.0,
            client,
            other: (machine - client).max(0.0),
        };
        Ok(Outcome {
            case: "raw diesel loop (baseline)".into(),
            subs: 0,
            ok: writes as u64,
            errors: 0,
            per_s: writes as f64 / elapsed,
            latency: Latencies::from_micros(micros),
            expected_deliveries: 0,
            delivered: 0,
            missing: 0,
            subscribers_missing_events: 0,
            all_delivered_s: 0.0,
            cpu,
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Subscribers counting the create events they receive.
struct Receivers {
    counts: Arc<[AtomicU64]>,
    last_event: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Receivers {
    fn spawn(sockets: Vec<client::Ws>) -> Self {
        let counts: Arc<[AtomicU64]> = sockets.iter().map(|_| AtomicU64::new(0)).collect();
        let last_event = Arc::new(AtomicU64::new(0));
        let tasks = sockets
            .into_iter()
            .enumerate()
            .map(|(i, mut ws)| {
                let counts = counts.clone();
                let last_event = last_event.clone();
                tokio::spawn(async move {
                    while let Some(Ok(message)) = ws.next().await {
                        if let Message::Text(t) = message
                            && t.as_str()
                                .starts_with(r#"{"stream":"tasks","payload":{"action":"create""#)
                        {
                            counts[i].fetch_add(1, Ordering::Relaxed);
                            last_event.fetch_max(sys::now_ns(), Ordering::Relaxed);
                        }
                    }
                    std::future::pending::<()>().await;
                })
            })
            .collect();
        Self {
            counts,
            last_event,
            tasks,
        }
    }

    fn snapshot(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

async fn creates(
    server: &Server,
    transport: &'static str,
    list: i64,
    p: Params,
    receivers: Option<&Receivers>,
) -> Result<Outcome> {
    let addr = server.addr;
    let before = receivers.map(Receivers::snapshot);
    let cpu = CpuSample::take(server.pid());
    let start_ns = sys::now_ns();
    let start = Instant::now();
    let workers: Vec<_> = (0..p.writers)
        .map(|w| {
            // Writes split evenly, the first writers taking the remainder.
            let n = p.writes / p.writers + usize::from(w < p.writes % p.writers);
            tokio::spawn(async move {
                let mut ok = 0u64;
                let mut errors = 0u64;
                let mut micros = Vec::with_capacity(n);
                match transport {
                    "ws" => {
                        let mut ws = client::ws_connect(addr, "/ws", w, 4096).await?;
                        for i in 0..n {
                            let frame = format!(
                                r#"{{"stream":"tasks","payload":{{"action":"create","request_id":{i},"data":{{"text":"w{w}-{i}","list_id":{list}}}}}}}"#
                            );
                            let started = Instant::now();
                            let reply = client::ws_request(&mut ws, frame).await?;
                            micros.push(started.elapsed().as_micros() as u32);
                            if reply.contains(r#""response_status":201"#) {
                                ok += 1;
                            } else {
                                errors += 1;
                            }
                        }
                    }
                    _ => {
                        let mut http = Http::connect(addr).await?;
                        for i in 0..n {
                            let body = format!(r#"{{"text":"w{w}-{i}","list_id":{list}}}"#);
                            let started = Instant::now();
                            let (status, _) = http.post("/api/tasks/", body).await?;
                            micros.push(started.elapsed().as_micros() as u32);
                            if status == 201 {
                                ok += 1;
                            } else {
                                errors += 1;
                            }
                        }
                    }
                }
                Ok::<_, String>((ok, errors, micros))
            })
        })
        .collect();
    let (mut ok, mut errors, mut micros) = (0, 0, Vec::new());
    for worker in workers {
        let (o, e, m) = worker.await.map_err(|e| e.to_string())??;
        ok += o;
        errors += e;
        micros.extend(m);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut cpu_use = cpu.cores_since(server.pid());

    let subs = receivers.map_or(0, |r| r.counts.len());
    let expected = ok * subs as u64;
    let (mut delivered, mut missing, mut subscribers_missing_events, mut all_delivered_s) =
        (0, 0, 0, 0.0);
    if let (Some(receivers), Some(before)) = (receivers, before) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let got = |now: &[u64]| -> u64 { now.iter().zip(&before).map(|(a, b)| a - b).sum() };
        while got(&receivers.snapshot()) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cpu_use = cpu.cores_since(server.pid());
        let now = receivers.snapshot();
        delivered = got(&now);
        missing = expected.saturating_sub(delivered);
        subscribers_missing_events = now
            .iter()
            .zip(&before)
            .filter(|(a, b)| *a - *b < ok)
            .count() as u64;
        all_delivered_s = receivers
            .last_event
            .load(Ordering::Relaxed)
            .saturating_sub(start_ns) as f64
            / 1e9;
    }
    Ok(Outcome {
        case: format!(
            "{} create",
            if transport == "ws" { "ws" } else { "http POST" }
        ),
        subs,
        ok,
        errors,
        per_s: ok as f64 / elapsed,
        latency: Latencies::from_micros(micros),
        expected_deliveries: expected,
        delivered,
        missing,
        subscribers_missing_events,
        all_delivered_s,
        cpu: cpu_use,
    })
}
