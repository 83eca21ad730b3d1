//! What `/metrics` reports, in the Prometheus text format (the `prometheus-client` crate). The
//! counters on the hot path are plain atomics, each looked up once when the hub is built and
//! cloned where it is counted; what can be read off the hub (members, rooms, history) is read at
//! scrape time instead of being counted twice.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::hub::{Hub, Transport};

pub mod process;

type Labels = Vec<(&'static str, &'static str)>;

const TRANSPORTS: [Transport; 5] = [
    Transport::Tcp,
    Transport::Udp,
    Transport::Web,
    Transport::Tls,
    Transport::Irc,
];

fn transport_label(transport: Transport) -> Labels {
    vec![("transport", transport.as_str())]
}

/// One counter per transport, registered as one family with a `transport` label.
#[derive(Debug, Clone, Default)]
struct PerTransport {
    family: Family<Labels, Counter>,
    each: [Counter; TRANSPORTS.len()],
}

impl PerTransport {
    fn new() -> PerTransport {
        let family = Family::<Labels, Counter>::default();
        let each = TRANSPORTS.map(|t| family.get_or_create(&transport_label(t)).clone());
        PerTransport { family, each }
    }

    fn get(&self, transport: Transport) -> &Counter {
        match transport {
            Transport::Tcp => &self.each[0],
            Transport::Udp => &self.each[1],
            Transport::Web => &self.each[2],
            Transport::Tls => &self.each[3],
            Transport::Irc => &self.each[4],
        }
    }
}

#[derive(Debug)]
struct Counters {
    lines_in: PerTransport,
    lines_out: PerTransport,
    bytes_out: PerTransport,
    lag_notices: Counter,
    disconnects: Family<Labels, Counter>,
    sendq_disconnects: Counter,
    flood_disconnects: Counter,
    ping_timeouts: Counter,
    udp_evictions: Counter,
    moderation: Family<Labels, Counter>,
    cluster_drops: Family<Labels, Counter>,
}

/// The server's counters: a cheap-to-clone handle the hub holds and every transport counts into.
#[derive(Debug, Clone)]
pub struct Metrics {
    counters: Arc<Counters>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The counters a writer moves for each batch it delivers to one member.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Lines written out.
    pub lines: Counter,
    /// Bytes written out.
    pub bytes: Counter,
    /// `! you missed N messages` notices given.
    pub lags: Counter,
}

impl Delivery {
    /// Counts one batch of whole lines written out.
    pub fn delivered(&self, batch: &[u8]) {
        self.lines
            .inc_by(memchr::memchr_iter(b'\n', batch).count() as u64);
        self.bytes.inc_by(batch.len() as u64);
    }
}

impl Metrics {
    /// Fresh counters, all zero.
    pub fn new() -> Metrics {
        let disconnects = Family::<Labels, Counter>::default();
        let reason = |why| disconnects.get_or_create(&vec![("reason", why)]).clone();
        let (sendq, flood, ping) = (reason("sendq"), reason("flood"), reason("ping_timeout"));
        Metrics {
            counters: Arc::new(Counters {
                lines_in: PerTransport::new(),
                lines_out: PerTransport::new(),
                bytes_out: PerTransport::new(),
                lag_notices: Counter::default(),
                sendq_disconnects: sendq,
                flood_disconnects: flood,
                ping_timeouts: ping,
                disconnects,
                udp_evictions: Counter::default(),
                moderation: Family::default(),
                cluster_drops: Family::default(),
            }),
        }
    }

    /// Chat lines members of `transport` said.
    pub fn lines_in(&self, transport: Transport) -> &Counter {
        self.counters.lines_in.get(transport)
    }

    /// The counters a writer for a member of `transport` moves.
    pub fn delivery(&self, transport: Transport) -> Delivery {
        Delivery {
            lines: self.counters.lines_out.get(transport).clone(),
            bytes: self.counters.bytes_out.get(transport).clone(),
            lags: self.counters.lag_notices.clone(),
        }
    }

    /// Counts a member that was let go, by the server's reason (see [`crate::member::Member::leave`]).
    pub fn departed(&self, reason: Option<&str>) {
        let counter = match reason {
            Some("too slow") => &self.counters.sendq_disconnects,
            Some("flooding") => &self.counters.flood_disconnects,
            Some("ping timeout") => &self.counters.ping_timeouts,
            Some("timed out") => &self.counters.udp_evictions,
            _ => return,
        };
        counter.inc();
    }

    /// Counts a moderation action (`kick`, `ban`, `kill`, ...) carried out.
    pub fn moderated(&self, action: &'static str) {
        self.counters
            .moderation
            .get_or_create(&vec![("action", action)])
            .inc();
    }

    /// The counter of cluster messages dropped for `why` (`--cluster`: a full queue, a relay
    /// that fell behind its room, a slow NATS subscriber, a failed publish, a malformed message,
    /// a line the history stream did not take: `history`, `history_lag`).
    pub fn cluster_dropped(&self, why: &'static str) -> Counter {
        self.counters
            .cluster_drops
            .get_or_create(&vec![("reason", why)])
            .clone()
    }

    fn register(&self, registry: &mut Registry) {
        let c = &self.counters;
        registry.register(
            "lines_in",
            "Chat lines members said, by transport",
            c.lines_in.family.clone(),
        );
        registry.register(
            "lines_out",
            "Lines delivered to members (room traffic and replies; UDP: room traffic), by transport",
            c.lines_out.family.clone(),
        );
        registry.register(
            "bytes_out",
            "Bytes delivered to members, by transport",
            c.bytes_out.family.clone(),
        );
        registry.register(
            "lag_notices",
            "Times a member fell behind its room and was told how many lines it missed",
            c.lag_notices.clone(),
        );
        registry.register(
            "disconnects",
            "Members let go: sendq (too slow), flood, ping_timeout (a silent browser)",
            c.disconnects.clone(),
        );
        registry.register(
            "moderation_actions",
            "Moderation commands carried out (kick, ban, mute, kill, gban, ...), by action",
            c.moderation.clone(),
        );
        registry.register(
            "udp_evictions",
            "UDP peers evicted for missing their heartbeats",
            c.udp_evictions.clone(),
        );
        registry.register(
            "cluster_drops",
            "Cluster messages dropped (--cluster), by reason",
            c.cluster_drops.clone(),
        );
    }
}

/// What is read off the hub at scrape time.
#[derive(Debug)]
struct Live {
    members: [usize; TRANSPORTS.len()],
    rooms: usize,
    history: (u64, u64),
    /// `--cluster`: the cluster as this node sees it.
    cluster: Option<crate::hub::peers::Summary>,
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(0i64);
        let mut members = encoder.encode_descriptor(
            "chatd_members",
            "Members connected now, by transport.",
            None,
            gauge.metric_type(),
        )?;
        for (transport, count) in TRANSPORTS.iter().zip(self.members) {
            let labels = transport_label(*transport);
            ConstGauge::new(count as i64).encode(members.encode_family(&labels)?)?;
        }
        let rooms = ConstGauge::new(self.rooms as i64);
        rooms.encode(encoder.encode_descriptor(
            "chatd_rooms",
            "Rooms open now, the lobby included.",
            None,
            rooms.metric_type(),
        )?)?;
        let (written, dropped) = self.history;
        let written = ConstCounter::new(written);
        written.encode(encoder.encode_descriptor(
            "chatd_history_writes",
            "History lines written to the database.",
            None,
            written.metric_type(),
        )?)?;
        let dropped = ConstCounter::new(dropped);
        dropped.encode(encoder.encode_descriptor(
            "chatd_history_drops",
            "History lines the database writer could not keep up with and dropped.",
            None,
            dropped.metric_type(),
        )?)?;
        if let Some(cluster) = &self.cluster {
            let gauges = [
                (
                    "chatd_cluster_nodes",
                    "Live nodes of the cluster (--cluster), this one included.",
                    cluster.nodes,
                ),
                (
                    "chatd_cluster_members",
                    "Members on every live node of the cluster (--cluster).",
                    cluster.members,
                ),
                (
                    "chatd_cluster_link_up",
                    "1 while this node is connected to NATS (--cluster), 0 while it is cut off.",
                    usize::from(cluster.link == "up"),
                ),
            ];
            for (name, help, value) in gauges {
                let gauge = ConstGauge::new(value as i64);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        Ok(())
    }
}

/// Everything `/metrics` says about the server behind `hub`, in the Prometheus text format.
pub fn render(hub: &Hub) -> String {
    let mut registry = Registry::with_prefix("chatd");
    hub.metrics().register(&mut registry);
    registry.register(
        "build",
        "chatd's version",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    let mut members = [0; TRANSPORTS.len()];
    for member in hub.members() {
        if let Some(i) = TRANSPORTS.iter().position(|t| *t == member.transport) {
            members[i] += 1;
        }
    }
    let local: usize = members.iter().sum();
    let live = Live {
        members,
        rooms: hub.rooms().len(),
        history: crate::store::counts(hub.store().stats()),
        cluster: hub.cluster().map(|cluster| cluster.summary(local)),
    };
    // Not under the prefix: a collector names its own metrics.
    let mut outer = Registry::default();
    outer.register_collector(Box::new(live));
    outer.register_collector(Box::new(process::Process));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &registry);
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &outer);
    let _ = prometheus_client::encoding::text::encode_eof(&mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departures_count_by_reason() {
        let metrics = Metrics::new();
        metrics.departed(Some("too slow"));
        metrics.departed(Some("flooding"));
        metrics.departed(Some("flooding"));
        metrics.departed(Some("timed out"));
        metrics.departed(None);
        metrics.departed(Some("idle timeout"));
        let c = &metrics.counters;
        assert_eq!(c.sendq_disconnects.get(), 1);
        assert_eq!(c.flood_disconnects.get(), 2);
        assert_eq!(c.udp_evictions.get(), 1);
        assert_eq!(c.ping_timeouts.get(), 0);
    }

    #[test]
    fn a_delivery_counts_lines_and_bytes() {
        let metrics = Metrics::new();
        let out = metrics.delivery(Transport::Web);
        out.delivered(b"<a> one\n<b> two\n");
        assert_eq!(metrics.counters.lines_out.get(Transport::Web).get(), 2);
        assert_eq!(metrics.counters.bytes_out.get(Transport::Web).get(), 16);
        assert_eq!(metrics.counters.lines_out.get(Transport::Tcp).get(), 0);
    }
}
