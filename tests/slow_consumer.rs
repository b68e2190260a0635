//! Issue 3, point 5 and acceptance: a client that stops reading is closed with 4008 once its
//! bounded outgoing queue overflows, while 20 reading clients of the same group receive every
//! event; the slow client then resumes with `since` and receives exactly the rest.
//!
//! The server's close is only visible through the socket, so the test produces a fixed amount of
//! events: one and a half times what the slow client's TCP connection can hold, which is the
//! server's kernel send buffer (Linux autotunes it up to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by
//! default, read from /proc) plus the client's receive buffer, made small here. Only once those are
//! full does the server's writer block, and the queue overflow. Events are produced in batches no
//! larger than the readers' queue, and the next batch only after every reader has received the
//! previous one, so the readers (whose queue is just as small) are never the slow ones.

mod common;

use std::time::Duration;

use common::models::Task;
use rest_live::testing::{Closed, Received, TestServer, WsClient};
use serde_json::{Value, json};
use tokio::sync::watch;

const READERS: usize = 20;
/// The outgoing queue of every connection, in frames.
const QUEUE: usize = 8;
/// Rows per bulk create: at most the queue, so that a reader never overflows.
const BATCH: usize = 8;
/// The slow client's kernel receive buffer (the kernel doubles it and keeps a minimum).
const SLOW_RECEIVE_BUFFER: u32 = 4096;
/// Task text: 130 four-byte characters (max_length counts characters), so each event is about
/// 600 bytes and fewer events fill the buffers.
const TEXT_CHARS: usize = 130;
const EVENT_BYTES: usize = 4 * TEXT_CHARS + 80;

/// The most a TCP connection on this machine can hold in flight: the largest autotuned send
/// buffer (`net.ipv4.tcp_wmem`, third field) and the slow client's receive buffer, with slack.
fn tcp_capacity() -> usize {
    let send_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(8 << 20);
    send_max + 4 * SLOW_RECEIVE_BUFFER as usize + (256 << 10)
}

fn subscribe(request_id: &str, list: i64, since: Option<i64>) -> Value {
    let mut frame = json!({"stream": "tasks", "payload": {"action": "subscribe",
        "request_id": request_id, "group": {"list_id": list}}});
    if let Some(since) = since {
        frame["payload"]["since"] = json!(since);
    }
    frame
}

/// A reader: subscribes, then receives `total` events of the group, publishing its progress.
async fn reader(
    url: String,
    list: i64,
    total: usize,
    subscribed: tokio::sync::oneshot::Sender<i64>,
    progress: watch::Sender<usize>,
) -> Vec<i64> {
    let mut ws = WsClient::connect(&url).await;
    let reply = ws.request(subscribe("r", list, None)).await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    let _ = subscribed.send(reply["payload"]["data"]["seq"].as_i64().expect("seq"));
    let mut seqs = Vec::with_capacity(total);
    while seqs.len() < total {
        let event = ws.recv_event().await;
        assert_eq!(event["payload"]["action"], "create", "{event}");
        assert_eq!(event["payload"]["request_id"], "r", "{event}");
        seqs.push(event["payload"]["seq"].as_i64().expect("seq"));
        progress.send_replace(seqs.len());
    }
    // Nothing more than what was produced.
    ws.expect_silence(Duration::from_millis(200)).await;
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_4008_while_20_readers_get_every_event() {
    // One and a half times what the connection can hold, in whole batches.
    let total = (3 * tcp_capacity() / 2 / EVENT_BYTES).div_ceil(BATCH) * BATCH;
    let server = TestServer::start(common::models::builder().configure(|c| {
        c.outgoing_queue = QUEUE;
        // Long enough that the close frame waits for the slow client however long the test takes
        // to produce and check the readers' events.
        c.close_grace = Duration::from_secs(300);
        c.requests_per_second = 0.0;
    }))
    .await;
    let url = format!("ws://{}{}", server.addr, server.app.config().ws_path);
    let list = common::create_list(&server, "busy").await;

    // The slow client subscribes, then never reads again (until the end).
    let mut slow = WsClient::connect_with_receive_buffer(&url, SLOW_RECEIVE_BUFFER).await;
    let reply = slow.request(subscribe("slow", list, None)).await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    let start = reply["payload"]["data"]["seq"].as_i64().expect("seq");

    let mut readers = Vec::new();
    let mut progress = Vec::new();
    for _ in 0..READERS {
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let (progress_tx, progress_rx) = watch::channel(0usize);
        readers.push(tokio::spawn(reader(
            url.clone(),
            list,
            total,
            subscribed_tx,
            progress_tx,
        )));
        assert_eq!(subscribed_rx.await.expect("reader subscribed"), start);
        progress.push(progress_rx);
    }

    // Produce, in batches, each only once every reader has all the events so far.
    let text = "🦀".repeat(TEXT_CHARS);
    let mut produced = 0;
    while produced < total {
        let n = BATCH.min(total - produced);
        let rows = (0..n)
            .map(|i| Task {
                id: 0,
                text: format!("{text} {}", produced + i),
                done: false,
                list_id: list as i32,
                owner: None,
                priority: 0,
                note: None,
            })
            .collect();
        let created = server.app.bulk_create(rows).await.expect("bulk create");
        assert_eq!(created.len(), n);
        produced += n;
        for p in &mut progress {
            let waited =
                tokio::time::timeout(Duration::from_secs(30), p.wait_for(|got| *got >= produced))
                    .await;
            assert!(
                matches!(waited, Ok(Ok(_))),
                "a reader fell behind at {produced}"
            );
        }
    }
    let head = start + total as i64;
    let every: Vec<i64> = (start + 1..=head).collect();
    for reader in readers {
        let seqs = reader.await.expect("reader");
        assert_eq!(seqs, every, "a reader received every event, in order, once");
    }

    // Now the slow client reads: a prefix of the events, then the close (4008).
    let mut seen = Vec::new();
    let closed = loop {
        match slow.recv_any(Duration::from_secs(60)).await {
            Some(Received::Event(event)) => {
                assert_eq!(event["payload"]["request_id"], "slow", "{event}");
                seen.push(event["payload"]["seq"].as_i64().expect("seq"));
            }
            Some(Received::Closed(closed)) => break closed,
            Some(Received::Reply(reply)) => panic!("an unexpected reply {reply}"),
            None => panic!(
                "no close after {} events: the slow client was never closed",
                seen.len()
            ),
        }
    };
    assert_eq!(closed, Closed::Code(4008));
    let last = seen.last().copied().unwrap_or(start);
    assert_eq!(
        seen,
        (start + 1..=last).collect::<Vec<_>>(),
        "the slow client got a prefix, without a gap"
    );
    assert!(
        last < head,
        "the server stopped queueing for the slow client ({} of {total} events sent)",
        seen.len()
    );
    eprintln!(
        "slow client: {} of {total} events (~{} KiB) before 4008; the rest held back",
        seen.len(),
        seen.len() * EVENT_BYTES / 1024
    );
    // After the close, the socket is over: the server keeps nothing for it.
    match slow.recv_any(Duration::from_secs(10)).await {
        Some(Received::Closed(_)) => {}
        other => panic!("after the close frame: {other:?}"),
    }

    // It resumes on a new socket from the last seq it saw, and gets exactly the rest.
    let mut resumed = server.ws().await;
    let reply = resumed.request(subscribe("slow", list, Some(last))).await;
    assert_eq!(reply["payload"]["response_status"], 201, "{reply}");
    assert_eq!(reply["payload"]["data"]["seq"], head);
    let mut rest = Vec::new();
    for _ in last..head {
        let event = resumed.recv_event().await;
        assert_eq!(event["payload"]["action"], "create", "{event}");
        rest.push(event["payload"]["seq"].as_i64().expect("seq"));
    }
    assert_eq!(rest, (last + 1..=head).collect::<Vec<_>>());
    resumed.expect_silence(Duration::from_millis(300)).await;
}
