//! Results: printed as tables, written as JSON.

use serde_json::{Map, Value, json};

/// One scenario's results.
pub struct Report {
    pub scenario: &'static str,
    pub params: Value,
    pub machine: Value,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
    /// Machine-readable results: `{"cases": [...], ...}`.
    pub results: Value,
}

impl Report {
    pub fn new(scenario: &'static str, params: Value) -> Self {
        Self {
            scenario,
            params,
            machine: Value::Null,
            tables: Vec::new(),
            notes: Vec::new(),
            results: Value::Object(Map::new()),
        }
    }

    pub fn print(&self) {
        println!();
        println!("== {} ==", self.scenario);
        if let Some(p) = self.params.as_object() {
            let params: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{}", params.join("  "));
        }
        if let Some(m) = self.machine.as_object() {
            println!(
                "machine: {} cores, {} MiB, nofile {}",
                m.get("cores").unwrap_or(&Value::Null),
                m.get("mem_total_kib").and_then(Value::as_u64).unwrap_or(0) / 1024,
                m.get("nofile_limit").unwrap_or(&Value::Null),
            );
        }
        for table in &self.tables {
            println!();
            table.print();
        }
        if !self.notes.is_empty() {
            println!();
            for note in &self.notes {
                println!("- {note}");
            }
        }
    }

    pub fn to_json_string(&self) -> String {
        let value = json!({
            "scenario": self.scenario,
            "params": self.params,
            "machine": self.machine,
            "results": self.results,
            "notes": self.notes,
        });
        serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
    }
}

/// A printed table.
pub struct Table {
    pub title: String,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: Vec<&'static str>) -> Self {
        Self {
            title: title.into(),
            headers,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn print(&self) {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .chain([self.headers[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        println!("{}", self.title);
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        format!("{c:<w$}", w = widths[i])
                    } else {
                        format!("{c:>w$}", w = widths[i])
                    }
                })
                .collect();
            println!("  {}", padded.join("  ").trim_end());
        };
        line(self.headers.clone());
        line(
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect(),
        );
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect());
        }
    }
}

/// Latency samples in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted: Vec<u32>,
}

impl Latencies {
    pub fn from_micros(mut samples: Vec<u32>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    pub fn count(&self) -> usize {
        self.sorted.len()
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 without samples.
    pub fn ms(&self, q: f64) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        let rank = ((q * self.sorted.len() as f64).ceil() as usize).clamp(1, self.sorted.len());
        f64::from(self.sorted[rank - 1]) / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.sorted.last().map_or(0.0, |v| f64::from(*v) / 1000.0)
    }

    pub fn json(&self) -> Value {
        json!({
            "samples": self.count(),
            "p50_ms": round3(self.ms(0.50)),
            "p90_ms": round3(self.ms(0.90)),
            "p99_ms": round3(self.ms(0.99)),
            "p999_ms": round3(self.ms(0.999)),
            "max_ms": round3(self.max_ms()),
        })
    }
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `a / b`, or 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { round3(a / b) } else { 0.0 }
}

/// A rate for the table: thousands separated by a thin space.
pub fn rate(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn cpu_json(cpu: &crate::sys::Cpu) -> Value {
    json!({
        "server": round3(cpu.server),
        "client": round3(cpu.client),
        "other": round3(cpu.other),
    })
}

pub fn cores(v: f64) -> String {
    format!("{v:.2}")
}

/// The three CPU columns of every table: server, client, other.
pub fn cpu_cells(cpu: &crate::sys::Cpu) -> [String; 3] {
    [cores(cpu.server), cores(cpu.client), cores(cpu.other)]
}

/// The latency columns p50, p99 and max, in ms.
pub fn latency_cells(latency: &Latencies) -> [String; 3] {
    [
        ms(latency.ms(0.5)),
        ms(latency.ms(0.99)),
        ms(latency.max_ms()),
    ]
}

pub fn x(v: f64) -> String {
    format!("{v:.2}x")
}
