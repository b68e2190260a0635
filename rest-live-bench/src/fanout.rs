//! `fanout`: S subscribers of one group, one writer. Each write patches one task's `text` to
//! `"<index>:<send time in ns>"`; every subscriber reads it back from its event, which gives the
//! write→delivery latency and checks that every subscriber got every event, once, in order.
//!
//! As fast as possible, the writer stays at most `window` writes ahead of the slowest subscriber
//! (no queue can overflow, so nothing is dropped and the rate measured is sustainable); with
//! `--rate` it writes on a fixed schedule whatever happens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::Result;
use crate::args::{Args, Common};
use crate::client::{self, Ws};
use crate::report::{self, Latencies, Report, Table};
use crate::server::{Kind, Server};
use crate::sys::{self, Cpu, CpuSample};

/// Largest subscribers × writes (one 4-byte slot each).
const MAX_SLOTS: usize = 100_000_000;

#[derive(Clone, Copy)]
pub struct Params {
    pub subs: usize,
    pub writes: usize,
    pub rate: Option<f64>,
    pub window: usize,
    pub client_tasks: usize,
    pub drain: Duration,
    /// Subscribers beyond `subs` that subscribe, then never read (with a small kernel receive
    /// buffer): the others' deliveries/s should not suffer, and the server's memory stays
    /// bounded (it closes them with 4008 once their socket and queue are full).
    pub stalled: usize,
    /// What each rest-live subscriber subscribes with: `client::subscribe_frame` (a group) or
    /// `client::query_frame` (a live query of the same tasks).
    pub subscribe: fn(i64, usize, bool) -> String,
}

pub async fn run(args: &Args) -> Result<Report> {
    let common = args.common()?;
    let subs: usize = args.get("subs", 1000)?;
    let rate: Option<f64> = args.opt("rate")?;
    let secs: f64 = args.get("secs", 10.0)?;
    let writes = match (args.opt::<usize>("writes")?, rate) {
        (Some(w), _) => w,
        (None, Some(r)) => (r * secs).round() as usize,
        // About two million deliveries: a few seconds per case.
        (None, None) => (2_000_000 / subs.max(1)).clamp(20, 2000),
    };
    let p = Params {
        subs,
        writes,
        rate: rate.filter(|r| *r > 0.0),
        window: args.get("window", 64usize)?.max(1),
        client_tasks: args.get("client-tasks", 0)?,
        drain: Duration::from_secs_f64(args.get("drain", 15.0)?),
        stalled: args.get("stalled", 0)?,
        subscribe: client::subscribe_frame,
    };
    if subs == 0 || writes == 0 {
        return Err("--subs and --writes must be at least 1".into());
    }
    if subs.saturating_mul(writes) > MAX_SLOTS {
        return Err(format!(
            "subs × writes = {} is above {MAX_SLOTS}: lower --writes",
            subs * writes
        ));
    }
    let mode = match p.rate {
        Some(r) => format!("fixed rate {r} writes/s"),
        None => format!("as fast as possible, window {}", p.window),
    };
    eprintln!(
        "fanout: {subs} subscribers (and {} that stop reading), {writes} writes, {mode}",
        p.stalled
    );

    // Fan-out throughput varies a lot between runs of the same build (how many frames each socket
    // write carries settles differently each time), so rounds can be repeated: each round runs
    // both servers afresh, and the summary gives the spread of the per-round ratios.
    let repeat: usize = args.get("repeat", 1usize)?.max(1);
    let mut rounds = Vec::with_capacity(repeat);
    for round in 1..=repeat {
        let bare = {
            let server = Server::start(Kind::Bare, &common).await?;
            phase(&server, 1, 1, p, &common).await?
        };
        eprintln!(
            "  round {round}: bare: {:.0} deliveries/s",
            bare.deliveries_per_s
        );
        let rest_live = {
            let server = Server::start(Kind::RestLive, &common).await?;
            let (list, task) = client::create_list_and_task(server.addr, "0:0").await?;
            phase(&server, list, task, p, &common).await?
        };
        eprintln!(
            "  round {round}: rest-live: {:.0} deliveries/s",
            rest_live.deliveries_per_s
        );
        rounds.push((bare, rest_live));
    }

    let mut report = Report::new(
        "fanout",
        json!({
            "subs": p.subs, "writes": p.writes, "rate": p.rate, "window": p.window,
            "client_tasks": p.client_tasks, "drain_s": p.drain.as_secs_f64(), "options": args.options(),
        }),
    );
    let mut table = Table::new(
        format!("fanout: {subs} subscribers in one group, {writes} writes ({mode})"),
        vec![
            "server",
            "delivered",
            "missing",
            "closed",
            "writes/s",
            "deliveries/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "srv CPU",
            "cli CPU",
            "other CPU",
            "ratio",
        ],
    );
    for (round, (bare, rest_live)) in rounds.iter().enumerate() {
        let label = |name: &str| {
            if repeat > 1 {
                format!("{name} #{}", round + 1)
            } else {
                name.to_owned()
            }
        };
        for (name, o) in [
            (label("bare (baseline)"), bare),
            (label("rest-live"), rest_live),
        ] {
            let mut row = vec![
                name,
                o.delivered.to_string(),
                o.missing.to_string(),
                o.closed.to_string(),
                report::rate(o.writes_per_s),
                report::rate(o.deliveries_per_s),
            ];
            row.extend(report::latency_cells(&o.latency));
            row.extend(report::cpu_cells(&o.cpu));
            row.push(report::x(report::ratio(
                o.deliveries_per_s,
                bare.deliveries_per_s,
            )));
            table.row(row);
        }
    }
    report.tables.push(table);
    report.notes.push(
        "ratio = deliveries/s ÷ the bare baseline's; CPU in cores (1.00 = one core busy) over the run"
            .into(),
    );
    let mut ratios: Vec<f64> = rounds
        .iter()
        .map(|(bare, rest_live)| report::ratio(rest_live.deliveries_per_s, bare.deliveries_per_s))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    if repeat > 1 {
        report.notes.push(format!(
            "over {repeat} rounds: ratio min {:.2}x, median {median:.2}x, max {:.2}x",
            ratios[0],
            ratios[ratios.len() - 1]
        ));
    }
    if p.rate.is_some() {
        for (round, (bare, rest_live)) in rounds.iter().enumerate() {
            report.notes.push(format!(
                "round {}: p99 ratio rest-live/bare: {:.2}x; target p99 <= 20 ms at 10,000 subscribers and 100 writes/s",
                round + 1,
                report::ratio(rest_live.latency.ms(0.99), bare.latency.ms(0.99))
            ));
        }
    } else {
        report
            .notes
            .push("target: rest-live deliveries/s >= 0.7 x bare".into());
    }
    for (bare, rest_live) in &rounds {
        for (name, o) in [("bare", bare), ("rest-live", rest_live)] {
            if p.stalled > 0 {
                report.notes.push(format!(
                    "{name}, {} stalled: {} server 4008 closes; server RSS {} KiB after subscribing, {} KiB at the end",
                    p.stalled, o.slow_consumer_closes, o.server_rss_kib, o.server_rss_end_kib
                ));
            }
            if o.missing > 0 || o.out_of_order > 0 || o.bad_frames > 0 || o.write_errors > 0 {
                report.notes.push(format!(
                    "{name}: {} missing, {} closed subscribers ({} server 4008 closes), {} out of order, {} duplicates, {} unexpected frames, {} failed writes",
                    o.missing, o.closed, o.slow_consumer_closes, o.out_of_order, o.duplicates, o.bad_frames, o.write_errors
                ));
            }
        }
    }
    let round_json = |(bare, rest_live): &(Outcome, Outcome)| {
        json!([
            bare.json("bare", true, bare),
            rest_live.json("rest-live", false, bare)
        ])
    };
    report.results = json!({
        // The first round, as before `--repeat` existed; every round under "rounds".
        "cases": round_json(&rounds[0]),
        "rounds": rounds.iter().map(round_json).collect::<Vec<_>>(),
        "ratio": { "min": ratios[0], "median": median, "max": ratios[ratios.len() - 1] },
    });
    Ok(report)
}

/// One server's run.
#[derive(Debug)]
pub struct Outcome {
    pub subs: usize,
    pub writes: usize,
    pub expected: u64,
    pub delivered: u64,
    pub missing: u64,
    pub subscribers_missing_events: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub bad_frames: u64,
    pub closed: u64,
    pub slow_consumer_closes: usize,
    pub writes_sent: u64,
    pub writes_ok: u64,
    pub write_errors: u64,
    pub writer_stalled: bool,
    pub connect_s: f64,
    pub send_s: f64,
    pub elapsed_s: f64,
    pub writes_per_s: f64,
    pub deliveries_per_s: f64,
    pub latency: Latencies,
    pub cpu: Cpu,
    pub server_rss_kib: u64,
    /// The server's RSS once every write was delivered (or the drain ended).
    pub server_rss_end_kib: u64,
}

impl Outcome {
    fn json(&self, server: &str, baseline: bool, base: &Outcome) -> Value {
        json!({
            "server": server,
            "baseline": baseline,
            "subs": self.subs,
            "writes": self.writes,
            "expected_deliveries": self.expected,
            "delivered": self.delivered,
            "missing": self.missing,
            "subscribers_missing_events": self.subscribers_missing_events,
            "out_of_order": self.out_of_order,
            "duplicates": self.duplicates,
            "unexpected_frames": self.bad_frames,
            "closed_subscribers": self.closed,
            "server_slow_consumer_closes": self.slow_consumer_closes,
            "writes_sent": self.writes_sent,
            "writes_ok": self.writes_ok,
            "write_errors": self.write_errors,
            "writer_stalled": self.writer_stalled,
            "connect_s": report::round3(self.connect_s),
            "send_s": report::round3(self.send_s),
            "elapsed_s": report::round3(self.elapsed_s),
            "writes_per_s": self.writes_per_s.round(),
            "deliveries_per_s": self.deliveries_per_s.round(),
            "latency": self.latency.json(),
            "cpu_cores": report::cpu_json(&self.cpu),
            "server_rss_kib": self.server_rss_kib,
            "server_rss_end_kib": self.server_rss_end_kib,
            "ratio_deliveries_per_s": report::ratio(self.deliveries_per_s, base.deliveries_per_s),
            "ratio_p99": report::ratio(self.latency.ms(0.99), base.latency.ms(0.99)),
        })
    }
}

/// What every receiver records, lock-free: one slot per (subscriber, event).
struct Shared {
    subs: usize,
    writes: usize,
    /// Latency in µs + 1 of each (subscriber, event); 0 = not received.
    slots: Vec<AtomicU32>,
    /// Send time of each event (ns since the epoch).
    sent_ns: Vec<AtomicU64>,
    /// Deliveries of each event so far.
    per_event: Vec<AtomicU32>,
    /// Events delivered to every subscriber.
    complete: AtomicUsize,
    /// An event reached every subscriber (the writer's window moves).
    window: Notify,
    /// Every event reached every subscriber.
    done: Notify,
    out_of_order: AtomicU64,
    duplicates: AtomicU64,
    bad_frames: AtomicU64,
    closed: AtomicU64,
}

/// A receiver's view of one subscriber socket.
#[derive(Clone, Copy, Default)]
struct SubState {
    last: Option<usize>,
    closed: bool,
}

impl Shared {
    fn new(subs: usize, writes: usize) -> Self {
        Self {
            subs,
            writes,
            slots: (0..subs * writes).map(|_| AtomicU32::new(0)).collect(),
            sent_ns: (0..writes).map(|_| AtomicU64::new(0)).collect(),
            per_event: (0..writes).map(|_| AtomicU32::new(0)).collect(),
            complete: AtomicUsize::new(0),
            window: Notify::new(),
            done: Notify::new(),
            out_of_order: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    fn on_message(
        &self,
        sub: usize,
        state: &mut SubState,
        message: Result<Message, tungstenite::Error>,
    ) -> bool {
        match message {
            Ok(Message::Text(text)) => {
                self.on_event(sub, state, text.as_str(), sys::now_ns());
                true
            }
            Ok(Message::Close(_)) | Err(_) => {
                if !state.closed {
                    state.closed = true;
                    self.closed.fetch_add(1, Ordering::Relaxed);
                }
                false
            }
            Ok(_) => true,
        }
    }

    fn on_event(&self, sub: usize, state: &mut SubState, text: &str, now: u64) {
        let Some((idx, sent)) = parse_event(text).filter(|(i, _)| *i < self.writes) else {
            self.bad_frames.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if state.last.is_some_and(|last| idx <= last) {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        state.last = Some(idx);
        let micros = (now.saturating_sub(sent) / 1000).min(u64::from(u32::MAX - 1)) as u32;
        if self.slots[sub * self.writes + idx].swap(micros + 1, Ordering::Relaxed) != 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.per_event[idx].fetch_add(1, Ordering::AcqRel) as usize + 1 == self.subs {
            self.window.notify_one();
            if self.complete.fetch_add(1, Ordering::AcqRel) + 1 == self.writes {
                self.done.notify_one();
            }
        }
    }

    /// Waits until event `idx` has reached every subscriber; false after `patience` without it.
    async fn wait_complete(&self, idx: usize, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.window.notified();
            if self.per_event[idx].load(Ordering::Acquire) as usize >= self.subs {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.per_event[idx].load(Ordering::Acquire) as usize >= self.subs;
            }
        }
    }
}

const EVENT_PREFIX: &str = r#"{"stream":"tasks","payload":{"action":"update""#;

/// `(index, send time)` from an update event whose task text is `"<index>:<ns>"`.
fn parse_event(text: &str) -> Option<(usize, u64)> {
    if !text.starts_with(EVENT_PREFIX) {
        return None;
    }
    let start = text.find(r#""text":""#)? + 8;
    let rest = &text[start..];
    let (idx, rest) = rest.split_once(':')?;
    let end = rest.find('"')?;
    Some((idx.parse().ok()?, rest[..end].parse().ok()?))
}

/// The frame of write `i`: a patch to rest-live, or for the bare server the event itself, as
/// rest-live would send it.
fn write_frame(bare: bool, list: i64, task: i64, i: usize, now: u64) -> String {
    if bare {
        format!(
            r#"{{"stream":"tasks","payload":{{"action":"update","request_id":"s","response_status":200,"errors":[],"seq":{seq},"data":{{"id":{task},"text":"{i}:{now}","done":false,"list_id":{list}}}}}}}"#,
            seq = i + 1
        )
    } else {
        format!(
            r#"{{"stream":"tasks","payload":{{"action":"patch","request_id":{i},"pk":{task},"data":{{"text":"{i}:{now}"}}}}}}"#
        )
    }
}

/// Runs one fan-out against `server`: subscribes, writes, waits for the deliveries, measures.
pub async fn phase(
    server: &Server,
    list: i64,
    task: i64,
    p: Params,
    common: &Common,
) -> Result<Outcome> {
    let bare = server.kind == Kind::Bare;
    let connect_start = Instant::now();
    let sockets =
        client::subscribers_with(server.addr, "/ws", p.subs, list, common, p.subscribe).await?;
    let connect_s = connect_start.elapsed().as_secs_f64();
    // Subscribed, and never read from again: held open until the phase ends.
    let mut stalled = Vec::with_capacity(p.stalled);
    for i in 0..p.stalled {
        let mut ws = client::ws_connect_with(
            server.addr,
            "/ws",
            p.subs + 1 + i,
            common.client_read_buffer,
            Some(4096),
        )
        .await?;
        let reply = client::ws_request(&mut ws, (p.subscribe)(list, p.subs + 1 + i, false)).await?;
        if !reply.contains(r#""response_status":201"#) {
            return Err(format!("subscribe refused: {reply}"));
        }
        stalled.push(ws);
    }
    let writer_path = if bare { "/pub" } else { "/ws" };
    let writer =
        client::ws_connect(server.addr, writer_path, p.subs, common.client_read_buffer).await?;
    let server_rss_kib = server.rss_kib();

    let shared = Arc::new(Shared::new(p.subs, p.writes));
    let receivers = spawn_receivers(sockets, &shared, p.client_tasks);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let cpu = CpuSample::take(server.pid());
    let mut writer_task = tokio::spawn(write_all(writer, bare, list, task, shared.clone(), p));
    let mut writer: Option<WriterOutcome> = None;
    let mut writer_end = Instant::now();
    loop {
        if shared.complete.load(Ordering::Acquire) == p.writes && writer.is_some() {
            break;
        }
        if writer.is_some() && writer_end.elapsed() > p.drain {
            break;
        }
        let done = shared.done.notified();
        tokio::select! {
            finished = &mut writer_task, if writer.is_none() => {
                writer = Some(finished.map_err(|e| e.to_string())??);
                writer_end = Instant::now();
            }
            _ = done => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let cpu = cpu.cores_since(server.pid());
    let server_rss_end_kib = server.rss_kib();
    drop(stalled);
    for receiver in &receivers {
        receiver.abort();
    }
    let writer = writer.ok_or("the writer did not finish")?;

    let mut samples = Vec::with_capacity(p.subs * p.writes);
    let mut last_arrival = 0u64;
    let mut subscribers_missing_events = 0;
    for sub in 0..p.subs {
        let mut complete = true;
        for idx in 0..p.writes {
            let v = shared.slots[sub * p.writes + idx].load(Ordering::Relaxed);
            if v == 0 {
                complete = false;
                continue;
            }
            samples.push(v - 1);
            let sent = shared.sent_ns[idx].load(Ordering::Relaxed);
            last_arrival = last_arrival.max(sent + u64::from(v - 1) * 1000);
        }
        if !complete {
            subscribers_missing_events += 1;
        }
    }
    let delivered = samples.len() as u64;
    let expected = (p.subs * p.writes) as u64;
    let first_sent = shared.sent_ns[0].load(Ordering::Relaxed);
    let elapsed_s = (last_arrival.saturating_sub(first_sent)) as f64 / 1e9;
    let rate = |n: u64| {
        if elapsed_s > 0.0 {
            n as f64 / elapsed_s
        } else {
            0.0
        }
    };
    Ok(Outcome {
        subs: p.subs,
        writes: p.writes,
        expected,
        delivered,
        missing: expected - delivered,
        subscribers_missing_events,
        out_of_order: shared.out_of_order.load(Ordering::Relaxed),
        duplicates: shared.duplicates.load(Ordering::Relaxed),
        bad_frames: shared.bad_frames.load(Ordering::Relaxed),
        closed: shared.closed.load(Ordering::Relaxed),
        slow_consumer_closes: server.log_count("4008"),
        writes_sent: writer.sent,
        writes_ok: writer.ok,
        write_errors: writer.failed,
        writer_stalled: writer.stalled,
        connect_s,
        send_s: writer.send_s,
        elapsed_s,
        writes_per_s: rate(shared.complete.load(Ordering::Relaxed) as u64),
        deliveries_per_s: rate(delivered),
        latency: Latencies::from_micros(samples),
        cpu,
        server_rss_kib,
        server_rss_end_kib,
    })
}

/// One task per socket (`tasks == 0`), or `tasks` tasks each multiplexing its share of sockets.
fn spawn_receivers(sockets: Vec<Ws>, shared: &Arc<Shared>, tasks: usize) -> Vec<JoinHandle<()>> {
    if tasks == 0 {
        return sockets
            .into_iter()
            .enumerate()
            .map(|(sub, mut ws)| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut state = SubState::default();
                    while let Some(message) = ws.next().await {
                        if !shared.on_message(sub, &mut state, message) {
                            break;
                        }
                    }
                    // Keep the socket open until the run is over.
                    std::future::pending::<()>().await;
                })
            })
            .collect();
    }
    let mut groups: Vec<Vec<(usize, Ws)>> = (0..tasks).map(|_| Vec::new()).collect();
    for (sub, ws) in sockets.into_iter().enumerate() {
        groups[sub % tasks].push((sub, ws));
    }
    groups
        .into_iter()
        .map(|group| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let subs: Vec<usize> = group.iter().map(|(sub, _)| *sub).collect();
                let mut states = vec![SubState::default(); subs.len()];
                let mut all = futures_util::stream::select_all(
                    group
                        .into_iter()
                        .enumerate()
                        .map(|(k, (_, ws))| ws.map(move |m| (k, m))),
                );
                while let Some((k, message)) = all.next().await {
                    shared.on_message(subs[k], &mut states[k], message);
                }
                std::future::pending::<()>().await;
            })
        })
        .collect()
}

struct WriterOutcome {
    sent: u64,
    ok: u64,
    failed: u64,
    stalled: bool,
    send_s: f64,
}

async fn write_all(
    ws: Ws,
    bare: bool,
    list: i64,
    task: i64,
    shared: Arc<Shared>,
    p: Params,
) -> Result<WriterOutcome> {
    let (mut sink, mut stream) = ws.split();
    let writes = p.writes as u64;
    let replies = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u64, 0u64);
        if bare {
            return (0, 0);
        }
        while ok + failed < writes {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    if t.as_str().contains(r#""response_status":200"#) {
                        ok += 1;
                    } else {
                        if failed == 0 {
                            eprintln!("  a write failed: {}", t.as_str());
                        }
                        failed += 1;
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        (ok, failed)
    });
    let start = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut stalled = false;
    for i in 0..p.writes {
        match p.rate {
            Some(rate) => {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
            }
            None if i >= p.window && !shared.wait_complete(i - p.window, p.drain).await => {
                stalled = true;
                break;
            }
            None => {}
        }
        let now = sys::now_ns();
        shared.sent_ns[i].store(now, Ordering::Relaxed);
        sink.send(Message::text(write_frame(bare, list, task, i, now)))
            .await
            .map_err(|e| format!("writer: {e}"))?;
        sent += 1;
    }
    let send_s = start.elapsed().as_secs_f64();
    let (ok, failed) = if bare {
        (sent, 0)
    } else {
        match tokio::time::timeout(p.drain, replies).await {
            Ok(Ok(counts)) => counts,
            _ => (0, 0),
        }
    };
    Ok(WriterOutcome {
        sent,
        ok,
        failed,
        stalled,
        send_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_writes() {
        let frame = write_frame(true, 3, 7, 41, 1_700_000_000_123_456_789);
        assert_eq!(parse_event(&frame), Some((41, 1_700_000_000_123_456_789)));
        let rest_live = r#"{"stream":"tasks","payload":{"action":"update","request_id":"s","response_status":200,"errors":[],"seq":42,"data":{"id":7,"text":"5:99","done":false,"list_id":3}}}"#;
        assert_eq!(parse_event(rest_live), Some((5, 99)));
        assert_eq!(
            parse_event(r#"{"stream":"tasks","payload":{"action":"create"}}"#),
            None
        );
    }
}
