//! `reqrep`: C connections, each with one request in flight at a time, doing `retrieve` and `list`
//! over WebSocket, then the same reads as HTTP GETs over C keep-alive connections, on the same
//! server. Requests/s and latency; the HTTP figures are the baseline.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::Result;
use crate::args::{Args, Common};
use crate::client::{self, Http};
use crate::report::{self, Latencies, Report, Table};
use crate::server::{Kind, Server};
use crate::sys::{Cpu, CpuSample};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Ws,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Retrieve,
    List,
}

#[derive(Debug, Clone, Copy)]
struct Params {
    conns: usize,
    warmup: Duration,
    duration: Duration,
    limit: usize,
}

pub async fn run(args: &Args) -> Result<Report> {
    let common = args.common()?;
    let p = Params {
        conns: args.get("conns", 50usize)?.max(1),
        warmup: Duration::from_secs_f64(args.get("warmup", 1.0)?),
        duration: Duration::from_secs_f64(args.get("duration", 5.0)?),
        limit: args.get("limit", 25usize)?.max(1),
    };
    let tasks: usize = args.get("tasks", 100usize)?.max(1);
    let ops: String = args.get("ops", "retrieve,list".to_owned())?;
    eprintln!(
        "reqrep: {} connections, {:?} per case after {:?} of warm-up",
        p.conns, p.duration, p.warmup
    );
    let server = Server::start(Kind::RestLive, &common).await?;
    let (list, first) = client::create_list_and_task(server.addr, "task 0").await?;
    let mut ids = vec![first];
    let mut http = Http::connect(server.addr).await?;
    for i in 1..tasks {
        let body = json!({"text": format!("task {i}"), "list_id": list}).to_string();
        let (status, body) = http.post("/api/tasks/", body).await?;
        if status != 201 {
            return Err(format!("POST /api/tasks/: {status} {body:?}"));
        }
        ids.push(client::id_of(&body)?);
    }
    let ids: Arc<[i64]> = ids.into();

    let mut outcomes = Vec::new();
    for (op, transport) in [
        (Op::Retrieve, Transport::Ws),
        (Op::Retrieve, Transport::Http),
        (Op::List, Transport::Ws),
        (Op::List, Transport::Http),
    ] {
        let name = match op {
            Op::Retrieve => "retrieve",
            Op::List => "list",
        };
        if !ops.split(',').any(|o| o.trim() == name) {
            continue;
        }
        let o = phase(&server, transport, op, list, ids.clone(), p, &common).await?;
        eprintln!("  {} {}: {:.0} req/s", o.transport, o.op, o.per_s);
        outcomes.push(o);
    }
    // The bare baseline: the same retrieves, answered from the same database file by a
    // tokio-tungstenite server doing one prepared point read and a serde encode.
    if ops.split(',').any(|o| o.trim() == "retrieve") {
        let bare = Server::start_on(Kind::BareReqrep, &common, Some(server.database())).await?;
        let mut o = phase(
            &bare,
            Transport::Ws,
            Op::Retrieve,
            list,
            ids.clone(),
            p,
            &common,
        )
        .await?;
        o.transport = "bare ws";
        eprintln!("  {} {}: {:.0} req/s", o.transport, o.op, o.per_s);
        outcomes.push(o);
    }

    let mut report = Report::new(
        "reqrep",
        json!({
            "conns": p.conns, "warmup_s": p.warmup.as_secs_f64(), "duration_s": p.duration.as_secs_f64(),
            "tasks": tasks, "limit": p.limit, "options": args.options(),
        }),
    );
    let mut table = Table::new(
        format!(
            "reqrep: {} connections, one request in flight each, {:.1} s per case",
            p.conns,
            p.duration.as_secs_f64()
        ),
        vec![
            "case",
            "requests",
            "errors",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "srv CPU",
            "cli CPU",
            "other CPU",
            "ratio",
        ],
    );
    let mut cases = Vec::new();
    for o in &outcomes {
        let base = outcomes
            .iter()
            .find(|b| b.op == o.op && b.transport == "http")
            .map_or(0.0, |b| b.per_s);
        let ratio = report::ratio(o.per_s, base);
        let mut row = vec![
            format!(
                "{} {}{}",
                o.transport,
                o.op,
                if o.transport == "http" {
                    " (baseline)"
                } else {
                    ""
                }
            ),
            o.requests.to_string(),
            o.errors.to_string(),
            report::rate(o.per_s),
        ];
        row.extend(report::latency_cells(&o.latency));
        row.extend(report::cpu_cells(&o.cpu));
        row.push(report::x(ratio));
        table.row(row);
        let mut case = o.json();
        case["ratio_to_http"] = json!(ratio);
        if let Some(error) = &o.first_error {
            report.notes.push(format!(
                "{} {}: {} errors, the first: {error}",
                o.transport, o.op, o.errors
            ));
        }
        cases.push(case);
    }
    report.tables.push(table);
    report.notes.push(format!(
        "ratio = WebSocket req/s ÷ HTTP GET req/s of the same read (GET /api/tasks/<pk>/, GET /api/tasks/?list_id=..&limit={}); target: WS retrieve >= 1.5 x HTTP GET",
        p.limit
    ));
    let per_s = |transport: &str| {
        outcomes
            .iter()
            .find(|o| o.op == "retrieve" && o.transport == transport)
            .map(|o| o.per_s)
    };
    if let (Some(ws), Some(bare)) = (per_s("ws"), per_s("bare ws")) {
        report.notes.push(format!(
            "ws retrieve ÷ bare ws retrieve (a tokio-tungstenite server doing the same point read on the same SQLite file, in place, and a serde encode): {}; target >= 0.5",
            report::x(report::ratio(ws, bare))
        ));
    }
    report.results = json!({ "cases": cases });
    Ok(report)
}

struct Outcome {
    transport: &'static str,
    op: &'static str,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    per_s: f64,
    latency: Latencies,
    cpu: Cpu,
}

impl Outcome {
    fn json(&self) -> Value {
        json!({
            "transport": self.transport,
            "op": self.op,
            "baseline": self.transport != "ws",
            "requests": self.requests,
            "errors": self.errors,
            "first_error": self.first_error,
            "requests_per_s": self.per_s.round(),
            "latency": self.latency.json(),
            "cpu_cores": report::cpu_json(&self.cpu),
        })
    }
}

/// What one worker measured.
#[derive(Default)]
struct Counts {
    requests: u64,
    errors: u64,
    micros: Vec<u32>,
    first_error: Option<String>,
}

impl Counts {
    fn record(
        &mut self,
        ok: bool,
        started: Instant,
        measure_from: Instant,
        reply: &dyn Fn() -> String,
    ) {
        if !ok && self.first_error.is_none() {
            self.first_error = Some(reply());
        }
        if started < measure_from {
            return;
        }
        if ok {
            self.requests += 1;
            self.micros
                .push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        } else {
            self.errors += 1;
        }
    }
}

enum Conn {
    Ws(Box<client::Ws>),
    Http(Http),
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    server: &Server,
    transport: Transport,
    op: Op,
    list: i64,
    ids: Arc<[i64]>,
    p: Params,
    common: &Common,
) -> Result<Outcome> {
    let addr = server.addr;
    let read_buffer = common.client_read_buffer;
    let conns = client::open_many(p.conns, common.connect_concurrency, move |i| async move {
        Ok(match transport {
            Transport::Ws => Conn::Ws(Box::new(
                client::ws_connect(addr, "/ws", i, read_buffer).await?,
            )),
            Transport::Http => Conn::Http(Http::connect(addr).await?),
        })
    })
    .await?;
    let measure_from = Instant::now() + p.warmup;
    let until = measure_from + p.duration;
    let limit = p.limit;
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(w, conn)| {
            let ids = ids.clone();
            tokio::spawn(async move {
                let mut counts = Counts::default();
                let mut n = w * 7;
                let result = match conn {
                    Conn::Ws(mut ws) => loop {
                        let started = Instant::now();
                        if started >= until {
                            break Ok(());
                        }
                        n += 1;
                        let frame = match op {
                            Op::Retrieve => format!(
                                r#"{{"stream":"tasks","payload":{{"action":"retrieve","request_id":{n},"pk":{}}}}}"#,
                                ids[n % ids.len()]
                            ),
                            Op::List => format!(
                                r#"{{"stream":"tasks","payload":{{"action":"list","request_id":{n},"data":{{"list_id":{list}}},"limit":{limit}}}}}"#
                            ),
                        };
                        if let Err(e) = ws.send(Message::text(frame)).await {
                            break Err(e.to_string());
                        }
                        match ws.next().await {
                            Some(Ok(Message::Text(t))) => counts.record(
                                t.as_str().contains(r#""response_status":200"#),
                                started,
                                measure_from,
                                &|| t.as_str().to_owned(),
                            ),
                            other => break Err(format!("websocket: {other:?}")),
                        }
                    },
                    Conn::Http(mut http) => loop {
                        let started = Instant::now();
                        if started >= until {
                            break Ok(());
                        }
                        n += 1;
                        let path = match op {
                            Op::Retrieve => format!("/api/tasks/{}/", ids[n % ids.len()]),
                            Op::List => format!("/api/tasks/?list_id={list}&limit={limit}"),
                        };
                        match http.get(&path).await {
                            Ok((status, body)) => counts.record(
                                status == 200,
                                started,
                                measure_from,
                                &|| format!("{status} {}", String::from_utf8_lossy(&body)),
                            ),
                            Err(e) => break Err(e),
                        }
                    },
                };
                result.map(|()| counts)
            })
        })
        .collect();
    tokio::time::sleep_until(measure_from).await;
    let cpu = CpuSample::take(server.pid());
    tokio::time::sleep_until(until).await;
    let cpu = cpu.cores_since(server.pid());
    let mut total = Counts::default();
    for worker in workers {
        let counts = worker.await.map_err(|e| e.to_string())??;
        total.requests += counts.requests;
        total.errors += counts.errors;
        total.micros.extend(counts.micros);
        if total.first_error.is_none() {
            total.first_error = counts.first_error;
        }
    }
    Ok(Outcome {
        transport: match transport {
            Transport::Ws => "ws",
            Transport::Http => "http",
        },
        op: match op {
            Op::Retrieve => "retrieve",
            Op::List => "list",
        },
        requests: total.requests,
        errors: total.errors,
        first_error: total.first_error,
        per_s: total.requests as f64 / p.duration.as_secs_f64(),
        latency: Latencies::from_micros(total.micros),
        cpu,
    })
}
