//! A small `--key value` parser: every option is checked against the scenario's list before
//! anything runs, so a typo fails at once instead of after a long run.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::Result;

const COMMON: &[&str] = &[
    "json",
    "bare-read-buffer",
    "client-read-buffer",
    "connect-concurrency",
    "wait-quiet",
    "distinct-request-ids",
];

fn allowed(scenario: &str) -> Option<&'static [&'static str]> {
    Some(match scenario {
        "fanout" => &[
            "subs",
            "writes",
            "rate",
            "secs",
            "window",
            "client-tasks",
            "drain",
            "stalled",
            "repeat",
        ],
        "reqrep" => &["conns", "duration", "warmup", "tasks", "limit", "ops"],
        "idle" => &["conns", "settle"],
        "writes" => &["writes", "subs", "writers"],
        "live" => &[
            "queries",
            "writes",
            "subs",
            "window-subs",
            "repeat",
            "cases",
        ],
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub struct Args {
    pub scenario: String,
    options: BTreeMap<String, String>,
}

impl Args {
    pub fn parse(argv: Vec<String>) -> Result<Self> {
        let mut argv = argv.into_iter();
        let scenario = argv.next().ok_or("no scenario given")?;
        let allowed = allowed(&scenario)
            .ok_or_else(|| format!("unknown scenario {scenario:?} (see --help)"))?;
        let mut options = BTreeMap::new();
        while let Some(arg) = argv.next() {
            let key = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            let (key, value) = match key.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (
                    key.to_owned(),
                    argv.next()
                        .ok_or_else(|| format!("--{key} needs a value"))?,
                ),
            };
            if !allowed.contains(&key.as_str()) && !COMMON.contains(&key.as_str()) {
                return Err(format!(
                    "unknown option --{key} for {scenario} (options: {})",
                    allowed
                        .iter()
                        .chain(COMMON)
                        .map(|k| format!("--{k}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            options.insert(key, value);
        }
        Ok(Self { scenario, options })
    }

    /// The option's value, or `default` when absent.
    pub fn get<T: FromStr>(&self, key: &str, default: T) -> Result<T> {
        Ok(self.opt(key)?.unwrap_or(default))
    }

    /// The option's value when given.
    pub fn opt<T: FromStr>(&self, key: &str) -> Result<Option<T>> {
        self.options
            .get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("--{key}: cannot parse {v:?}"))
            })
            .transpose()
    }

    pub fn json_path(&self) -> Option<String> {
        self.options.get("json").cloned()
    }

    /// The options as given, for the report.
    pub fn options(&self) -> &BTreeMap<String, String> {
        &self.options
    }

    /// Settings shared by every scenario.
    pub fn common(&self) -> Result<Common> {
        Ok(Common {
            bare_read_buffer: self.get("bare-read-buffer", 4096)?,
            client_read_buffer: self.get("client-read-buffer", 4096)?,
            connect_concurrency: self.get("connect-concurrency", 256usize)?.max(1),
            distinct_request_ids: self.get("distinct-request-ids", false)?,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Common {
    pub bare_read_buffer: usize,
    pub client_read_buffer: usize,
    pub connect_concurrency: usize,
    /// Each subscriber subscribes with a request id of its own, so that rest-live encodes one
    /// event frame per subscriber (the request id is in the frame) instead of sharing one.
    pub distinct_request_ids: bool,
}
