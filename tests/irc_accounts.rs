//! Accounts and server operators on the IRC face (`--irc`), over real sockets: SASL PLAIN,
//! account-tag and extended-join, the NickServ service, OPER and what server operators do.
//! Accounts are chatd's: what is registered on one face logs in on the other.

mod common;

use std::net::SocketAddr;

use common::irc::{join, plain, sasl_register};
use common::{register, start_server, TcpClient, OPER_ROOT};

/// Cheap hashing, so a debug build on a loaded machine answers within the test's waits.
const FLAGS: &str = "--irc 0 --name chatd --argon2-memory 64 --argon2-passes 1";

/// Registers an IRC client as `nick` with `caps` on, waiting for the end of its welcome.
async fn irc(addr: SocketAddr, nick: &str, caps: &str) -> TcpClient {
    let mut client = TcpClient::connect_raw(addr).await;
    if !caps.is_empty() {
        client.send(&format!("CAP REQ :{caps}")).await;
        client.expect_match(|l| l.contains(" ACK ")).await;
        client.send("CAP END").await;
    }
    client.send(&format!("NICK {nick}")).await;
    client.send(&format!("USER {nick} 0 * :{nick} real")).await;
    client
        .expect_match(|l| l.contains(" 376 ") || l.contains(" 422 "))
        .await;
    client
}

/// Connects, logs in to `name` with SASL PLAIN before registering as `nick`, with `caps` on.
async fn irc_sasl(addr: SocketAddr, nick: &str, caps: &str, name: &str, pw: &str) -> TcpClient {
    let mut client = TcpClient::connect_raw(addr).await;
    sasl_register(&mut client, nick, caps, name, pw).await;
    client
}

/// The first line from `client` that contains `part` (the others are skipped).
async fn line_with(client: &mut TcpClient, part: &str) -> String {
    loop {
        let line = client.recv().await;
        if line.contains(part) {
            return line;
        }
    }
}

#[tokio::test]
async fn sasl_plain_refuses_a_wrong_password_then_logs_in_to_the_line_registered_account() {
    let server = start_server(FLAGS).await;
    let irc_addr = server.irc.expect("irc");
    let _owner = register(server.tcp, "alice", "sesame").await;
    drop(_owner);

    let mut client = TcpClient::connect_raw(irc_addr).await;
    client.send("CAP LS 302").await;
    let ls = client.recv().await;
    assert!(ls.contains(" sasl=PLAIN"), "{ls}");
    assert!(ls.contains(" account-tag"), "{ls}");
    client.send("CAP REQ :sasl").await;
    client.expect(":chatd CAP * ACK sasl").await;
    client.send("NICK al").await;
    client.send("USER al 0 * :Al").await;
    client.send("AUTHENTICATE SCRAM-SHA-256").await;
    client
        .expect(":chatd 908 al PLAIN :are available SASL mechanisms")
        .await;
    client
        .expect(":chatd 904 al :SASL authentication failed")
        .await;
    client.send("AUTHENTICATE PLAIN").await;
    client.expect("AUTHENTICATE +").await;
    client
        .send(&format!("AUTHENTICATE {}", plain("alice", "wrong")))
        .await;
    client
        .expect(":chatd 904 al :SASL authentication failed")
        .await;

    // Registration waits for the exchange: CAP END came after the AUTHENTICATE lines.
    client.send("AUTHENTICATE PLAIN").await;
    client
        .send(&format!("AUTHENTICATE {}", plain("alice", "sesame")))
        .await;
    client.send("CAP END").await;
    let before = client
        .expect(":chatd 900 al al!chat@chatd alice :You are now logged in as alice")
        .await;
    assert!(
        before.iter().all(|l| !l.contains(" 001 ")),
        "registered before the check: {before:?}"
    );
    client
        .expect(":chatd 903 al :SASL authentication successful")
        .await;
    // Logged in as IRC clients expect: under the nick it asked for, apart from the account.
    let welcome = client.recv().await;
    assert!(welcome.starts_with(":chatd 001 al "), "{welcome}");
    client
        .expect_match(|l| l.contains(" 376 ") || l.contains(" 422 "))
        .await;
    client.send("WHOIS al").await;
    client
        .expect(":chatd 330 al al alice :is logged in as")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn account_tag_and_extended_join_name_the_senders_account() {
    let server = start_server(FLAGS).await;
    let irc_addr = server.irc.expect("irc");
    drop(register(server.tcp, "alice", "sesame").await);

    let mut watcher = irc(irc_addr, "watcher", "account-tag extended-join").await;
    join(&mut watcher, "#den").await;
    let mut line = TcpClient::with_nick(server.tcp, "bob").await;
    line.send("/join #den").await;
    line.expect_match(|l| l.starts_with("* you are in #den"))
        .await;
    assert_eq!(
        line_with(&mut watcher, "JOIN #den").await,
        ":bob!chat@chatd JOIN #den * bob"
    );

    let mut alice = irc_sasl(irc_addr, "al", "", "alice", "sesame").await;
    join(&mut alice, "#den").await;
    assert_eq!(
        line_with(&mut watcher, "JOIN #den").await,
        "@account=alice :al!chat@chatd JOIN #den alice :al real"
    );
    alice.send("PRIVMSG #den :hi all").await;
    assert_eq!(
        line_with(&mut watcher, "PRIVMSG #den").await,
        "@account=alice :al!chat@chatd PRIVMSG #den :hi all"
    );
    line.expect("<al> hi all").await;
    alice.send("PRIVMSG watcher :psst").await;
    assert_eq!(
        line_with(&mut watcher, "PRIVMSG watcher").await,
        "@account=alice :al!chat@chatd PRIVMSG watcher psst"
    );
    // Not logged in: no tag.
    line.send("hello").await;
    assert_eq!(
        line_with(&mut watcher, "PRIVMSG #den").await,
        ":bob!chat@chatd PRIVMSG #den hello"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn nickserv_registers_and_identifies_on_the_same_accounts_as_the_line_protocol() {
    let server = start_server(FLAGS).await;
    let irc_addr = server.irc.expect("irc");
    let mut carol = irc(irc_addr, "carol", "").await;
    carol.send("PRIVMSG NickServ :REGISTER pw-of-carol").await;
    carol
        .expect(
            ":NickServ!NickServ@services.chatd NOTICE carol :carol is registered to you; you are logged in.",
        )
        .await;
    carol.send("WHOIS carol").await;
    carol
        .expect(":chatd 330 carol carol carol :is logged in as")
        .await;
    carol.send("QUIT :bye").await;
    carol.expect_closed().await;

    // Registered over IRC: a line member logs in to it.
    let mut line = TcpClient::with_nick(server.tcp, "someone").await;
    line.send("/login carol pw-of-carol").await;
    line.expect("* you are logged in as carol").await;
    line.send("/quit").await;
    line.expect_closed().await;

    let mut dave = irc(irc_addr, "dave", "").await;
    dave.send("PRIVMSG NickServ :IDENTIFY carol wrong").await;
    dave.expect(":NickServ!NickServ@services.chatd NOTICE dave :wrong name or password")
        .await;
    dave.send("NS HELP").await;
    dave.expect_match(|l| l.contains("NOTICE dave :REGISTER <password>"))
        .await;
    dave.send("PRIVMSG NickServ :IDENTIFY carol pw-of-carol")
        .await;
    // Identified under the nick it has: the account is apart from the nick, as on IRC.
    dave.expect(":NickServ!NickServ@services.chatd NOTICE dave :You are now identified for carol.")
        .await;
    dave.send("WHOIS dave").await;
    dave.expect(":chatd 330 dave dave carol :is logged in as")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn oper_gives_381_to_server_operators_only_and_kill_and_wallops_are_theirs() {
    let server = start_server(&format!("{FLAGS} {OPER_ROOT}")).await;
    let irc_addr = server.irc.expect("irc");
    // The operator's name is nobody's nick, nor a look-alike of it, until it logs in.
    let mut boss = TcpClient::connect_raw(irc_addr).await;
    boss.send("NICK root").await;
    boss.send("USER boss 0 * :boss").await;
    boss.expect(":chatd 433 * root :Nickname is already in use")
        .await;
    boss.send("NICK R00T").await;
    boss.expect(":chatd 433 * R00T :Nickname is already in use")
        .await;
    boss.send("NICK boss").await;
    boss.expect_match(|l| l.contains(" 376 ") || l.contains(" 422 "))
        .await;
    let mut root = boss;
    let mut bob = irc(irc_addr, "bob", "").await;
    let mut victim = irc(irc_addr, "victim", "").await;
    let mut line = TcpClient::with_nick(server.tcp, "liner").await;

    // Not server operators: refused with IRC's numerics, before chatd's own checks.
    bob.send("OPER bob whatever").await;
    bob.expect(":chatd 491 bob :No O-lines for your host").await;
    bob.send("OPER root wrong").await;
    bob.expect(":chatd 464 bob :Password incorrect").await;
    bob.send("KILL victim :go").await;
    bob.expect(":chatd 481 bob :Permission Denied- You're not an IRC operator")
        .await;
    bob.send("WALLOPS :hi").await;
    bob.expect(":chatd 481 bob :Permission Denied- You're not an IRC operator")
        .await;

    root.send("OPER root wrong").await;
    root.expect(":chatd 464 boss :Password incorrect").await;
    root.send("WALLOPS :hi").await;
    root.expect(":chatd 481 boss :Permission Denied- You're not an IRC operator")
        .await;
    root.send("OPER root pw-root").await;
    root.expect(":chatd 381 boss :You are now an IRC operator")
        .await;
    root.expect(":boss!chat@chatd MODE boss +o").await;
    root.send("WHOIS boss").await;
    root.expect(":chatd 313 boss boss :is an IRC operator")
        .await;

    root.send("WALLOPS :maintenance at noon").await;
    line.expect("* [server] boss: maintenance at noon").await;

    root.send("KILL victim :spamming").await;
    let last = victim.expect_closed().await;
    assert!(
        last.iter().any(|l| l.starts_with("ERROR ")),
        "killed without ERROR: {last:?}"
    );
    root.send("WHOIS victim").await;
    root.expect(":chatd 401 boss victim :No such nick/channel")
        .await;
    // SASL checks the configured hash too, and then the operator's name is its own nick.
    let mut sasl = irc_sasl(irc_addr, "root", "", "root", "pw-root").await;
    sasl.send("WHOIS root").await;
    sasl.expect(":chatd 313 root root :is an IRC operator")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_privmsg_to_an_absent_account_is_kept_and_reaches_its_irc_login_with_its_time() {
    let server = start_server(FLAGS).await;
    let irc_addr = server.irc.expect("irc");
    let mut owner = register(server.tcp, "bob", "pw-of-bob").await;
    owner.send("/quit").await;
    owner.expect_closed().await;

    let mut alice = irc(irc_addr, "alice", "").await;
    let sent_after = std::time::SystemTime::now() - std::time::Duration::from_millis(1);
    alice.send("PRIVMSG bob :kept for later").await;
    assert_eq!(
        line_with(&mut alice, "NOTICE").await,
        ":chatd NOTICE alice :kept for bob, who is away; delivered when they log in"
    );
    let sent_before = std::time::SystemTime::now();
    // Apart in time, so the delivery's own time cannot pass for the sending's.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let mut bob = irc(irc_addr, "robert", "server-time").await;
    bob.send("PRIVMSG NickServ :IDENTIFY bob pw-of-bob").await;
    let kept = line_with(&mut bob, "PRIVMSG robert").await;
    let (tags, rest) = kept.split_once(' ').expect("tags");
    assert_eq!(rest, ":alice!chat@chatd PRIVMSG robert :kept for later");
    let at = tags
        .strip_prefix("@time=")
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("no time tag: {kept}"));
    assert!(
        at >= sent_after && at <= sent_before,
        "{kept}: the time is not when it was sent"
    );
    server.shutdown().await;
}

/// A channel line is formatted once per mix of the capabilities that change its bytes and shared
/// by the readers with that mix (`room::shown`): each reader must still get its own mix's form,
/// whichever reader made it first.
#[tokio::test]
async fn each_capability_mix_gets_its_own_form_of_one_shared_line() {
    let server = start_server(FLAGS).await;
    let irc_addr = server.irc.expect("irc");
    drop(register(server.tcp, "alice", "sesame").await);

    let mixes = [
        ("plain1", ""),
        ("plain2", ""),
        ("timed1", "server-time"),
        ("timed2", "server-time"),
        ("tagged", "server-time message-tags"),
        ("acct", "account-tag"),
        ("echoer", "echo-message"),
    ];
    let mut readers = Vec::new();
    for (nick, caps) in mixes {
        let mut client = irc(irc_addr, nick, caps).await;
        join(&mut client, "#den").await;
        readers.push((nick, client));
    }
    let mut alice = irc_sasl(
        irc_addr,
        "al",
        "message-tags echo-message",
        "alice",
        "sesame",
    )
    .await;
    join(&mut alice, "#den").await;
    alice.send("@+draft/react=x PRIVMSG #den :hi all").await;

    let mut got = std::collections::HashMap::new();
    for (nick, client) in &mut readers {
        got.insert(*nick, line_with(client, "PRIVMSG #den").await);
    }
    let plain = ":al!chat@chatd PRIVMSG #den :hi all";
    assert_eq!(got["plain1"], plain);
    assert_eq!(got["plain2"], plain);
    assert_eq!(
        got["echoer"], plain,
        "the echo-message mix reads the plain form"
    );
    assert_eq!(got["acct"], format!("@account=alice {plain}"));
    let timed = &got["timed1"];
    assert!(
        timed.starts_with("@time=") && timed.ends_with(&format!("Z {plain}")),
        "{timed}"
    );
    assert!(
        !timed.contains("msgid") && !timed.contains("react"),
        "{timed}"
    );
    assert_eq!(&got["timed2"], timed, "one event, one time");
    let tagged = &got["tagged"];
    let (tags, rest) = tagged.split_once(' ').expect("tags");
    assert_eq!(rest, plain);
    assert!(tags.starts_with("@time="), "{tagged}");
    assert!(tags.contains(";msgid="), "{tagged}");
    assert!(tags.ends_with(";+draft/react=x"), "{tagged}");
    // The sender's own echo (a labeled-less command, so from the shared forms too): its msgid
    // and client tag, no time and no account (it asked for neither).
    let echo = line_with(&mut alice, "PRIVMSG #den").await;
    assert!(echo.starts_with("@msgid="), "{echo}");
    assert!(
        echo.ends_with(&format!(";+draft/react=x {plain}")),
        "{echo}"
    );
    server.shutdown().await;
}
