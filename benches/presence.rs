//! Micro-benchmark of the UDP presence table (`chatd::guard::presence::Presence<SocketAddr>`).
//!
//! The heartbeat eviction task calls `expire(now)` whenever the earliest deadline passes; its
//! cost must follow the number of peers that are actually overdue (E), not the number present
//! (P). This bench shows it: for P = 1,000, 10,000 and 100,000 distinct `127.x.y.z:port` peers
//! whose deadlines are spread so that exactly E = 0, 10, 100, 1,000 or 10,000 (E <= P) are
//! overdue at the expiry instant, it times one `expire(now)` call on a freshly built table
//! (building and dropping the table are not timed) and reports the median over a fixed number
//! of samples, plus the ratio of expire time at P = 100,000 vs P = 1,000 for the same E. It
//! also times a heartbeat refresh (`touch` of a peer already present) and `next_deadline` at
//! each P.
//!
//! The main figure is "cold": the peers that expire were inserted first, so at 100,000 peers
//! (about 10 MB of map nodes and hash slots) their entries have usually left the core's caches
//! by the time `expire` runs, as they would have in the server between eviction passes. The
//! "warm" columns re-insert the same E peers into the same table and expire them again, with
//! their entries and the code in cache: that isolates the table's own work from memory misses,
//! so a warm ratio near 1 means nothing in `expire` walks the peers that stay.
//!
//! Run it with:
//!
//! ```text
//! cargo bench --bench presence
//! PRESENCE_QUICK=1 cargo bench --bench presence   # fewer samples, a few seconds
//! ```
//!
//! It prints one table and writes the figures as JSON to `target/presence-report.json`.
//! Iteration counts are fixed, so the run is bounded (well under a minute on a small machine).
//! The table works on `tokio::time::Instant` values built as `Instant::now() + Duration`; outside
//! a runtime `Instant::now()` is just the std clock, so no runtime is needed.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant as StdInstant};

use chatd::guard::presence::Presence;
use serde::Serialize;
use tokio::time::Instant;

/// Silence after which a peer is overdue (the value only shifts every deadline).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Gap between consecutive peers' last heartbeats, so deadlines are distinct and ordered.
const STEP: Duration = Duration::from_micros(100);
const PEERS: [usize; 3] = [1_000, 10_000, 100_000];
const EXPIRING: [usize; 5] = [0, 10, 100, 1_000, 10_000];
/// Heartbeat refreshes timed per batch, and `next_deadline` calls per batch.
const TOUCH_BATCH: usize = 1_000;
const NEXT_BATCH: usize = 10_000;

struct Plan {
    /// Fresh tables (one `expire` each) per (P, E).
    expire_samples: usize,
    /// Batches of `TOUCH_BATCH` refreshes / `NEXT_BATCH` lookups per P.
    batches: usize,
}

#[derive(Serialize)]
struct ExpireRow {
    peers: usize,
    expiring: usize,
    samples: usize,
    median_ns: u64,
    min_ns: u64,
    p90_ns: u64,
    /// Median divided by E (absent for E = 0).
    ns_per_expired: Option<f64>,
    /// Median of a second `expire` of the same E peers right after re-inserting them, so their
    /// entries and the code are in cache: what is left is the table's own work.
    warm_median_ns: u64,
    warm_ns_per_expired: Option<f64>,
}

#[derive(Serialize)]
struct OpRow {
    peers: usize,
    batches: usize,
    ops_per_batch: usize,
    /// Median over batches of the per-operation time.
    median_ns_per_op: f64,
    min_ns_per_op: f64,
}

#[derive(Serialize)]
struct RatioRow {
    expiring: usize,
    /// Median expire time at P = 100,000 divided by the one at P = 1,000.
    ratio_100k_over_1k: f64,
    /// The same for the warm (re-inserted, in-cache) variant.
    warm_ratio_100k_over_1k: f64,
}

#[derive(Serialize)]
struct Report {
    quick: bool,
    timeout_ms: u64,
    step_us: u64,
    /// Median cost of reading the clock twice back to back (included in every expire figure).
    timer_overhead_ns: u64,
    expire: Vec<ExpireRow>,
    touch_refresh: Vec<OpRow>,
    next_deadline: Vec<OpRow>,
    expire_ratio: Vec<RatioRow>,
}

/// Peer `i` as a distinct loopback address (distinct for every `i < 2^24`).
fn addr(i: usize) -> SocketAddr {
    let i = u32::try_from(i).expect("peer index fits u32");
    assert!(i < 1 << 24);
    let ip = Ipv4Addr::new(127, (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, 20_000 + (i % 40_000) as u16))
}

/// The instant peer `i` was last heard from: peers are heard in index order, `STEP` apart.
fn heard(base: Instant, i: usize) -> Instant {
    base + STEP * u32::try_from(i).expect("peer index fits u32")
}

/// A table of `addrs.len()` peers; peer `i`'s deadline is `heard(base, i) + TIMEOUT`.
fn build(addrs: &[SocketAddr], base: Instant) -> Presence<SocketAddr> {
    let mut table = Presence::new(TIMEOUT);
    for (i, a) in addrs.iter().enumerate() {
        table.touch(a, heard(base, i));
    }
    table
}

/// Half a step before peer `e`'s deadline: peers `0..e` are overdue, the rest are not.
fn expiry_instant(base: Instant, e: usize) -> Instant {
    heard(base, e) + TIMEOUT - STEP / 2
}

/// Tiny deterministic generator for picking peers to refresh.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn median_u64(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn median_f64(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} us", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

fn timer_overhead() -> u64 {
    let mut v: Vec<u64> = (0..1_001)
        .map(|_| {
            let start = StdInstant::now();
            black_box(());
            start.elapsed().as_nanos() as u64
        })
        .collect();
    median_u64(&mut v)
}

/// One `expire` per (P, E) per round; rounds interleave every configuration so that noise from
/// a shared machine spreads evenly over them instead of landing on one.
fn bench_expire(plan: &Plan, addrs: &[SocketAddr], base: Instant) -> Vec<ExpireRow> {
    let configs: Vec<(usize, usize)> = PEERS
        .iter()
        .flat_map(|&p| {
            EXPIRING
                .iter()
                .filter(move |&&e| e <= p)
                .map(move |&e| (p, e))
        })
        .collect();
    let mut cold: Vec<Vec<u64>> = vec![Vec::with_capacity(plan.expire_samples); configs.len()];
    let mut warm = cold.clone();
    for _ in 0..plan.expire_samples {
        for (slot, &(p, e)) in configs.iter().enumerate() {
            let mut table = build(&addrs[..p], base);
            let now = expiry_instant(base, e);
            let start = StdInstant::now();
            let expired = black_box(black_box(&mut table).expire(black_box(now)));
            let elapsed = start.elapsed().as_nanos() as u64;
            assert_eq!(
                expired,
                addrs[..e],
                "exactly E peers are overdue, oldest first"
            );
            assert_eq!(table.len(), p - e);
            assert_eq!(
                table.next_deadline(),
                (e < p).then(|| heard(base, e) + TIMEOUT)
            );
            cold[slot].push(elapsed);

            // Warm variant (same table): put the E peers back with their original heartbeats,
            // which leaves their entries and the expire code in cache, and expire them again.
            for (i, a) in expired.iter().enumerate() {
                assert!(table.touch(a, heard(base, i)));
            }
            let start = StdInstant::now();
            let again = black_box(black_box(&mut table).expire(black_box(now)));
            let elapsed = start.elapsed().as_nanos() as u64;
            assert_eq!(again, expired);
            warm[slot].push(elapsed);
        }
    }
    configs
        .iter()
        .zip(cold.iter_mut().zip(warm.iter_mut()))
        .map(|(&(p, e), (c, w))| {
            let median = median_u64(c);
            let warm_median = median_u64(w);
            ExpireRow {
                peers: p,
                expiring: e,
                samples: c.len(),
                median_ns: median,
                min_ns: c[0],
                p90_ns: c[c.len() * 9 / 10],
                ns_per_expired: (e > 0).then(|| median as f64 / e as f64),
                warm_median_ns: warm_median,
                warm_ns_per_expired: (e > 0).then(|| warm_median as f64 / e as f64),
            }
        })
        .collect()
}

/// Heartbeats from peers already present, in random order, with `now` moving forward.
fn bench_touch(plan: &Plan, addrs: &[SocketAddr], base: Instant, p: usize) -> OpRow {
    let mut table = build(&addrs[..p], base);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ p as u64);
    let keys: Vec<SocketAddr> = (0..plan.batches * TOUCH_BATCH)
        .map(|_| addrs[rng.below(p)])
        .collect();
    let nows: Vec<Instant> = (0..keys.len()).map(|k| heard(base, p + k)).collect();
    let mut per_op = Vec::with_capacity(plan.batches);
    for (ks, ns) in keys.chunks(TOUCH_BATCH).zip(nows.chunks(TOUCH_BATCH)) {
        let mut any_new = false;
        let start = StdInstant::now();
        for (k, &now) in ks.iter().zip(ns) {
            any_new |= black_box(&mut table).touch(black_box(k), now);
        }
        let elapsed = start.elapsed().as_nanos() as f64;
        assert!(!any_new, "every touch is a refresh");
        per_op.push(elapsed / ks.len() as f64);
    }
    assert_eq!(table.len(), p);
    let median = median_f64(&mut per_op);
    OpRow {
        peers: p,
        batches: per_op.len(),
        ops_per_batch: TOUCH_BATCH,
        median_ns_per_op: median,
        min_ns_per_op: per_op[0],
    }
}

fn bench_next_deadline(plan: &Plan, addrs: &[SocketAddr], base: Instant, p: usize) -> OpRow {
    let table = build(&addrs[..p], base);
    let first = Some(heard(base, 0) + TIMEOUT);
    let mut per_op = Vec::with_capacity(plan.batches);
    for _ in 0..plan.batches {
        let start = StdInstant::now();
        for _ in 0..NEXT_BATCH {
            black_box(black_box(&table).next_deadline());
        }
        let elapsed = start.elapsed().as_nanos() as f64;
        per_op.push(elapsed / NEXT_BATCH as f64);
    }
    assert_eq!(table.next_deadline(), first);
    let median = median_f64(&mut per_op);
    OpRow {
        peers: p,
        batches: per_op.len(),
        ops_per_batch: NEXT_BATCH,
        median_ns_per_op: median,
        min_ns_per_op: per_op[0],
    }
}

fn main() {
    let quick = std::env::var_os("PRESENCE_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let plan = if quick {
        Plan {
            expire_samples: 11,
            batches: 11,
        }
    } else {
        Plan {
            expire_samples: 51,
            batches: 41,
        }
    };
    let wall = StdInstant::now();
    // Outside a runtime tokio's clock is std's; every other instant is `base + Duration`.
    let base = Instant::now();
    let max_p = *PEERS.iter().max().expect("peer counts");
    let addrs: Vec<SocketAddr> = (0..max_p).map(addr).collect();

    let overhead = timer_overhead();
    let expire = bench_expire(&plan, &addrs, base);
    let touch_refresh: Vec<OpRow> = PEERS
        .iter()
        .map(|&p| bench_touch(&plan, &addrs, base, p))
        .collect();
    let next_deadline: Vec<OpRow> = PEERS
        .iter()
        .map(|&p| bench_next_deadline(&plan, &addrs, base, p))
        .collect();

    let lookup = |p: usize, e: usize| expire.iter().find(|r| r.peers == p && r.expiring == e);
    let expire_ratio: Vec<RatioRow> = EXPIRING
        .iter()
        .filter_map(|&e| {
            let big = lookup(100_000, e)?;
            let small = lookup(1_000, e)?;
            Some(RatioRow {
                expiring: e,
                ratio_100k_over_1k: big.median_ns as f64 / small.median_ns.max(1) as f64,
                warm_ratio_100k_over_1k: big.warm_median_ns as f64
                    / small.warm_median_ns.max(1) as f64,
            })
        })
        .collect();

    println!(
        "presence table: one expire(now) per freshly built table, median of {} samples{} \
         (timeout {:?}; ~{} ns of clock reads included in each figure)",
        plan.expire_samples,
        if quick { " [PRESENCE_QUICK]" } else { "" },
        TIMEOUT,
        overhead
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    println!(
        "{:>7} {:>6} {:>10} {:>10} {:>10} {:>11} | {:>10} {:>11}",
        "P", "E", "median", "min", "p90", "ns/expired", "warm med", "warm ns/exp"
    );
    for r in &expire {
        println!(
            "{:>7} {:>6} {:>10} {:>10} {:>10} {:>11} | {:>10} {:>11}",
            r.peers,
            r.expiring,
            fmt_ns(r.median_ns as f64),
            fmt_ns(r.min_ns as f64),
            fmt_ns(r.p90_ns as f64),
            opt(r.ns_per_expired),
            fmt_ns(r.warm_median_ns as f64),
            opt(r.warm_ns_per_expired),
        );
    }
    let ratios = |warm: bool| {
        expire_ratio
            .iter()
            .map(|r| {
                let x = if warm {
                    r.warm_ratio_100k_over_1k
                } else {
                    r.ratio_100k_over_1k
                };
                format!("E={} {x:.2}x", r.expiring)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "expire time ratio P=100000 / P=1000 at the same E (near 1 = cost follows E, not P): {}; \
         warm: {}",
        ratios(false),
        ratios(true)
    );
    println!();
    println!(
        "{:>8} {:>22} {:>22}",
        "P", "touch (refresh) /op", "next_deadline /op"
    );
    for (t, n) in touch_refresh.iter().zip(&next_deadline) {
        println!(
            "{:>8} {:>22} {:>22}",
            t.peers,
            format!("{:.1} ns", t.median_ns_per_op),
            format!("{:.1} ns", n.median_ns_per_op),
        );
    }

    let report = Report {
        quick,
        timeout_ms: TIMEOUT.as_millis() as u64,
        step_us: STEP.as_micros() as u64,
        timer_overhead_ns: overhead,
        expire,
        touch_refresh,
        next_deadline,
        expire_ratio,
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/presence-report.json");
    std::fs::create_dir_all(path.parent().expect("report has a directory"))
        .expect("create target directory");
    let json = serde_json::to_string_pretty(&report).expect("serialise report");
    std::fs::write(&path, json + "\n").expect("write report");
    println!();
    println!(
        "wrote {} (run took {:.1} s)",
        path.display(),
        wall.elapsed().as_secs_f64()
    );
}
