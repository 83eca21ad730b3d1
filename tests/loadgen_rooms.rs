//! The fan-out bench's `rooms10` case, in miniature: the load generator's IRC members, each in
//! several channels, get every line sent to each of their channels, through chatd's IRC face and
//! through ngircd (Debian package `ngircd`, which CI installs), each started the way the bench
//! starts it. Seconds, not a measurement: it proves the case measures what it says.

use loadgen::rooms::{run_rooms, RoomsResult, RoomsSpec};
use loadgen::{ServerKind, ServerProc};

/// 40 members each in 2 of 8 channels of 10, one sender a channel, 20 lines each: 8 x 20 lines to
/// 9 others each.
fn spec() -> RoomsSpec {
    RoomsSpec {
        name: "rooms-small".into(),
        members: 40,
        rooms_per_member: 2,
        room_size: 10,
        senders: 8,
        rate_per_sender: 20.0,
        sending_s: 1.0,
        connect_concurrency: 8,
    }
}

fn check(name: &str, result: &RoomsResult) {
    assert_eq!(result.sent, 160, "{name}");
    assert_eq!(result.expected, 160 * 9, "{name}");
    assert_eq!(
        result.received, result.expected,
        "{name}: server said it dropped {}",
        result.server_missed_notices
    );
    assert!(
        result.server_cpu_s.is_finite(),
        "{name}: CPU read from /proc"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_in_several_channels_get_every_line_from_chatds_irc_face() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_chatd"));
    // 40 members from one address: past chatd's default per-address limit.
    let face = ["--irc", "0", "--max-per-ip", "100"];
    let args = [loadgen::server::LOOPBACK_CHATD_ARGS, &face].concat();
    let server = ServerProc::start_chatd_as(ServerKind::ChatdIrc, bin, &args, false)
        .await
        .expect("chatd starts");
    let result = run_rooms(&server, &spec()).await;
    server.stop().await;
    check("chatd-irc", &result.expect("case runs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_in_several_channels_get_every_line_from_ngircd() {
    // Like every test needing an outside program, a missing one fails, naming its package.
    let bin = loadgen::ircd::require(ServerKind::Ngircd).expect("ngircd is installed");
    let server = loadgen::ircd::start(ServerKind::Ngircd, &bin)
        .await
        .expect("ngircd starts");
    let result = run_rooms(&server, &spec()).await;
    server.stop().await;
    check("ngircd", &result.expect("case runs"));
}
