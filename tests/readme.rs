//! README.md stays true: every Rust block in it is a slice of `examples/readme/` (which
//! `cargo test` compiles), and its quick start, run step by step against the example binary,
//! produces the replies and the event it prints.

mod common;
#[path = "common/markdown.rs"]
mod markdown;

use common::process::{ExampleProcess, temp_sqlite};
use markdown::{blocks, is_slice_of, read};
use rest_live::testing::WsClient;
use serde_json::Value;

#[test]
fn every_rust_block_of_the_readme_is_compiled_code() {
    let readme = read("README.md");
    let sources = [
        read("examples/readme/models.rs"),
        read("examples/readme/main.rs"),
    ];
    let blocks = blocks(&readme);
    let rust: Vec<&String> = blocks
        .iter()
        .filter(|(lang, _)| lang == "rust")
        .map(|(_, body)| body)
        .collect();
    assert!(rust.len() >= 5, "the README's Rust blocks: {}", rust.len());
    for body in rust {
        assert!(
            sources.iter().any(|source| is_slice_of(body, source)),
            "this Rust block of README.md is not in examples/readme/:\n{body}"
        );
    }
    for (lang, body) in &blocks {
        assert!(
            !lang.is_empty(),
            "a code block without a language (rustdoc would take it for Rust):\n{body}"
        );
    }
}

/// One `curl` line of the README: method, path and body.
#[derive(Debug)]
struct Curl {
    method: String,
    path: String,
    body: Option<String>,
}

/// Splits a shell line into words (single quotes only, which is all the README uses).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    assert!(!quoted, "an unclosed quote in {line}");
    if any {
        out.push(word);
    }
    out
}

fn curl(line: &str) -> Curl {
    let words = words(line);
    assert_eq!(words[0], "curl", "{line}");
    let mut method = None;
    let mut body = None;
    let mut path = None;
    let mut rest = words[1..].iter();
    while let Some(word) = rest.next() {
        match word.as_str() {
            "-X" => method = rest.next().cloned(),
            "-d" => body = rest.next().cloned(),
            "-H" => {
                rest.next();
            }
            flag if flag.starts_with('-') => {}
            url => {
                let path_start = url.find('/').expect("a URL with a path");
                assert!(url.starts_with("localhost:8000"), "{url}");
                path = Some(url[path_start..].to_owned());
            }
        }
    }
    Curl {
        method: method.unwrap_or_else(|| "GET".into()),
        path: path.expect("a URL"),
        body,
    }
}

/// Runs one block of `curl` lines; each must succeed.
async fn run(example: &ExampleProcess, http: &reqwest::Client, block: &str) {
    for line in block.lines().filter(|l| l.trim_start().starts_with("curl")) {
        let curl = curl(line);
        let mut request = http.request(
            curl.method.parse().expect("an HTTP method"),
            example.url(&curl.path),
        );
        if let Some(body) = curl.body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("the README's request");
        assert!(
            response.status().is_success(),
            "{line}: {}",
            response.status()
        );
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("a README JSON block: {e}\n{text}"))
}

#[tokio::test]
async fn the_quick_start_does_what_it_says() {
    let readme = read("README.md");
    let start = readme.find("## Try it").expect("the quick start");
    let end = start + readme[start..].find("\n## ").expect("the next section");
    let blocks = blocks(&readme[start..end]);
    let shell: Vec<&str> = blocks
        .iter()
        .filter(|(lang, body)| lang == "sh" && body.contains("curl"))
        .map(|(_, body)| body.as_str())
        .collect();
    let frames: Vec<Value> = blocks
        .iter()
        .filter(|(lang, _)| lang == "json")
        .map(|(_, body)| json(body))
        .collect();
    let [make, change] = shell[..] else {
        panic!("the quick start's two blocks of curl lines: {shell:?}")
    };
    let [subscribe, subscribed, event] = &frames[..] else {
        panic!("the quick start's three frames (subscribe, its reply, the event): {frames:?}")
    };

    // On a new database, as the README says.
    let (_dir, database_url) = temp_sqlite();
    let example = ExampleProcess::start_quiet("readme", &database_url, &[], &[]).await;
    let http = reqwest::Client::new();
    run(&example, &http, make).await;
    let mut ws = WsClient::connect(&example.ws_url()).await;
    assert_eq!(&ws.request(subscribe.clone()).await, subscribed);
    run(&example, &http, change).await;
    assert_eq!(&ws.recv_event().await, event);
}
