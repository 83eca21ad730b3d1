//! Flood control: TCP floods are paced (nothing lost, nobody else delayed), UDP excess is dropped
//! with one warning per burst, and a sustained flood gets the member kicked.
mod common;

use common::{start_server, TcpClient, UdpClient, TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_block_arrives_intact_and_others_are_not_held_up() {
    // 20 lines a second after a burst of 5: a 45-line paste takes about two seconds.
    let server = start_server("--rate 20 --burst 5").await;
    let mut reader = TcpClient::with_nick(server.tcp, "reader").await;
    let mut paster = TcpClient::with_nick(server.tcp, "paster").await;
    let mut other = TcpClient::with_nick(server.tcp, "other").await;
    reader.expect_renamed("other").await;

    let paste: String = (0..45).map(|i| format!("paste line {i}\n")).collect();
    paster.send_raw(paste.as_bytes()).await;
    // The paste is being paced now; another member's line must not wait for it to finish.
    reader.expect("<paster> paste line 6").await;
    other.send("not stuck behind the paste").await;

    let mut lines = Vec::new();
    while lines.len() < 39 {
        lines.push(reader.recv().await);
    }
    let ours = lines
        .iter()
        .position(|l| l == "<other> not stuck behind the paste")
        .expect("the other member's line arrived");
    assert!(
        ours < 30,
        "the other member's line came only after the paste: {lines:?}"
    );
    let pasted: Vec<&String> = lines.iter().filter(|l| l.starts_with("<paster>")).collect();
    let expected: Vec<String> = (7..45)
        .map(|i| format!("<paster> paste line {i}"))
        .collect();
    assert_eq!(
        pasted,
        expected.iter().collect::<Vec<_>>(),
        "in order, none lost"
    );
    // The paster was told, once, that it is being paced.
    let told = paster
        .expect("! slow down: your lines are being delayed")
        .await;
    assert!(told.iter().all(|l| !l.starts_with("! ")), "{told:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_tcp_flood_is_disconnected_with_a_reason() {
    let server = start_server("--rate 20 --burst 5 --flood-kick 1s").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let mut flooder = TcpClient::with_nick(server.tcp, "flooder").await;
    watcher.expect_renamed("flooder").await;
    // Far more than 1 s worth at 20/s; bounded.
    let flood: String = (0..400).map(|i| format!("flood {i}\n")).collect();
    flooder.send_raw(flood.as_bytes()).await;
    let before = watcher.expect("* flooder left (flooding)").await;
    assert!(
        before.iter().all(|l| l.starts_with("<flooder> flood ")),
        "{before:?}"
    );
    assert!(before.len() < 400, "the flood was cut short");
    let said = flooder.expect_closed().await;
    assert!(
        said.contains(&"! disconnected: flooding".to_string()),
        "{said:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn udp_excess_is_dropped_with_one_warning_and_a_sustained_flood_is_evicted() {
    let server = start_server("--rate 10 --burst 3 --flood-kick 1s").await;
    let mut watcher = TcpClient::with_nick(server.tcp, "watcher").await;
    let udp = UdpClient::join(server.udp).await;
    watcher.expect(&format!("* {} joined", udp.name)).await;
    for i in 0..10 {
        udp.send(&format!("burst {i}")).await;
    }
    // The burst allowance goes through, the rest is dropped with one warning.
    assert_eq!(udp.recv().await, "! slow down");
    for i in 0..3 {
        assert_eq!(watcher.recv().await, format!("<{}> burst {i}", udp.name));
    }
    // Keep flooding (bounded: at most 10 s) until evicted.
    let name = udp.name.clone();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let flooder = tokio::spawn(async move {
        for i in 0..2000 {
            udp.send(&format!("more {i}")).await;
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
            }
        }
        udp
    });
    let seen = watcher.expect(&format!("* {name} left (flooding)")).await;
    assert!(
        seen.len() < 40,
        "most of the flood was dropped: {}",
        seen.len()
    );
    // A kicked address is ignored for a while: more datagrams do not bring it back.
    watcher.send("/who").await;
    assert_eq!(watcher.recv().await, "* 1 here:");
    let _ = stop.send(());
    let udp = tokio::time::timeout(TIMEOUT, flooder)
        .await
        .expect("flooder loop ends")
        .expect("flooder task");
    let mut said = Vec::new();
    loop {
        let line = udp.recv().await;
        let done = line == "! disconnected: flooding";
        said.push(line);
        if done || said.len() > 10 {
            break;
        }
    }
    assert!(
        said.contains(&"! disconnected: flooding".to_string()),
        "{said:?}"
    );
    server.shutdown().await;
}
