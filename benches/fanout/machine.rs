//! The machine a run came from, for the header of the JSON and Markdown reports: the figures are
//! only comparable between runs on the same cores, CPU and kernel.

use std::fmt::Write as _;

use serde::Serialize;

/// What the report says about the machine and the run.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// When the run started (UTC, RFC 3339).
    pub date: String,
    /// Cores this process may use.
    pub cores: usize,
    /// `model name` from /proc/cpuinfo ("unknown" where there is none).
    pub cpu: String,
    /// The kernel release (/proc/sys/kernel/osrelease).
    pub kernel: String,
    /// Total memory in GiB (/proc/meminfo).
    pub memory_gib: f64,
}

impl Machine {
    /// This machine, now.
    pub fn here() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            cores: loadgen::sys::cores(),
            cpu,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            memory_gib: memory_kib / (1024.0 * 1024.0),
        }
    }

    /// The Markdown report's header: what ran, when, and where.
    pub fn header(&self, command: &str, chatd: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# chatd fan-out, side by side\n");
        let _ = writeln!(s, "- command: `{command}`");
        let _ = writeln!(s, "- date: {}", self.date);
        let _ = writeln!(
            s,
            "- machine: {} cores, {}, Linux {}, {:.1} GiB",
            self.cores, self.cpu, self.kernel, self.memory_gib
        );
        let _ = writeln!(s, "- chatd: `{chatd}`\n");
        s
    }
}
