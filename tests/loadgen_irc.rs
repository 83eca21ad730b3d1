//! The fan-out bench's IRC columns, in miniature: the load generator's IRC clients (NICK/USER,
//! JOIN #room, PRIVMSG #room) get every message through chatd's IRC face and through real ngircd
//! and InspIRCd servers (Debian packages `ngircd` and `inspircd`, which CI installs), each started
//! the way the bench starts it. Seconds, not a measurement: it proves the bench measures what it
//! says.

use loadgen::{run_fanout, FanoutSpec, ServerKind, ServerProc};

/// 6 clients, 2 of them sending 50 lines each: 2 x 50 lines to 5 others each.
fn check(kind: ServerKind, result: &loadgen::FanoutResult) {
    let name = kind.name();
    assert_eq!(
        result.tcp_connected, 6,
        "{name}: {:?}",
        result.connect_errors
    );
    assert_eq!(result.expected, 500, "{name}");
    assert_eq!(
        result.received, result.expected,
        "{name}: loss {}, notes {:?}",
        result.loss, result.notes
    );
    assert_eq!(result.duplicates, 0, "{name}");
    assert!(
        result.server_cpu_s.is_finite(),
        "{name}: CPU read from /proc"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_clients_in_the_bench_get_every_line_from_chatds_irc_face() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_chatd"));
    let args = [loadgen::server::LOOPBACK_CHATD_ARGS, &["--irc", "0"]].concat();
    let mut server = ServerProc::start_chatd_as(ServerKind::ChatdIrc, bin, &args, false)
        .await
        .expect("chatd starts");
    let result = run_fanout(&mut server, &FanoutSpec::small("irc-chatd"))
        .await
        .expect("case runs");
    server.stop().await;
    check(ServerKind::ChatdIrc, &result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_clients_in_the_bench_get_every_line_from_ngircd_and_inspircd() {
    for kind in [ServerKind::Ngircd, ServerKind::Inspircd] {
        // Like every test needing an outside program, a missing one fails, naming its package.
        let bin = loadgen::ircd::require(kind).expect("the IRC server is installed");
        let mut server = loadgen::ircd::start(kind, &bin)
            .await
            .unwrap_or_else(|e| panic!("{} starts: {e:#}", kind.name()));
        let result = run_fanout(&mut server, &FanoutSpec::small(kind.name()))
            .await
            .expect("case runs");
        server.stop().await;
        check(kind, &result);
    }
}
