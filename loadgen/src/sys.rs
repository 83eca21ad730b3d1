//! Operating-system readings the benchmark reports next to its figures: CPU time of the generator
//! and of the server (to tell which side is the bottleneck), server memory, descriptor limits and
//! kernel UDP drop counters. Linux only, as the benchmark is.

use std::collections::HashMap;
use std::io;

use anyhow::{anyhow, Context, Result};

/// CPU time (user + system) this process has used so far, all threads included, in nanoseconds.
pub fn self_cpu_ns() -> u64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0;
        }
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time (utime + stime) of process `pid` so far, in nanoseconds, from `/proc/PID/stat`.
pub fn proc_cpu_ns(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&stat)
        .map(|ticks| ticks * 1_000_000_000 / clock_ticks_per_sec())
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat format"))
}

/// utime + stime in clock ticks from a `/proc/PID/stat` line. The command name may contain spaces
/// and parentheses, so fields are counted from the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After ")" come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Whole-machine CPU time so far, from the first line of `/proc/stat`, in nanoseconds.
/// Busy time beyond the generator's and the server's is other load on the machine, which the
/// report shows so a reader can tell a contended run from a clean one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineCpu {
    /// user + nice + system: time charged to processes (ours and everyone else's).
    pub process_ns: u64,
    /// irq + softirq: interrupt work, which on loopback includes delivering our packets.
    pub irq_ns: u64,
    /// Time the hypervisor gave to someone else.
    pub steal_ns: u64,
}

/// Reads [`MachineCpu`] now.
pub fn machine_cpu() -> Result<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .next()
        .ok_or_else(|| anyhow!("empty /proc/stat"))?;
    let ticks = parse_cpu_ticks(line).ok_or_else(|| anyhow!("unexpected /proc/stat format"))?;
    let ns = |t: u64| t * 1_000_000_000 / clock_ticks_per_sec();
    Ok(MachineCpu {
        process_ns: ns(ticks.process_ns),
        irq_ns: ns(ticks.irq_ns),
        steal_ns: ns(ticks.steal_ns),
    })
}

/// Parses the aggregate `cpu` line into tick counts (stored in the `_ns` fields unscaled).
fn parse_cpu_ticks(cpu_line: &str) -> Option<MachineCpu> {
    let mut f = cpu_line.split_ascii_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = f.take(8).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if v.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal
    Some(MachineCpu {
        process_ns: v[0] + v[1] + v[2],
        irq_ns: v[5] + v[6],
        steal_ns: v[7],
    })
}

/// Resident memory of process `pid` in KiB (`VmRSS` from `/proc/PID/status`).
pub fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// Number of open descriptors of process `pid`: a cross-check that the server really holds the
/// connections whose memory is being measured.
pub fn open_fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count())
}

/// Online CPUs, for deciding whether the server and the generator can have cores of their own.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How to split the machine's cores between the server and the generator: on more than 4 cores
/// the server gets the first `server` cores and the generator the rest; on fewer they share.
pub fn core_split(cores: usize, server: usize) -> Option<(Vec<usize>, Vec<usize>)> {
    (cores > 4 && server > 0 && server < cores)
        .then(|| ((0..server).collect(), (server..cores).collect()))
}

/// Pins every thread of process `pid` (0: this process) to `cpus`, so server and generator stop
/// competing for the same cores. Threads started later inherit the mask of the thread that starts
/// them, so pinning right after start (or, for this process, before its runtime) covers them all.
pub fn pin(pid: u32, cpus: &[usize]) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(anyhow!("cpu {cpu} beyond CPU_SETSIZE"));
        }
        // SAFETY: CPU_SET writes one bit inside `set`; cpu is below the set's capacity (checked).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    let pid = if pid == 0 { std::process::id() } else { pid };
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("listing /proc/{pid}/task"))?;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: `set` is a valid cpu_set_t of the size passed; a gone thread just fails.
        let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(anyhow!("sched_setaffinity({tid}): {e}"));
            }
        }
    }
    Ok(())
}

/// The descriptor limit after [`raise_nofile`].
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct NofileLimit {
    /// Soft limit now in force.
    pub soft: u64,
    /// Hard limit now in force.
    pub hard: u64,
    /// What was asked for (after capping at `/proc/sys/fs/nr_open`).
    pub wanted: u64,
    /// False when raising the hard limit was refused (no CAP_SYS_RESOURCE, e.g. in a container).
    pub hard_raised: bool,
}

/// Raises this process's RLIMIT_NOFILE (hard and soft) to `want`, or to `/proc/sys/fs/nr_open`
/// if that is lower; children spawned afterwards inherit it. If raising the hard limit is refused
/// (it needs CAP_SYS_RESOURCE), the soft limit is raised to the existing hard limit instead.
pub fn raise_nofile(want: u64) -> io::Result<NofileLimit> {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(want);
    let target = want.min(nr_open) as libc::rlim_t;
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        let wanted = target as u64;
        if lim.rlim_cur >= target {
            return Ok(NofileLimit {
                soft: lim.rlim_cur as u64,
                hard: lim.rlim_max as u64,
                wanted,
                hard_raised: true,
            });
        }
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: target.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return Ok(NofileLimit {
                soft: target as u64,
                hard: raised.rlim_max as u64,
                wanted,
                hard_raised: true,
            });
        }
        let soft_only = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft_only) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NofileLimit {
            soft: lim.rlim_max as u64,
            hard: lim.rlim_max as u64,
            wanted,
            hard_raised: lim.rlim_max >= target,
        })
    }
}

/// Kernel receive-buffer drops per local UDP port on IPv4 (`drops` column of `/proc/net/udp`),
/// so UDP loss can be pinned on the server's socket or on the generator's.
pub fn udp_drops_by_port() -> Result<HashMap<u16, u64>> {
    let table = std::fs::read_to_string("/proc/net/udp").context("reading /proc/net/udp")?;
    Ok(parse_udp_drops(&table))
}

fn parse_udp_drops(table: &str) -> HashMap<u16, u64> {
    let mut out = HashMap::new();
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_ascii_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        let (Some(local), Some(drops)) = (cols.get(1), cols.last()) else {
            continue;
        };
        let Some(port) = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        if let Ok(d) = drops.parse::<u64>() {
            *out.entry(port).or_default() += d;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_fields_after_the_name() {
        let stat = "1234 (chat d) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn proc_stat_splits_process_interrupt_and_steal_time() {
        assert_eq!(
            parse_cpu_ticks("cpu  10 20 30 1000 500 1 2 3 0 0"),
            Some(MachineCpu {
                process_ns: 60,
                irq_ns: 3,
                steal_ns: 3,
            })
        );
        assert_eq!(parse_cpu_ticks("cpu0 10 20 30 1000 500 1 2 3"), None);
        assert_eq!(parse_cpu_ticks("cpu  10 20 30"), None, "too few fields");
    }

    #[test]
    fn udp_table_drops_by_port() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                 1: 0100007F:9C40 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 7\n";
        assert_eq!(parse_udp_drops(t).get(&0x9C40), Some(&7));
    }
}
