//! Every numeric reply the IRC face sends, in one table: its code, its typed arguments and its
//! parameters side by side (the idea of Libera-Chat/sable's `messages/numeric.rs`). A handler says
//! `Numeric::NotOnChannel { channel }.to(server, nick)`; a missing or wrong argument does not
//! compile, and no reply text is written anywhere else. Texts follow modern.ircdocs.horse.

use super::message::Message;

/// `vec![a.to_string(), ...]`: a reply's parameters after the client's nick.
macro_rules! p {
    ($($param:expr),* $(,)?) => { vec![$($param.to_string()),*] };
}

/// Declares [`Numeric`] from rows of `Name { field: type, ... } = "code" => params;`.
macro_rules! numerics {
    ($( $(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? } = $code:literal => $params:expr; )*) => {
        /// A numeric reply with its arguments; [`Numeric::to`] makes the line.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Numeric<'a> {
            $( $(#[$doc])* $name { $($field: $ty),* }, )*
        }

        /// Every code in the table, in its order (for the tests' uniqueness check).
        pub const ALL_CODES: &[&str] = &[$($code),*];

        impl Numeric<'_> {
            /// The three digits.
            pub fn code(&self) -> &'static str {
                match self { $( Numeric::$name { .. } => $code, )* }
            }

            /// The parameters after the client's nick.
            pub fn params(&self) -> Vec<String> {
                match self { $( Numeric::$name { $($field),* } => { $(let $field = *$field;)* $params } )* }
            }
        }
    };
}

numerics! {
    /// 001 RPL_WELCOME: registration is done.
    Welcome { network: &'a str, mask: &'a str } = "001" =>
        p![format!("Welcome to the {network} IRC Network {mask}")];
    /// 002 RPL_YOURHOST.
    YourHost { server: &'a str, version: &'a str } = "002" =>
        p![format!("Your host is {server}, running version {version}")];
    /// 003 RPL_CREATED.
    Created { when: &'a str } = "003" => p![format!("This server was created {when}")];
    /// 004 RPL_MYINFO: user modes, channel modes, channel modes with a parameter.
    MyInfo { server: &'a str, version: &'a str, user_modes: &'a str, channel_modes: &'a str, param_modes: &'a str } = "004" =>
        p![server, version, user_modes, channel_modes, param_modes];
    /// 005 RPL_ISUPPORT: up to 13 tokens (see `isupport`).
    ISupport { tokens: &'a [String] } = "005" => {
        let mut params = tokens.to_vec();
        params.push("are supported by this server".to_string());
        params
    };
    /// 221 RPL_UMODEIS.
    UModeIs { modes: &'a str } = "221" => p![modes];
    /// 251 RPL_LUSERCLIENT.
    LuserClient { users: usize, invisible: usize, servers: usize } = "251" =>
        p![format!("There are {users} users and {invisible} invisible on {servers} servers")];
    /// 252 RPL_LUSEROP.
    LuserOp { operators: usize } = "252" => p![operators, "operator(s) online"];
    /// 253 RPL_LUSERUNKNOWN: connections not registered yet.
    LuserUnknown { connections: usize } = "253" => p![connections, "unknown connection(s)"];
    /// 254 RPL_LUSERCHANNELS.
    LuserChannels { channels: usize } = "254" => p![channels, "channels formed"];
    /// 255 RPL_LUSERME.
    LuserMe { clients: usize, servers: usize } = "255" =>
        p![format!("I have {clients} clients and {servers} servers")];
    /// 265 RPL_LOCALUSERS.
    LocalUsers { users: usize, max: usize } = "265" =>
        p![users, max, format!("Current local users {users}, max {max}")];
    /// 266 RPL_GLOBALUSERS.
    GlobalUsers { users: usize, max: usize } = "266" =>
        p![users, max, format!("Current global users {users}, max {max}")];
    /// 301 RPL_AWAY: the target of a message or WHOIS is away.
    Away { nick: &'a str, message: &'a str } = "301" => p![nick, message];
    /// 302 RPL_USERHOST: `nick[*]=+|-user@host` replies, space separated.
    UserHost { replies: &'a str } = "302" => p![replies];
    /// 303 RPL_ISON: the nicks that are online, space separated.
    IsOn { nicks: &'a str } = "303" => p![nicks];
    /// 305 RPL_UNAWAY.
    UnAway {} = "305" => p!["You are no longer marked as being away"];
    /// 306 RPL_NOWAWAY.
    NowAway {} = "306" => p!["You have been marked as being away"];
    /// 311 RPL_WHOISUSER.
    WhoisUser { nick: &'a str, user: &'a str, host: &'a str, realname: &'a str } = "311" =>
        p![nick, user, host, "*", realname];
    /// 312 RPL_WHOISSERVER.
    WhoisServer { nick: &'a str, server: &'a str, info: &'a str } = "312" => p![nick, server, info];
    /// 313 RPL_WHOISOPERATOR.
    WhoisOperator { nick: &'a str } = "313" => p![nick, "is an IRC operator"];
    /// 315 RPL_ENDOFWHO.
    EndOfWho { mask: &'a str } = "315" => p![mask, "End of WHO list"];
    /// 317 RPL_WHOISIDLE.
    WhoisIdle { nick: &'a str, idle_secs: u64, signon: i64 } = "317" =>
        p![nick, idle_secs, signon, "seconds idle, signon time"];
    /// 318 RPL_ENDOFWHOIS.
    EndOfWhois { nick: &'a str } = "318" => p![nick, "End of /WHOIS list"];
    /// 319 RPL_WHOISCHANNELS: `@#a #b`.
    WhoisChannels { nick: &'a str, channels: &'a str } = "319" => p![nick, channels];
    /// 321 RPL_LISTSTART.
    ListStart {} = "321" => p!["Channel", "Users  Name"];
    /// 322 RPL_LIST.
    List { channel: &'a str, users: usize, topic: &'a str } = "322" => p![channel, users, topic];
    /// 323 RPL_LISTEND.
    ListEnd {} = "323" => p!["End of /LIST"];
    /// 324 RPL_CHANNELMODEIS: the modes as one `+...` word (arguments, if any, after it).
    ChannelModeIs { channel: &'a str, modes: &'a str } = "324" => {
        let mut params = p![channel];
        params.extend(modes.split(' ').filter(|m| !m.is_empty()).map(str::to_string));
        params
    };
    /// 329 RPL_CREATIONTIME (Unix seconds).
    CreationTime { channel: &'a str, created: i64 } = "329" => p![channel, created];
    /// 330 RPL_WHOISACCOUNT.
    WhoisAccount { nick: &'a str, account: &'a str } = "330" => p![nick, account, "is logged in as"];
    /// 331 RPL_NOTOPIC.
    NoTopic { channel: &'a str } = "331" => p![channel, "No topic is set"];
    /// 332 RPL_TOPIC.
    Topic { channel: &'a str, topic: &'a str } = "332" => p![channel, topic];
    /// 333 RPL_TOPICWHOTIME (Unix seconds).
    TopicWhoTime { channel: &'a str, setter: &'a str, set_at: i64 } = "333" => p![channel, setter, set_at];
    /// 341 RPL_INVITING.
    Inviting { nick: &'a str, channel: &'a str } = "341" => p![nick, channel];
    /// 352 RPL_WHOREPLY: `flags` is `H`/`G` plus `*` and prefixes.
    WhoReply { channel: &'a str, user: &'a str, host: &'a str, server: &'a str, nick: &'a str, flags: &'a str, hops: u32, realname: &'a str } = "352" =>
        p![channel, user, host, server, nick, flags, format!("{hops} {realname}")];
    /// 354 RPL_WHOSPCRPL (WHOX): the fields the client asked for, in its order; the last (the
    /// realname, when asked) may hold spaces.
    WhoxReply { fields: &'a [String] } = "354" => fields.to_vec();
    /// 353 RPL_NAMREPLY: `symbol` is `=` (public); `names` space separated, with prefixes.
    NamReply { symbol: &'a str, channel: &'a str, names: &'a str } = "353" => p![symbol, channel, names];
    /// 366 RPL_ENDOFNAMES.
    EndOfNames { channel: &'a str } = "366" => p![channel, "End of /NAMES list"];
    /// 367 RPL_BANLIST.
    BanList { channel: &'a str, mask: &'a str, setter: &'a str, set_at: i64 } = "367" =>
        p![channel, mask, setter, set_at];
    /// 368 RPL_ENDOFBANLIST.
    EndOfBanList { channel: &'a str } = "368" => p![channel, "End of channel ban list"];
    /// 369 RPL_ENDOFWHOWAS.
    EndOfWhowas { nick: &'a str } = "369" => p![nick, "End of WHOWAS"];
    /// 372 RPL_MOTD: one line of the message of the day.
    Motd { line: &'a str } = "372" => p![format!("- {line}")];
    /// 375 RPL_MOTDSTART.
    MotdStart { server: &'a str } = "375" => p![format!("- {server} Message of the day - ")];
    /// 376 RPL_ENDOFMOTD.
    EndOfMotd {} = "376" => p!["End of /MOTD command."];
    /// 381 RPL_YOUREOPER.
    YoureOper {} = "381" => p!["You are now an IRC operator"];
    /// 307 RPL_WHOISREGNICK: the nick is a registered account's.
    WhoisRegNick { nick: &'a str } = "307" => p![nick, "has identified for this nick"];
    /// 314 RPL_WHOWASUSER.
    WhowasUser { nick: &'a str, user: &'a str, host: &'a str, realname: &'a str } = "314" =>
        p![nick, user, host, "*", realname];
    /// 335 RPL_WHOISBOT.
    WhoisBot { nick: &'a str } = "335" => p![nick, "is a bot"];
    /// 338 RPL_WHOISACTUALLY: the address behind a nick, for operators.
    WhoisActually { nick: &'a str, ip: &'a str } = "338" => p![nick, ip, "Is actually using host"];
    /// 351 RPL_VERSION.
    Version { version: &'a str, server: &'a str, comments: &'a str } = "351" => p![version, server, comments];
    /// 364 RPL_LINKS: one server (chatd's cluster nodes).
    Links { server: &'a str, hops: u32, info: &'a str } = "364" => p!["*", server, format!("{hops} {info}")];
    /// 365 RPL_ENDOFLINKS.
    EndOfLinks {} = "365" => p!["*", "End of /LINKS list"];
    /// 371 RPL_INFO: one line of INFO.
    Info { line: &'a str } = "371" => p![line];
    /// 374 RPL_ENDOFINFO.
    EndOfInfo {} = "374" => p!["End of INFO list"];
    /// 378 RPL_WHOISHOST.
    WhoisHost { nick: &'a str, host: &'a str } = "378" => p![nick, format!("is connecting from {host}")];
    /// 391 RPL_TIME: Unix seconds, offset 0, and the time in words.
    Time { server: &'a str, unix: i64, words: &'a str } = "391" => p![server, unix, words];
    /// 400 ERR_UNKNOWNERROR, for what no other numeric says.
    UnknownError { command: &'a str, info: &'a str } = "400" => p![command, info];
    /// 401 ERR_NOSUCHNICK.
    NoSuchNick { nick: &'a str } = "401" => p![nick, "No such nick/channel"];
    /// 402 ERR_NOSUCHSERVER.
    NoSuchServer { server: &'a str } = "402" => p![server, "No such server"];
    /// 403 ERR_NOSUCHCHANNEL.
    NoSuchChannel { channel: &'a str } = "403" => p![channel, "No such channel"];
    /// 404 ERR_CANNOTSENDTOCHAN (muted, slow mode, not joined...): the reason in words.
    CannotSendToChan { channel: &'a str, reason: &'a str } = "404" => p![channel, reason];
    /// 405 ERR_TOOMANYCHANNELS (`--max-rooms-per-member`).
    TooManyChannels { channel: &'a str } = "405" => p![channel, "You have joined too many channels"];
    /// 406 ERR_WASNOSUCHNICK.
    WasNoSuchNick { nick: &'a str } = "406" => p![nick, "There was no such nickname"];
    /// 409 ERR_NOORIGIN: PING or PONG without a token.
    NoOrigin {} = "409" => p!["No origin specified"];
    /// 411 ERR_NORECIPIENT.
    NoRecipient { command: &'a str } = "411" => p![format!("No recipient given ({command})")];
    /// 412 ERR_NOTEXTTOSEND.
    NoTextToSend {} = "412" => p!["No text to send"];
    /// 417 ERR_INPUTTOOLONG: over the message size limits.
    InputTooLong {} = "417" => p!["Input line was too long"];
    /// 421 ERR_UNKNOWNCOMMAND.
    UnknownCommand { command: &'a str } = "421" => p![command, "Unknown command"];
    /// 422 ERR_NOMOTD.
    NoMotd {} = "422" => p!["MOTD File is missing"];
    /// 431 ERR_NONICKNAMEGIVEN.
    NoNicknameGiven {} = "431" => p!["No nickname given"];
    /// 432 ERR_ERRONEUSNICKNAME, with chatd's reason (charset, length, look-alike scripts...).
    ErroneousNickname { nick: &'a str, reason: &'a str } = "432" => p![nick, reason];
    /// 433 ERR_NICKNAMEINUSE (taken, or too like a name in use).
    NicknameInUse { nick: &'a str } = "433" => p![nick, "Nickname is already in use"];
    /// 441 ERR_USERNOTINCHANNEL.
    UserNotInChannel { nick: &'a str, channel: &'a str } = "441" => p![nick, channel, "They aren't on that channel"];
    /// 442 ERR_NOTONCHANNEL.
    NotOnChannel { channel: &'a str } = "442" => p![channel, "You're not on that channel"];
    /// 443 ERR_USERONCHANNEL.
    UserOnChannel { nick: &'a str, channel: &'a str } = "443" => p![nick, channel, "is already on channel"];
    /// 451 ERR_NOTREGISTERED.
    NotRegistered {} = "451" => p!["You have not registered"];
    /// 461 ERR_NEEDMOREPARAMS.
    NeedMoreParams { command: &'a str } = "461" => p![command, "Not enough parameters"];
    /// 462 ERR_ALREADYREGISTERED.
    AlreadyRegistered {} = "462" => p!["You may not reregister"];
    /// 464 ERR_PASSWDMISMATCH (`--irc-password`).
    PasswdMismatch {} = "464" => p!["Password incorrect"];
    /// 465 ERR_YOUREBANNEDCREEP: the address is banned server-wide.
    YoureBanned { reason: &'a str } = "465" => p![reason];
    /// 472 ERR_UNKNOWNMODE.
    UnknownMode { mode: char } = "472" => p![mode, "is unknown mode char to me"];
    /// 473 ERR_INVITEONLYCHAN.
    InviteOnlyChan { channel: &'a str } = "473" => p![channel, "Cannot join channel (+i)"];
    /// 474 ERR_BANNEDFROMCHAN.
    BannedFromChan { channel: &'a str } = "474" => p![channel, "Cannot join channel (+b)"];
    /// 475 ERR_BADCHANNELKEY: chatd rooms have no keys, so any key is refused.
    BadChannelKey { channel: &'a str } = "475" => p![channel, "Cannot join channel (+k)"];
    /// 476 ERR_BADCHANMASK: not a name a room can have.
    BadChanMask { channel: &'a str } = "476" => p![channel, "Bad Channel Mask"];
    /// 481 ERR_NOPRIVILEGES.
    NoPrivileges {} = "481" => p!["Permission Denied- You're not an IRC operator"];
    /// 482 ERR_CHANOPRIVSNEEDED.
    ChanOpPrivsNeeded { channel: &'a str } = "482" => p![channel, "You're not channel operator"];
    /// 477 ERR_NEEDREGGEDNICK: the room only takes logged-in members.
    NeedReggedNick { channel: &'a str } = "477" => p![channel, "You need to be logged in to join that channel"];
    /// 491 ERR_NOOPERHOST: OPER refused.
    NoOperHost {} = "491" => p!["No O-lines for your host"];
    /// 501 ERR_UMODEUNKNOWNFLAG.
    UModeUnknownFlag {} = "501" => p!["Unknown MODE flag"];
    /// 502 ERR_USERSDONTMATCH.
    UsersDontMatch {} = "502" => p!["Cant change mode for other users"];
    /// 524 ERR_HELPNOTFOUND.
    HelpNotFound { subject: &'a str } = "524" => p![subject, "No help available on this topic"];
    /// 671 RPL_WHOISSECURE: connected over TLS.
    WhoisSecure { nick: &'a str } = "671" => p![nick, "is using a secure connection"];
    /// 704 RPL_HELPSTART: the first line of HELP on `subject`.
    HelpStart { subject: &'a str, line: &'a str } = "704" => p![subject, line];
    /// 705 RPL_HELPTXT.
    HelpTxt { subject: &'a str, line: &'a str } = "705" => p![subject, line];
    /// 706 RPL_ENDOFHELP.
    EndOfHelp { subject: &'a str, line: &'a str } = "706" => p![subject, line];
    /// 900 RPL_LOGGEDIN.
    LoggedIn { mask: &'a str, account: &'a str } = "900" =>
        p![mask, account, format!("You are now logged in as {account}")];
    /// 901 RPL_LOGGEDOUT.
    LoggedOut { mask: &'a str } = "901" => p![mask, "You are now logged out"];
    /// 902 ERR_NICKLOCKED.
    NickLocked {} = "902" => p!["You must use a nick assigned to you"];
    /// 903 RPL_SASLSUCCESS.
    SaslSuccess {} = "903" => p!["SASL authentication successful"];
    /// 904 ERR_SASLFAIL.
    SaslFail {} = "904" => p!["SASL authentication failed"];
    /// 905 ERR_SASLTOOLONG.
    SaslTooLong {} = "905" => p!["SASL message too long"];
    /// 906 ERR_SASLABORTED.
    SaslAborted {} = "906" => p!["SASL authentication aborted"];
    /// 907 ERR_SASLALREADY.
    SaslAlready {} = "907" => p!["You have already authenticated using SASL"];
    /// 908 RPL_SASLMECHS.
    SaslMechs { mechanisms: &'a str } = "908" => p![mechanisms, "are available SASL mechanisms"];
    /// 410 ERR_INVALIDCAPCMD.
    InvalidCapCmd { subcommand: &'a str } = "410" => p![subcommand, "Invalid CAP command"];
}

impl Numeric<'_> {
    /// The reply from `server` to the client known as `nick` (`*` before it has one).
    pub fn to(&self, server: &str, nick: &str) -> Message {
        Message::new(self.code())
            .source(server)
            .param(nick)
            .params(self.params())
    }
}

/// Kind of an IRCv3 standard reply (`FAIL`, `WARN`, `NOTE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standard {
    /// The command failed.
    Fail,
    /// It worked, with something to say.
    Warn,
    /// Just information.
    Note,
}

/// An IRCv3 standard reply: `FAIL <command> <code> [<context>...] :<description>`, for what no
/// numeric fits (CHATHISTORY's `INVALID_PARAMS`, `MESSAGE_ERROR`...).
pub fn standard_reply(
    server: &str,
    kind: Standard,
    command: &str,
    code: &str,
    context: &[&str],
    description: &str,
) -> Message {
    let verb = match kind {
        Standard::Fail => "FAIL",
        Standard::Warn => "WARN",
        Standard::Note => "NOTE",
    };
    Message::new(verb)
        .source(server)
        .params([command, code])
        .params(context.iter().copied())
        .param(description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_render_with_server_nick_and_typed_args() {
        let line = Numeric::Welcome {
            network: "chatd",
            mask: "ann!ann@host",
        }
        .to("chatd.local", "ann")
        .line();
        assert_eq!(
            line,
            ":chatd.local 001 ann :Welcome to the chatd IRC Network ann!ann@host\r\n"
        );
        let line = Numeric::NotOnChannel { channel: "#den" }
            .to("s", "ann")
            .line();
        assert_eq!(line, ":s 442 ann #den :You're not on that channel\r\n");
        let line = Numeric::TopicWhoTime {
            channel: "#den",
            setter: "bob",
            set_at: 1_700_000_000,
        }
        .to("s", "ann")
        .line();
        assert_eq!(line, ":s 333 ann #den bob 1700000000\r\n");
        // Before registration the client is `*`.
        let line = Numeric::NotRegistered {}.to("s", "*").line();
        assert_eq!(line, ":s 451 * :You have not registered\r\n");
        let line = Numeric::Time {
            server: "s",
            unix: 1_700_000_000,
            words: "Tuesday November 14 2023 -- 22:13:20 +00:00",
        }
        .to("s", "a")
        .line();
        assert_eq!(
            line,
            ":s 391 a s 1700000000 :Tuesday November 14 2023 -- 22:13:20 +00:00\r\n"
        );
        let line = Numeric::Links {
            server: "s",
            hops: 0,
            info: "chatd",
        }
        .to("s", "a")
        .line();
        assert_eq!(line, ":s 364 a * s :0 chatd\r\n");
        let line = Numeric::UnknownMode { mode: 'z' }.to("s", "a").line();
        assert_eq!(line, ":s 472 a z :is unknown mode char to me\r\n");
    }

    #[test]
    fn spreading_numerics_keep_their_words_apart() {
        let tokens = ["CHANTYPES=#".to_string(), "PREFIX=(o)@".to_string()];
        let line = Numeric::ISupport { tokens: &tokens }.to("s", "a").line();
        assert_eq!(
            line,
            ":s 005 a CHANTYPES=# PREFIX=(o)@ :are supported by this server\r\n"
        );
        let line = Numeric::ChannelModeIs {
            channel: "#den",
            modes: "+nt",
        }
        .to("s", "a")
        .line();
        assert_eq!(line, ":s 324 a #den +nt\r\n");
        let fields = ["42".to_string(), "#den".to_string(), "Ann A".to_string()];
        let line = Numeric::WhoxReply { fields: &fields }.to("s", "a").line();
        assert_eq!(line, ":s 354 a 42 #den :Ann A\r\n");
        let line = Numeric::WhoReply {
            channel: "#den",
            user: "ann",
            host: "h",
            server: "s",
            nick: "ann",
            flags: "H@",
            hops: 0,
            realname: "Ann",
        }
        .to("s", "a")
        .line();
        assert_eq!(line, ":s 352 a #den ann h s ann H@ :0 Ann\r\n");
    }

    #[test]
    fn codes_are_three_digits_and_unique() {
        let mut codes = ALL_CODES.to_vec();
        assert!(codes
            .iter()
            .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit())));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ALL_CODES.len(), "a code is in the table twice");
        assert_eq!(Numeric::SaslAlready {}.code(), "907");
    }

    #[test]
    fn standard_replies() {
        let m = standard_reply(
            "s",
            Standard::Fail,
            "CHATHISTORY",
            "INVALID_PARAMS",
            &["LATEST"],
            "Bad limit",
        );
        assert_eq!(
            m.line(),
            ":s FAIL CHATHISTORY INVALID_PARAMS LATEST :Bad limit\r\n"
        );
    }
}
