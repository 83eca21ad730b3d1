//! The fan-out bench's WebSocket case, in miniature: the load generator's WebSocket members (bridged
//! to plain streams) get every line through chatd's web face, as its TCP clients do. Seconds, not a
//! measurement: it proves the bench measures what it says.

use loadgen::{run_fanout, FanoutSpec, ServerProc};

fn spec(name: &str, tcp_over_ws: bool) -> FanoutSpec {
    FanoutSpec {
        tcp_over_ws,
        ..FanoutSpec::small(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_members_in_the_bench_get_every_line_like_tcp_clients() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_chatd"));
    let args = [loadgen::server::LOOPBACK_CHATD_ARGS, &["--http", "0"]].concat();
    for (name, web) in [("mini-tcp", false), ("mini-web", true)] {
        let mut server = ServerProc::start_chatd(bin, &args, false)
            .await
            .expect("chatd starts");
        assert!(
            server.http.is_some(),
            "the http address was read off the log"
        );
        let result = run_fanout(&mut server, &spec(name, web)).await.expect(name);
        server.stop().await;
        assert_eq!(
            result.tcp_connected, 6,
            "{name}: {:?}",
            result.connect_errors
        );
        // Every client reads every line but its own: 2 senders x 50 lines to 5 others each.
        assert_eq!(result.expected, 500, "{name}");
        assert_eq!(
            result.received, result.expected,
            "{name}: loss {}",
            result.loss
        );
        assert_eq!(result.duplicates, 0, "{name}");
    }
}
