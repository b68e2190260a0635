//! `rest-live-bench`: rest-live measured against bare baselines in the same run, on loopback.
//!
//! ```text
//! cargo run --release -p rest-live-bench -- fanout --subs 1000 [--rate 100] [--json out.json]
//! cargo run --release -p rest-live-bench -- reqrep --conns 50 --duration 5
//! cargo run --release -p rest-live-bench -- idle --conns 10000
//! cargo run --release -p rest-live-bench -- writes --writes 1000 --subs 1000
//! cargo run --release -p rest-live-bench -- live --queries 100,1000,10000 --repeat 3
//! ```
//!
//! Every server runs as a child process (this same binary, `__serve <kind>`), so that its RSS and CPU
//! time are read from `/proc/<pid>` without the client's; client and server share the machine's
//! cores, which is the condition the targets are stated for. See BENCHMARKS.md.

#[path = "../../examples/todo/models.rs"]
#[allow(dead_code)]
mod models;

mod args;
mod client;
mod fanout;
mod idle;
mod live;
mod report;
mod reqrep;
mod server;
mod sys;
mod writes;

use std::process::ExitCode;

use args::Args;

/// Errors are reported, not handled: the tool stops with a message.
pub type Result<T, E = String> = std::result::Result<T, E>;

const USAGE: &str = "\
usage: rest-live-bench <scenario> [options]

scenarios (each bounded in time, loopback only):
  fanout   S subscribers of one group, one writer; deliveries/s, write->delivery latency
           --subs 1000  --writes <auto: ~2M deliveries>  --rate <writes/s: fixed-rate mode>
           --secs 10 (fixed-rate duration)  --window 64 (max writes ahead of the slowest subscriber)
           --client-tasks 0 (0: one task per socket; N: N tasks multiplexing the sockets)
           --drain 15 (seconds to wait for late deliveries)
           --stalled 0 (more subscribers that subscribe, then never read)
           --repeat 1 (rounds of both servers; the summary gives the spread of the ratio)
  reqrep   C sockets doing retrieve / list; the same over HTTP GET keep-alive
           --conns 50  --duration 5  --warmup 1  --tasks 100  --limit 25  --ops retrieve,list
  idle     N idle subscribed connections; server RSS per connection
           --conns 10000  --settle 1
  writes   creates/s over WebSocket and HTTP with 0 and S subscribers, vs a raw diesel loop
           --writes 1000  --subs 1000  --writers 4
  live     live queries: CPU per change with N unaffected queries vs none (indexed and scan);
           fan-out of one filtered query vs a group; a limit-10 window reordered vs a group
           --queries 100,1000,10000  --writes 2000  --subs 1000  --window-subs 100  --repeat 3
           --cases unaffected,fanout,window

common options:
  --json <file>               also write the results as JSON
  --bare-read-buffer 4096     tungstenite read buffer of the bare baseline server
                              (4096: rest-live's default `ws_read_buffer_bytes`)
  --client-read-buffer <bytes> tungstenite read buffer of the benchmark's client sockets (4096)
  --connect-concurrency 256   handshakes in flight while connecting many sockets
  --distinct-request-ids true each subscriber uses its own request id (rest-live then encodes
                              one event frame per subscriber; the bare server still shares one)
  --wait-quiet <secs>         first wait up to <secs> for the machine to be idle (shared machines)

environment:
  REST_LIVE_BENCH_WRAP=\"<command>\"   run each server under <command>, e.g.
      \"valgrind --tool=callgrind --callgrind-out-file=/tmp/callgrind.%p\"
  REST_LIVE_BENCH_WRAP_ONLY=rest-live|bare   wrap only that server
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some(server::CHILD_COMMAND) {
        return server::child_main(&argv[1..]);
    }
    if argv.is_empty() || argv.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return if argv.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match run(argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rest-live-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(argv: Vec<String>) -> Result<()> {
    let args = Args::parse(argv)?;
    let nofile = sys::raise_nofile_limit();
    let quiet_deadline = std::time::Instant::now()
        + std::time::Duration::from_secs_f64(args.get("wait-quiet", 0.0)?);
    let mut background = sys::background_load(std::time::Duration::from_millis(500));
    let mut waited = 0u32;
    while background > 0.15 && std::time::Instant::now() < quiet_deadline {
        if waited.is_multiple_of(30) {
            eprintln!("waiting for a quiet machine ({background:.2} cores busy)");
        }
        waited += 1;
        background = sys::background_load(std::time::Duration::from_secs(2));
    }
    if background > 0.25 {
        eprintln!(
            "warning: the machine is already busy ({background:.2} cores in use before the run): figures will be low and noisy"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let mut report = runtime.block_on(async {
        match args.scenario.as_str() {
            "fanout" => fanout::run(&args).await,
            "reqrep" => reqrep::run(&args).await,
            "idle" => idle::run(&args).await,
            "writes" => writes::run(&args).await,
            "live" => live::run(&args).await,
            other => Err(format!("unknown scenario {other:?}\n\n{USAGE}")),
        }
    })?;
    report.machine = sys::machine(nofile);
    report.machine["background_load_cores"] = serde_json::json!(report::round3(background));
    report.print();
    if let Some(path) = args.json_path() {
        std::fs::write(&path, report.to_json_string())
            .map_err(|e| format!("writing {path}: {e}"))?;
        println!("\nJSON written to {path}");
    }
    Ok(())
}
