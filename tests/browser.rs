//! The chat page in a real browser: Debian's `chromium`, driven over WebDriver by `chromedriver`
//! (package `chromium-driver`; `.ci/run` installs both). The page loads, shows the welcome, sends a
//! line a TCP member receives, shows one it sends, follows a room switch, and is photographed at a
//! desktop and a phone size into `target/`; when the server restarts, the page reconnects.
mod common;

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use chatd::config::ServerArgs;
use chatd::server::{self, Listeners};
use common::{start_server, TcpClient, TIMEOUT};

/// Starting a browser on a loaded two-core machine can take a while; everything after it is
/// bounded by the helpers' TIMEOUT.
const BROWSER_START: Duration = Duration::from_secs(30);

/// Finds a program on PATH or panics naming the Debian package that provides it: this test never
/// skips.
fn require(program: &str, package: &str) -> String {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    });
    match found {
        Some(path) => path.display().to_string(),
        None => panic!(
            "{program} not found: install the Debian package {package} \
             (apt-get install chromium chromium-driver; .ci/run does)"
        ),
    }
}

/// Starts chromedriver on a free port and waits for it to say it is ready.
async fn chromedriver() -> (Child, u16) {
    let driver = require("chromedriver", "chromium-driver");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let stdout = child.stdout.take().expect("stdout");
    let ready = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("started successfully") {
                return;
            }
        }
        panic!("chromedriver exited before it was ready");
    };
    tokio::time::timeout(BROWSER_START, ready)
        .await
        .expect("chromedriver ready in time");
    (child, port)
}

async fn browser(port: u16) -> Client {
    let chromium = require("chromium", "chromium");
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--hide-scrollbars"],
        }),
    );
    let connect = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await;
    tokio::time::timeout(BROWSER_START, async { connect })
        .await
        .expect("browser starts in time")
        .expect("a WebDriver session")
}

/// Waits (in the page, on DOM changes, not by polling) until the chat log has a line that equals
/// `line`, or starts with it when `prefix`.
async fn wait_line(client: &Client, line: &str, prefix: bool) {
    let script = r#"
        const [needle, prefix, done] = arguments;
        const log = document.getElementById("log");
        const has = () => [...log.children].some(l =>
            prefix ? l.dataset.line.startsWith(needle) : l.dataset.line === needle);
        if (has()) return done(true);
        new MutationObserver((_, seen) => {
            if (has()) { seen.disconnect(); done(true); }
        }).observe(log, { childList: true });
    "#;
    let waited = client.execute_async(script, vec![json!(line), json!(prefix)]);
    match tokio::time::timeout(TIMEOUT, waited).await {
        Ok(Ok(_)) => {}
        other => {
            let text = client
                .execute("return document.getElementById('log').innerText", vec![])
                .await
                .unwrap_or(Value::Null);
            panic!("the page never showed {line:?} ({other:?}); it shows {text}");
        }
    }
}

/// Waits until `selector`'s text contains `text` (on DOM changes).
async fn wait_text(client: &Client, selector: &str, text: &str) {
    let script = r#"
        const [selector, text, done] = arguments;
        const el = document.querySelector(selector);
        const has = () => el.textContent.includes(text);
        if (has()) return done(true);
        new MutationObserver((_, seen) => {
            if (has()) { seen.disconnect(); done(true); }
        }).observe(el, { childList: true, subtree: true, characterData: true });
    "#;
    let waited = client.execute_async(script, vec![json!(selector), json!(text)]);
    match tokio::time::timeout(TIMEOUT, waited).await {
        Ok(Ok(_)) => {}
        other => panic!("{selector} never showed {text:?}: {other:?}"),
    }
}

async fn type_line(client: &Client, line: &str) {
    let input = client.find(Locator::Id("input")).await.expect("input box");
    input.send_keys(line).await.expect("type");
    client
        .find(Locator::Id("send"))
        .await
        .expect("send button")
        .click()
        .await
        .expect("send");
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name);
    std::fs::write(&path, png).expect("write the screenshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_chats_with_a_tcp_member_and_follows_rooms_in_chromium() {
    let server = start_server("").await;
    let mut tcp = TcpClient::with_nick(server.tcp, "nc").await;
    tcp.send("before the browser came").await;
    let (_driver, port) = chromedriver().await;
    let client = browser(port).await;
    let run = async {
        client
            .goto(&format!("http://{}/", server.http))
            .await
            .expect("load the page");
        wait_line(&client, "* welcome to chatd - you are ", true).await;
        // History arrived with the welcome.
        wait_line(&client, "* end of history", false).await;
        let joined = tcp.expect_match(|l| l.ends_with(" joined")).await;
        assert!(joined.is_empty(), "{joined:?}");
        type_line(&client, "/nick chromie").await;
        wait_line(&client, "* you are now known as chromie", false).await;
        tcp.expect_renamed("chromie").await;

        type_line(&client, "hello from chromium").await;
        tcp.expect("<chromie> hello from chromium").await;
        tcp.send("hello <b>browser</b> & all").await;
        // Shown as the text it is, not as markup.
        wait_line(&client, "<nc> hello <b>browser</b> & all", false).await;
        let bold = client
            .find_all(Locator::Css("#log b"))
            .await
            .expect("query");
        assert!(bold.is_empty(), "server text was inserted as HTML");
        wait_text(&client, "#members", "nc").await;
        wait_text(&client, "#rooms", "#lobby").await;

        // Into another room, from the input box like any command.
        type_line(&client, "/join dev").await;
        wait_line(&client, "* you are in #dev with 0 others", false).await;
        wait_text(&client, "#room-name", "#dev").await;
        tcp.send("/join dev").await;
        tcp.expect("* you are in #dev with 1 other").await;
        wait_line(&client, "* nc joined #dev", false).await;
        tcp.send("welcome to dev").await;
        wait_line(&client, "<nc> welcome to dev", false).await;
        type_line(&client, "thanks").await;
        tcp.expect("<chromie> thanks").await;
        wait_text(&client, "#rooms", "#dev").await;
        wait_text(&client, "#members", "nc").await;
        screenshot(&client, "browser-desktop.png").await;

        client.set_window_size(390, 844).await.expect("phone size");
        tcp.send("seen on a phone").await;
        wait_line(&client, "<nc> seen on a phone", false).await;
        screenshot(&client, "browser-phone.png").await;
    };
    run.await;

    // The server goes away and comes back on the same port: the page says so and reconnects.
    let http = server.http;
    server.shutdown().await;
    wait_line(&client, "* server shutting down", false).await;
    wait_text(&client, "#status", "retrying").await;
    let args: ServerArgs = format!("--http {} --bind 127.0.0.1", http.port())
        .parse()
        .expect("arguments");
    let listeners = Listeners::bind(&args)
        .await
        .expect("bind the same port again");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let again = tokio::spawn(server::run(args.config(), listeners, async move {
        let _ = stopped.await;
    }));
    wait_text(&client, "#status", "connected as guest-1").await;
    let _ = tokio::time::timeout(TIMEOUT, client.close()).await;
    let _ = stop.send(());
    tokio::time::timeout(TIMEOUT, again)
        .await
        .expect("second server stops")
        .expect("no panic")
        .expect("second server ran");
}

/// Runs `condition` (a JavaScript function body over `arg`) in the page until it returns true,
/// checked on every DOM change; panics with `what` if it never does.
async fn wait_until(client: &Client, condition: &str, arg: Value, what: &str) {
    let script = format!(
        r#"
        const [arg, done] = arguments;
        const holds = () => {{ {condition} }};
        if (holds()) return done(true);
        new MutationObserver((_, seen) => {{
            if (holds()) {{ seen.disconnect(); done(true); }}
        }}).observe(document.body, {{ childList: true, subtree: true, characterData: true }});
    "#
    );
    let waited = client.execute_async(&script, vec![arg]);
    match tokio::time::timeout(TIMEOUT, waited).await {
        Ok(Ok(_)) => {}
        other => {
            let text = client
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or(Value::Null);
            panic!("{what} never happened ({other:?}); the page shows {text}");
        }
    }
}

/// How the page labels the sender of the log line `line`.
async fn name_shown(client: &Client, line: &str) -> String {
    let script = r#"
        const line = [...document.getElementById("log").children]
            .find(l => l.dataset.line === arguments[0]);
        return line ? line.querySelector(".name").textContent : null;
    "#;
    let shown = client
        .execute(script, vec![json!(line)])
        .await
        .expect("run script");
    shown.as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_its_own_rename_and_private_lines_both_ways_in_chromium() {
    let server = start_server("").await;
    let mut tcp = TcpClient::with_nick(server.tcp, "nc").await;
    let (_driver, port) = chromedriver().await;
    let client = browser(port).await;
    client
        .goto(&format!("http://{}/", server.http))
        .await
        .expect("load the page");
    wait_line(&client, "* welcome to chatd - you are ", true).await;
    tcp.expect_match(|l| l.ends_with(" joined")).await;
    wait_text(&client, "#members", "guest-").await;

    // Its own /nick: the member list follows, with the old name gone.
    type_line(&client, "/nick chromie").await;
    wait_line(&client, "* you are now known as chromie", false).await;
    let members = r##"
        const names = [...document.querySelectorAll("#members li")].map(li => li.textContent);
        return names.some(n => n.startsWith(arg)) && !names.some(n => n.startsWith("guest-"));
    "##;
    wait_until(
        &client,
        members,
        json!("chromie"),
        "the member list showing chromie instead of the old name",
    )
    .await;

    // A /msg it sends shows in its log, as going to nc.
    type_line(&client, "/msg nc psst").await;
    tcp.expect("[private] <chromie> psst").await;
    wait_line(&client, "[private to nc] psst", false).await;
    let to = name_shown(&client, "[private to nc] psst").await;
    assert_eq!(to, "you → nc", "a sent private line reads as going to nc");

    // One it receives reads as coming from nc, not "→ nc".
    tcp.send("/msg chromie psst back").await;
    wait_line(&client, "[private] <nc> psst back", false).await;
    let from = name_shown(&client, "[private] <nc> psst back").await;
    assert_eq!(from, "nc → you", "a received private line reads as from nc");

    let _ = tokio::time::timeout(TIMEOUT, client.close()).await;
    server.shutdown().await;
}
