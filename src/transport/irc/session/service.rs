//! The `NickServ` service IRC clients and scripts expect: `PRIVMSG NickServ :REGISTER password`,
//! `IDENTIFY [name] password` (and the usual aliases), answered as NOTICEs from NickServ. It works
//! on chatd's accounts, the same as `/register` and `/login`: passwords are checked off the task
//! (see [`super::account`]). Messages to NickServ never reach a member of that name.

use super::super::message::Message;
use super::account::Purpose;
use super::Session;
use crate::auth::AuthError;
use crate::names;

/// The service's nick.
pub const NICKSERV: &str = "NickServ";
/// Its mask as the source of its notices.
const SOURCE: &str = "NickServ!NickServ@services.chatd";

/// Whether a PRIVMSG or NOTICE is for NickServ (its first target).
pub fn for_nickserv(p: &[String]) -> bool {
    p.first().is_some_and(|t| t.eq_ignore_ascii_case(NICKSERV))
}

/// What a NickServ command asks, or its answer when it needs no account work.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Register the member's nick with this password.
    Register(String),
    /// Log in to this account (the member's nick when none is given) with this password.
    Identify(Option<String>, String),
    /// Answer with these lines.
    Answer(Vec<String>),
}

/// Parses one NickServ command (the text sent to it).
pub fn parse(text: &str) -> Request {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some((command, args)) = words.split_first() else {
        return help();
    };
    match (command.to_ascii_uppercase().as_str(), args) {
        // An e-mail address may follow (Anope, Atheme); chatd has no use for it.
        ("REGISTER", [password, ..]) => Request::Register(password.to_string()),
        ("REGISTER", []) => usage("REGISTER <password>"),
        ("IDENTIFY" | "ID" | "LOGIN", [password]) => Request::Identify(None, password.to_string()),
        ("IDENTIFY" | "ID" | "LOGIN", [name, password, ..]) => {
            Request::Identify(Some(name.to_string()), password.to_string())
        }
        ("IDENTIFY" | "ID" | "LOGIN", []) => usage("IDENTIFY [account] <password>"),
        ("HELP", _) => help(),
        (other, _) => Request::Answer(vec![format!(
            "Unknown command {other}. \"/msg NickServ HELP\" lists the commands."
        )]),
    }
}

fn usage(text: &str) -> Request {
    Request::Answer(vec![format!("Syntax: {text}")])
}

fn help() -> Request {
    Request::Answer(vec![
        "NickServ keeps chatd's accounts (the same as /register and /login). Commands:".into(),
        "REGISTER <password>: registers your current nick as an account.".into(),
        "IDENTIFY [account] <password> (or ID, LOGIN): logs you in; you take the account's name."
            .into(),
    ])
}

impl Session {
    /// A PRIVMSG or NOTICE to NickServ.
    pub(super) fn nickserv(&mut self, p: &[String]) {
        let text = p.get(1).map(String::as_str).unwrap_or("");
        match parse(text) {
            Request::Answer(lines) => {
                for line in lines {
                    self.nickserv_says(&line);
                }
            }
            Request::Register(password) => self.service_register(&password),
            Request::Identify(name, password) => {
                let name = name.unwrap_or_else(|| self.member_name());
                if let Err(e) = self.start_check(Purpose::Identify, name, &password) {
                    self.nickserv_says(&e.to_string());
                }
            }
        }
    }

    fn member_name(&self) -> String {
        self.member
            .as_ref()
            .map(|m| m.name().to_string())
            .unwrap_or_default()
    }

    fn service_register(&mut self, password: &str) {
        let name = self.member_name();
        let logged_in = self.member.as_ref().and_then(|m| m.account()).is_some();
        if logged_in || self.hub.accounts().registered(&names::key(&name)).is_some() {
            self.nickserv_says(&format!("{name} is already registered."));
            return;
        }
        if name.to_lowercase().starts_with(names::GUEST_PREFIX) {
            self.nickserv_says("Pick a nick first (/nick NAME), then REGISTER <password>.");
            return;
        }
        if let Err(e) = self.start_check(Purpose::Register, name, password) {
            self.nickserv_says(&e.to_string());
        }
    }

    /// An IDENTIFY or REGISTER finished.
    pub(super) fn service_checked(&mut self, purpose: Purpose, result: Result<String, AuthError>) {
        match result {
            Ok(name) => {
                self.log_in_checked(&name);
                let text = match purpose {
                    Purpose::Register => format!("{name} is registered to you; you are logged in."),
                    _ => format!("You are now identified for {name}."),
                };
                self.nickserv_says(&text);
            }
            Err(e) => self.nickserv_says(&e.to_string()),
        }
    }

    fn nickserv_says(&mut self, text: &str) {
        let nick = self.nick();
        self.send(
            Message::new("NOTICE")
                .source(SOURCE)
                .param(nick)
                .param(text),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_aliases() {
        assert_eq!(
            parse("register s3cret a@b.c"),
            Request::Register("s3cret".into())
        );
        assert_eq!(parse("IDENTIFY pw"), Request::Identify(None, "pw".into()));
        assert_eq!(
            parse("id alice pw"),
            Request::Identify(Some("alice".into()), "pw".into())
        );
        assert_eq!(
            parse("LOGIN alice pw"),
            Request::Identify(Some("alice".into()), "pw".into())
        );
        for bad in ["REGISTER", "IDENTIFY", "", "HELP", "DROP x"] {
            assert!(
                matches!(parse(bad), Request::Answer(lines) if !lines.is_empty()),
                "{bad}"
            );
        }
        assert!(for_nickserv(&["nickserv".into(), "x".into()]));
        assert!(!for_nickserv(&["alice".into()]));
    }
}
