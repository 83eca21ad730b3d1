//! Server operators as configured: `--oper NAME=PHC` (or a config file's `[[oper]]` block) gives
//! the name a password hash of its own, checked instead of any account's; a bare `--oper NAME`
//! (the older form) has no credential, so it is honoured only for an account that existed before
//! the server started (see [`Operators::new`]). Either way the name is reserved: nobody may
//! `/register` it or take it, or a look-alike of it, as a nick.

use std::collections::{HashMap, HashSet};

use argon2::password_hash::PasswordHash;

use crate::names;

/// One `--oper` value: a name, and the PHC string of its password when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperSpec {
    /// The operator's name, as configured.
    pub name: String,
    /// An Argon2id PHC string (`$argon2id$v=19$m=...`), from `chatd hash-password`.
    pub phc: Option<String>,
}

/// Parses `NAME` or `NAME=PHC` (clap's value parser for `--oper`): the name must be one a member
/// could take, the hash an Argon2id PHC string.
pub fn parse_oper(value: &str) -> Result<OperSpec, String> {
    let (name, phc) = match value.split_once('=') {
        Some((name, phc)) => (name, Some(phc)),
        None => (value, None),
    };
    let normal = names::normalize(name).map_err(|e| format!("{name}: {e}"))?;
    if normal != name {
        return Err(format!(
            "{name}: not a name as members type it (try {normal})"
        ));
    }
    if let Some(phc) = phc {
        let parsed = PasswordHash::new(phc).map_err(|e| {
            format!("{name}: not a PHC password hash ({e}); make one with `chatd hash-password`")
        })?;
        if parsed.algorithm.as_str() != "argon2id" {
            return Err(format!(
                "{name}: the hash is {}, not argon2id; make one with `chatd hash-password`",
                parsed.algorithm
            ));
        }
    }
    Ok(OperSpec {
        name: name.to_string(),
        phc: phc.map(str::to_string),
    })
}

/// The server operators in force: whose names are reserved, whose password is checked against
/// the configuration, and which accounts hold operator rights.
#[derive(Debug, Default)]
pub struct Operators {
    /// Every configured operator by [`names::key`]: its name, and its hash when it has one.
    by_key: HashMap<String, OperSpec>,
    /// Bare `--oper NAME` entries whose account existed at start: they keep operator rights while
    /// the account stays (removed with it, so a later registration cannot inherit them).
    by_account: HashSet<String>,
}

impl Operators {
    /// The operators `specs` configure, given which account keys existed at start (`existed`).
    /// Logs, once per operator, what applies to it.
    pub fn new(specs: &[OperSpec], existed: impl Fn(&str) -> bool) -> Operators {
        let mut operators = Operators::default();
        for spec in specs {
            let key = names::key(&spec.name);
            let name = &spec.name;
            match &spec.phc {
                Some(_) if existed(&key) => tracing::warn!(
                    oper = %name,
                    "server operator {name} logs in with the configured password hash; the stored \
                     account {name} is set aside (its password no longer logs in)"
                ),
                Some(_) => tracing::info!(
                    oper = %name,
                    "server operator {name} logs in with the configured password hash"
                ),
                None if existed(&key) => {
                    tracing::warn!(
                        oper = %name,
                        "--oper {name} has no password hash: account {name}, registered before \
                         this start, keeps operator rights and nobody can register the name again; \
                         configure {name}=HASH (chatd hash-password) to rely on a credential instead"
                    );
                    operators.by_account.insert(key.clone());
                }
                None => tracing::warn!(
                    oper = %name,
                    "--oper {name} has no password hash and no account {name} existed at start: \
                     nobody is operator {name} (the name is reserved, so nobody can take it); \
                     configure {name}=HASH (chatd hash-password)"
                ),
            }
            operators.by_key.insert(key, spec.clone());
        }
        operators
    }

    /// The configured operator whose name has this key, if any.
    pub fn get(&self, key: &str) -> Option<&OperSpec> {
        self.by_key.get(key)
    }

    /// The password hash of the operator with this key, when the configuration gives one.
    pub fn credential(&self, key: &str) -> Option<&str> {
        self.by_key.get(key).and_then(|o| o.phc.as_deref())
    }

    /// Whether the account (or configured operator) with this key has operator rights.
    pub fn rights(&self, key: &str) -> bool {
        self.credential(key).is_some() || self.by_account.contains(key)
    }

    /// The account with this key is gone: a bare `--oper` entry loses its rights for good.
    pub fn account_removed(&mut self, key: &str) {
        self.by_account.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHC: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$\
                       kyW4mBnmQBqzNY5qz1AjGyiDUMVGrwlyIhXbCMC/SrM";

    #[test]
    fn names_with_and_without_a_hash_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_oper("root"),
            Ok(OperSpec {
                name: "root".into(),
                phc: None
            })
        );
        let with = parse_oper(&format!("root={PHC}")).expect("a hash");
        assert_eq!(with.phc.as_deref(), Some(PHC));
        for bad in [
            "root=secret",
            "root=$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$kyW4mBnmQBqzNY5qz1AjGyiDUMVGrwlyIhXbCMC/SrM",
            "=x",
            "a b",
        ] {
            assert!(parse_oper(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bare_name_has_rights_only_for_an_account_that_existed_and_only_while_it_stays() {
        let specs = [
            parse_oper("old").expect("bare"),
            parse_oper("new").expect("bare"),
            parse_oper(&format!("Root={PHC}")).expect("hash"),
        ];
        let mut operators = Operators::new(&specs, |key| key == "old");
        assert!(operators.rights("old"));
        assert!(!operators.rights("new"), "no account at start: no rights");
        assert!(operators.rights("root"), "a credential");
        assert_eq!(operators.get("new").map(|o| o.name.as_str()), Some("new"));
        assert_eq!(operators.credential("root"), Some(PHC));
        operators.account_removed("old");
        assert!(
            !operators.rights("old"),
            "whoever registers it next is nobody"
        );
        assert!(operators.get("old").is_some(), "still reserved");
    }
}
