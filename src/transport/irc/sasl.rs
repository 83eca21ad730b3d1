//! SASL over IRC (`AUTHENTICATE`) with the PLAIN mechanism, as a state machine with no I/O: it
//! gathers the client's 400-byte chunks, decodes PLAIN's `authzid\0authcid\0password`, and says
//! what to answer; the connection checks the credentials against chatd's accounts and sends the
//! numerics (900 and 903, or 904...).

use base64::Engine as _;

/// The mechanisms offered (the `sasl=` cap value and RPL_SASLMECHS).
pub const MECHANISMS: &str = "PLAIN";

/// Bytes of base64 per AUTHENTICATE line; a shorter chunk (or `+`) ends a response.
pub const CHUNK: usize = 400;

/// Most base64 bytes in one response: far more than PLAIN with chatd's name and password limits
/// needs, and a bound on what a client can make the server hold.
pub const MAX_RESPONSE: usize = 4 * CHUNK;

/// What the connection does after one AUTHENTICATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A mechanism was chosen: answer `AUTHENTICATE +` (PLAIN's empty challenge).
    Challenge,
    /// A full chunk came: wait for the next.
    Wait,
    /// The response is complete: check these credentials, then 900 and 903, or 904.
    Plain(Plain),
    /// Not a mechanism offered: 908 with [`MECHANISMS`], then 904.
    UnknownMechanism,
    /// The client sent `*`: 906.
    Aborted,
    /// One chunk over [`CHUNK`] bytes: 905.
    TooLong,
    /// Not base64, not PLAIN's three fields, a chunk before a mechanism, or a response past
    /// [`MAX_RESPONSE`] (no PLAIN credentials are that long): 904.
    Failed,
}

/// PLAIN's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Plain {
    /// Who to act as; empty, or the same as [`Plain::authcid`] (chatd has no proxy logins).
    pub authzid: String,
    /// The account name.
    pub authcid: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Plain {
    // Never a password in a log or a failed test's output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plain")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .finish_non_exhaustive()
    }
}

/// One connection's SASL exchange in progress.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sasl {
    /// Whether a mechanism was chosen and its response is awaited.
    started: bool,
    /// The base64 gathered so far.
    response: String,
}

impl Sasl {
    /// No exchange in progress.
    pub fn new() -> Sasl {
        Sasl::default()
    }

    /// Whether an exchange is in progress (a mechanism was chosen).
    pub fn in_progress(&self) -> bool {
        self.started
    }

    /// Handles one `AUTHENTICATE param`.
    pub fn authenticate(&mut self, param: &str) -> Step {
        if param == "*" {
            let was = self.started;
            *self = Sasl::default();
            return if was { Step::Aborted } else { Step::Failed };
        }
        if !self.started {
            return if param.eq_ignore_ascii_case(MECHANISMS) {
                self.started = true;
                Step::Challenge
            } else {
                Step::UnknownMechanism
            };
        }
        if param.len() > CHUNK {
            *self = Sasl::default();
            return Step::TooLong;
        }
        if self.response.len() + param.len() > MAX_RESPONSE {
            *self = Sasl::default();
            return Step::Failed;
        }
        if param != "+" {
            self.response.push_str(param);
        }
        if param.len() == CHUNK {
            return Step::Wait;
        }
        let response = std::mem::take(&mut self.response);
        *self = Sasl::default();
        match decode_plain(&response) {
            Some(plain) => Step::Plain(plain),
            None => Step::Failed,
        }
    }
}

/// PLAIN's `authzid\0authcid\0password` from base64, or `None` when it is not that.
pub fn decode_plain(response: &str) -> Option<Plain> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(response)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut fields = text.split('\0');
    let (authzid, authcid, password) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || authcid.is_empty() {
        return None;
    }
    Some(Plain {
        authzid: authzid.to_string(),
        authcid: authcid.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn plain_in_one_chunk() {
        let mut sasl = Sasl::new();
        assert_eq!(sasl.authenticate("PLAIN"), Step::Challenge);
        assert!(sasl.in_progress());
        let step = sasl.authenticate(&b64("\0jilles\0sesame"));
        let Step::Plain(plain) = step else {
            panic!("credentials expected, got {step:?}");
        };
        assert_eq!(
            (plain.authzid.as_str(), plain.authcid.as_str()),
            ("", "jilles")
        );
        assert_eq!(plain.password, "sesame");
        assert!(!sasl.in_progress(), "done after the response");
        assert!(
            !format!("{plain:?}").contains("sesame"),
            "no password in Debug"
        );
    }

    #[test]
    fn chunks_of_400_wait_for_more_and_plus_ends() {
        let password = "p".repeat(600 - "me\0me\0".len());
        let encoded = b64(&format!("me\0me\0{password}"));
        assert_eq!(encoded.len(), 800, "exactly two full chunks");
        let mut sasl = Sasl::new();
        sasl.authenticate("plain");
        assert_eq!(sasl.authenticate(&encoded[..CHUNK]), Step::Wait);
        assert_eq!(sasl.authenticate(&encoded[CHUNK..]), Step::Wait);
        let Step::Plain(plain) = sasl.authenticate("+") else {
            panic!("credentials expected");
        };
        assert_eq!(plain.authzid, "me");
        assert_eq!(plain.password, password);
    }

    #[test]
    fn refusals_are_told_apart() {
        let mut sasl = Sasl::new();
        assert_eq!(sasl.authenticate("SCRAM-SHA-256"), Step::UnknownMechanism);
        assert_eq!(sasl.authenticate("*"), Step::Failed, "nothing to abort");
        sasl.authenticate("PLAIN");
        assert_eq!(sasl.authenticate("*"), Step::Aborted);
        assert!(!sasl.in_progress());
        sasl.authenticate("PLAIN");
        assert_eq!(sasl.authenticate("not base64!"), Step::Failed);
        sasl.authenticate("PLAIN");
        assert_eq!(sasl.authenticate(&b64("only\0two")), Step::Failed);
        sasl.authenticate("PLAIN");
        assert_eq!(
            sasl.authenticate(&b64("\0\0pw")),
            Step::Failed,
            "no account"
        );
        sasl.authenticate("PLAIN");
        assert_eq!(sasl.authenticate(&"A".repeat(CHUNK + 1)), Step::TooLong);
        sasl.authenticate("PLAIN");
        let mut step = Step::Wait;
        for _ in 0..=MAX_RESPONSE / CHUNK {
            step = sasl.authenticate(&"A".repeat(CHUNK));
        }
        assert_eq!(step, Step::Failed, "bounded however many chunks come");
        assert!(!sasl.in_progress());
    }
}
