//! Every scenario at tiny sizes, through the real binary, so that the tool cannot rot. These assert
//! what must hold whatever the machine (every event delivered once, counts match, no errors), never
//! timings.

use std::process::Command;

use serde_json::Value;

/// Runs `rest-live-bench <args> --json <tmp>` and returns the JSON it wrote.
fn bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("out.json");
    let output = Command::new(env!("CARGO_BIN_EXE_rest-live-bench"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run rest-live-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "rest-live-bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("ratio"), "no table printed:\n{stdout}");
    let text = std::fs::read_to_string(&json).expect("the JSON file");
    serde_json::from_str(&text).expect("valid JSON")
}

fn cases(report: &Value) -> &Vec<Value> {
    report["results"]["cases"].as_array().expect("cases")
}

fn check_fanout(report: &Value, subs: u64, writes: u64) {
    assert_eq!(report["scenario"], "fanout");
    let cases = cases(report);
    assert_eq!(cases.len(), 2, "{report:#}");
    for case in cases {
        let server = &case["server"];
        assert_eq!(
            case["expected_deliveries"],
            subs * writes,
            "{server}: {case:#}"
        );
        assert_eq!(case["delivered"], subs * writes, "{server}: {case:#}");
        for zero in [
            "missing",
            "subscribers_missing_events",
            "out_of_order",
            "duplicates",
            "unexpected_frames",
            "closed_subscribers",
            "write_errors",
        ] {
            assert_eq!(case[zero], 0, "{server} {zero}: {case:#}");
        }
        assert_eq!(case["writes_sent"], writes, "{server}: {case:#}");
        assert_eq!(case["writes_ok"], writes, "{server}: {case:#}");
        assert_eq!(case["writer_stalled"], false, "{server}: {case:#}");
        assert_eq!(
            case["latency"]["samples"],
            subs * writes,
            "{server}: {case:#}"
        );
    }
    assert_eq!(cases[0]["server"], "bare");
    assert_eq!(cases[1]["server"], "rest-live");
}

/// Subscribers that never read do not keep the readers from every event.
#[test]
fn fanout_with_a_stalled_subscriber() {
    let report = bench(&[
        "fanout",
        "--subs",
        "4",
        "--stalled",
        "1",
        "--writes",
        "20",
        "--window",
        "4",
    ]);
    check_fanout(&report, 4, 20);
}

#[test]
fn fanout_as_fast_as_possible_one_task_per_socket() {
    let report = bench(&["fanout", "--subs", "5", "--writes", "20", "--window", "4"]);
    check_fanout(&report, 5, 20);
}

/// With a request id per subscriber, every subscriber gets an event frame of its own (its
/// request id is in it), and still every event, once, in order; in every round of `--repeat`.
#[test]
fn fanout_with_a_request_id_per_subscriber() {
    let report = bench(&[
        "fanout",
        "--subs",
        "6",
        "--writes",
        "15",
        "--window",
        "4",
        "--distinct-request-ids",
        "true",
        "--repeat",
        "2",
    ]);
    check_fanout(&report, 6, 15);
    let rounds = report["results"]["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2);
    for round in rounds {
        assert_eq!(round[1]["delivered"], 6 * 15, "{round}");
    }
    let ratio = &report["results"]["ratio"];
    assert!(ratio["min"].as_f64() <= ratio["median"].as_f64(), "{ratio}");
    assert!(ratio["median"].as_f64() <= ratio["max"].as_f64(), "{ratio}");
}

#[test]
fn fanout_fixed_rate_multiplexed_receivers() {
    let report = bench(&[
        "fanout",
        "--subs",
        "6",
        "--writes",
        "10",
        "--rate",
        "100",
        "--client-tasks",
        "2",
    ]);
    check_fanout(&report, 6, 10);
    assert_eq!(report["params"]["rate"], 100.0);
}

#[test]
fn idle_counts_every_connection() {
    let report = bench(&["idle", "--conns", "5", "--settle", "0.1"]);
    for case in cases(&report) {
        assert_eq!(case["connected"], 5, "{case:#}");
        assert_eq!(case["events_received"], 5, "{case:#}");
        assert!(
            case["server_rss_idle_kib"].as_u64().unwrap_or(0) > 0,
            "{case:#}"
        );
    }
    assert_eq!(cases(&report).len(), 2);
}

#[test]
fn reqrep_answers_every_request() {
    let report = bench(&[
        "reqrep",
        "--conns",
        "2",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--tasks",
        "5",
        "--limit",
        "3",
    ]);
    let cases = cases(&report);
    // WebSocket and HTTP retrieve and list, then the bare server's retrieve.
    assert_eq!(cases.len(), 5);
    assert_eq!(cases[4]["transport"], "bare ws", "{:#}", cases[4]);
    assert_eq!(cases[4]["op"], "retrieve", "{:#}", cases[4]);
    for case in cases {
        assert_eq!(case["errors"], 0, "{case:#}");
        assert!(case["requests"].as_u64().unwrap_or(0) > 0, "{case:#}");
        assert_eq!(case["latency"]["samples"], case["requests"], "{case:#}");
    }
}

#[test]
fn writes_create_and_deliver_everything() {
    let report = bench(&["writes", "--writes", "20", "--subs", "3", "--writers", "2"]);
    let cases = cases(&report);
    assert_eq!(cases.len(), 5, "{report:#}");
    assert_eq!(cases[0]["baseline"], true);
    for case in cases {
        assert_eq!(case["ok"], 20, "{case:#}");
        assert_eq!(case["errors"], 0, "{case:#}");
        assert_eq!(case["missing"], 0, "{case:#}");
        assert_eq!(case["subscribers_missing_events"], 0, "{case:#}");
        let subs = case["subs"].as_u64().unwrap_or(0);
        assert_eq!(case["delivered"], 20 * subs, "{case:#}");
    }
    assert_eq!(cases[3]["subs"], 3);
    assert_eq!(cases[4]["subs"], 3);
}
