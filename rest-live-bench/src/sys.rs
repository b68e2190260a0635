//! The machine: file-descriptor limit, `/proc` readings (RSS, CPU time), clocks.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Raises `RLIMIT_NOFILE` as far as allowed: the hard limit up to `fs.nr_open` when privileged,
/// else the soft limit up to the hard one. Returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) != 0 {
            return 0;
        }
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(current.rlim_max);
        let want: libc::rlim_t = nr_open.min(1 << 20);
        if want > current.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        let raised = libc::rlimit {
            rlim_cur: current.rlim_max,
            rlim_max: current.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return current.rlim_max;
        }
        current.rlim_cur
    }
}

/// Resident set size of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// User + system CPU seconds a process has used so far (`/proc/<pid>/stat`, all threads).
pub fn cpu_secs(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), utime 14 and stime 15.
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(14) + ticks(15)) / hz
}

/// Busy CPU seconds of the whole machine (`/proc/stat`: all but idle and iowait), every process
/// and the kernel's softirq work (loopback networking) included.
pub fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    if ticks.len() < 5 {
        return 0.0;
    }
    let idle = ticks[3] + ticks[4];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks.iter().sum::<f64>() - idle) / hz
}

/// CPU use over a stretch of time, in cores (1.0 = one core busy).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// The server process.
    pub server: f64,
    /// This process (the clients).
    pub client: f64,
    /// The rest of the machine: other processes and kernel work not charged to either (softirq).
    pub other: f64,
}

/// CPU seconds of the benchmark's own process, of a server, and of the machine, sampled together.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    client: f64,
    server: f64,
    machine: f64,
    at: std::time::Instant,
}

impl CpuSample {
    pub fn take(server_pid: u32) -> Self {
        Self {
            client: cpu_secs(None),
            server: cpu_secs(Some(server_pid)),
            machine: machine_busy_secs(),
            at: std::time::Instant::now(),
        }
    }

    /// CPU use since `self`.
    pub fn cores_since(&self, server_pid: u32) -> Cpu {
        let now = Self::take(server_pid);
        let wall = now.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let server = (now.server - self.server) / wall;
        let client = (now.client - self.client) / wall;
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        // Ticks are 10 ms: over short stretches the machine figure can overshoot.
        let machine = ((now.machine - self.machine) / wall).min(cores);
        Cpu {
            server,
            client,
            other: (machine - server - client).max(0.0),
        }
    }
}

/// How busy the machine is before a run, in cores (over `sample`).
pub fn background_load(sample: std::time::Duration) -> f64 {
    let before = machine_busy_secs();
    std::thread::sleep(sample);
    (machine_busy_secs() - before) / sample.as_secs_f64()
}

/// Nanoseconds since the Unix epoch: the clock both processes share for latencies.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Cores, memory and limits, for the report.
pub fn machine(nofile: u64) -> Value {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu_model,
        "mem_total_kib": mem_kib("MemTotal:"),
        "mem_available_kib": mem_kib("MemAvailable:"),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "nofile_limit": nofile,
        "somaxconn": read("/proc/sys/net/core/somaxconn"),
        "ip_local_port_range": read("/proc/sys/net/ipv4/ip_local_port_range"),
    })
}
