//! The bench's `capacity` case in miniature: steps of 3 clients up to 6, on chatd's TCP, WebSocket
//! and IRC faces, each step's broadcasts reaching every other client. Seconds, not a measurement:
//! it proves the procedure counts what it says (every broadcast timed to its last receiver).

use std::time::Duration;

use loadgen::capacity::{run_capacity, CapacitySpec};
use loadgen::server::LOOPBACK_CHATD_ARGS;
use loadgen::{ServerKind, ServerProc};

fn spec(over_ws: bool) -> CapacitySpec {
    CapacitySpec {
        step: 3,
        samples: 6,
        over_ws,
        connect_concurrency: 3,
        // A debug build on a loaded machine: the limit is not what is tested here.
        limit: Duration::from_secs(5),
        give_up: Duration::from_secs(10),
        settle_max: Duration::from_secs(10),
        ..CapacitySpec::shootout(6)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_times_each_broadcast_to_its_last_receiver_on_every_face() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_chatd"));
    for (kind, extra, over_ws) in [
        (ServerKind::Chatd, &[][..], false),
        (ServerKind::Chatd, &["--http", "0"][..], true),
        (ServerKind::ChatdIrc, &["--irc", "0"][..], false),
    ] {
        let args = [LOOPBACK_CHATD_ARGS, extra].concat();
        let mut server = ServerProc::start_chatd_as(kind, bin, &args, false)
            .await
            .expect("chatd starts");
        let r = run_capacity(&mut server, &spec(over_ws))
            .await
            .expect("capacity runs");
        server.stop().await;
        let face = format!("{} (ws: {over_ws})", kind.name());
        assert_eq!(r.capacity, 6, "{face}: {r:?}");
        assert_eq!(r.steps.len(), 2, "{face}");
        for step in &r.steps {
            assert!(step.passed, "{face}: {step:?}");
            assert_eq!(step.connected, step.clients, "{face}");
            assert_eq!((step.broadcasts, step.within_limit), (6, 6), "{face}");
            assert_eq!(step.incomplete, 0, "{face}");
            assert!(
                step.p95_ms.is_finite() && step.p95_ms >= step.p50_ms,
                "{face}"
            );
        }
    }
}
