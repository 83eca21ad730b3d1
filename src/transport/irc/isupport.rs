//! The RPL_ISUPPORT (005) tokens: what this server's limits and features are, built from its
//! settings so every number is the one the server enforces, and split into lines of at most
//! [`TOKENS_PER_LINE`] tokens.

use super::message::Message;
use super::nick;
use super::numeric::Numeric;

/// Most tokens on one 005 line (with the nick and the trailing text: 15 parameters).
pub const TOKENS_PER_LINE: usize = 13;

/// The settings the tokens are made from (the connection handler fills it from chatd's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// NETWORK: the network's name.
    pub network: String,
    /// CHANNELLEN: longest channel name with its `#`, in characters.
    pub channel_len: usize,
    /// TOPICLEN, in characters.
    pub topic_len: usize,
    /// KICKLEN: longest kick reason.
    pub kick_len: usize,
    /// AWAYLEN: longest away message.
    pub away_len: usize,
    /// CHANLIMIT: most channels one member may be in (`--max-rooms-per-member`).
    pub max_channels: usize,
    /// TARGMAX and MAXTARGETS: most targets in one PRIVMSG or NOTICE.
    pub max_targets: usize,
    /// TARGMAX for JOIN and PART: most channels in one.
    pub max_join_targets: usize,
    /// CHATHISTORY: most messages one CHATHISTORY request returns (0: not offered).
    pub chathistory_max: usize,
    /// BOT: the user mode that marks bots, when the server has one.
    pub bot_mode: Option<char>,
}

/// The tokens, in the order they are sent.
pub fn tokens(settings: &Settings) -> Vec<String> {
    let targets = settings.max_targets;
    let joins = settings.max_join_targets;
    let mut tokens = vec![format!("AWAYLEN={}", settings.away_len)];
    if let Some(mode) = settings.bot_mode {
        tokens.push(format!("BOT={mode}"));
    }
    tokens.extend([
        format!("CASEMAPPING={}", nick::CASEMAPPING),
        format!("CHANLIMIT=#:{}", settings.max_channels),
        // The room modes of `crate::room::modes`: bans the list, a key, a limit, five flags.
        "CHANMODES=b,k,l,imnst".to_string(),
        format!("CHANNELLEN={}", settings.channel_len),
        "CHANTYPES=#".to_string(),
    ]);
    if settings.chathistory_max > 0 {
        tokens.push(format!("CHATHISTORY={}", settings.chathistory_max));
    }
    tokens.extend([
        format!("KICKLEN={}", settings.kick_len),
        format!("MAXTARGETS={targets}"),
        "MSGREFTYPES=msgid,timestamp".to_string(),
        format!("NETWORK={}", escape_value(&settings.network)),
        format!("NICKLEN={}", nick::NICKLEN),
        "PREFIX=(ov)@+".to_string(),
        format!(
            "TARGMAX=JOIN:{joins},KICK:1,NAMES:1,NOTICE:{targets},PART:{joins},PRIVMSG:{targets},WHOIS:1"
        ),
        format!("TOPICLEN={}", settings.topic_len),
        "UTF8ONLY".to_string(),
        "WHOX".to_string(),
    ]);
    tokens
}

/// The 005 lines from `server` to `nick`.
pub fn lines(settings: &Settings, server: &str, nick: &str) -> Vec<Message> {
    tokens(settings)
        .chunks(TOKENS_PER_LINE)
        .map(|chunk| Numeric::ISupport { tokens: chunk }.to(server, nick))
        .collect()
}

/// ISUPPORT's value escapes: `\x20` for a space, `\x5C` for `\`, `\x3D` for `=`.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ' ' => out.push_str("\\x20"),
            '\\' => out.push_str("\\x5C"),
            '=' => out.push_str("\\x3D"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::message::{parse, MAX_BODY_BYTES};
    use super::*;

    fn settings() -> Settings {
        Settings {
            network: "chatd".into(),
            channel_len: 33,
            topic_len: 300,
            kick_len: 300,
            away_len: 200,
            max_channels: 100,
            max_targets: 4,
            max_join_targets: 10,
            chathistory_max: 1000,
            bot_mode: None,
        }
    }

    #[test]
    fn tokens_say_what_the_settings_are() {
        let tokens = tokens(&settings());
        for want in [
            "CHANTYPES=#",
            "PREFIX=(ov)@+",
            "CHANMODES=b,k,l,imnst",
            "CASEMAPPING=rfc8265",
            "NICKLEN=32",
            "CHANNELLEN=33",
            "TOPICLEN=300",
            "NETWORK=chatd",
            "CHATHISTORY=1000",
            "MSGREFTYPES=msgid,timestamp",
            "UTF8ONLY",
            "CHANLIMIT=#:100",
            "MAXTARGETS=4",
            "KICKLEN=300",
            "AWAYLEN=200",
        ] {
            assert!(tokens.iter().any(|t| t == want), "no {want} in {tokens:?}");
        }
        let targmax = tokens
            .iter()
            .find(|t| t.starts_with("TARGMAX="))
            .expect("TARGMAX");
        assert!(targmax.contains("PRIVMSG:4") && targmax.contains("JOIN:10"));
        assert!(!tokens.iter().any(|t| t.starts_with("BOT")));
        let names: Vec<_> = tokens.iter().map(|t| t.split('=').next()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "a token twice in {tokens:?}");
    }

    #[test]
    fn optional_tokens_follow_their_settings() {
        let mut s = settings();
        s.chathistory_max = 0;
        s.bot_mode = Some('B');
        let tokens = tokens(&s);
        assert!(!tokens.iter().any(|t| t.starts_with("CHATHISTORY")));
        assert!(tokens.iter().any(|t| t == "BOT=B"));
    }

    #[test]
    fn network_names_are_escaped() {
        let mut s = settings();
        s.network = "my net=a\\b".into();
        assert!(tokens(&s).contains(&"NETWORK=my\\x20net\\x3Da\\x5Cb".to_string()));
    }

    #[test]
    fn lines_hold_at_most_thirteen_tokens_and_fit() {
        let lines = lines(&settings(), "chatd.local", "ann");
        let all = tokens(&settings());
        assert_eq!(lines.len(), all.len().div_ceil(TOKENS_PER_LINE));
        assert!(lines.len() >= 2, "the test should cover a split");
        let mut seen = Vec::new();
        for line in &lines {
            let text = line.line();
            assert!(text.len() <= MAX_BODY_BYTES, "{text}");
            let back = parse(text.as_bytes()).expect("parses");
            assert_eq!(back.command, "005");
            assert_eq!(back.params[0], "ann");
            assert_eq!(
                back.params.last().map(String::as_str),
                Some("are supported by this server")
            );
            let tokens = &back.params[1..back.params.len() - 1];
            assert!(tokens.len() <= TOKENS_PER_LINE);
            seen.extend(tokens.iter().cloned());
        }
        assert_eq!(seen, all);
    }
}
