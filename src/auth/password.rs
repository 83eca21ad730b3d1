//! Argon2id password hashing (the `argon2` crate), blocking: run it on the blocking pool only.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::protocol::moderation::Secret;

/// Argon2id cost settings: memory in KiB and passes over it (one lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Passes over that memory.
    pub iterations: u32,
}

impl Cost {
    /// OWASP's first recommendation for Argon2id: 19 MiB, two passes, one lane (about 20-40 ms
    /// on one core of a current server).
    pub const DEFAULT: Cost = Cost {
        memory_kib: 19 * 1024,
        iterations: 2,
    };
}

/// Why a password could not be hashed (bad cost settings, no randomness for the salt).
#[derive(Debug, thiserror::Error)]
#[error("cannot hash password: {0}")]
pub struct HashError(String);

fn hasher(cost: Cost) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with a fresh random salt; returns the PHC string (which records the cost, so
/// hashes made under other settings still verify).
pub fn hash(cost: Cost, password: &Secret) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| HashError(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    let hash = hasher(cost)?
        .hash_password(password.expose(), &salt)
        .map_err(|e| HashError(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc`; a malformed `phc` matches nothing.
pub fn verify(phc: &str, password: &Secret) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // The parameters come from the hash itself.
    Argon2::default()
        .verify_password(password.expose(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Cost = Cost {
        memory_kib: 64,
        iterations: 1,
    };

    #[test]
    fn a_hash_verifies_its_password_only_and_salts_differ() {
        let secret = Secret::new("correct horse");
        let one = hash(CHEAP, &secret).expect("hash");
        let two = hash(CHEAP, &secret).expect("hash");
        assert!(one.starts_with("$argon2id$"), "{one}");
        assert_ne!(one, two, "a random salt each time");
        assert!(!one.contains("correct horse"));
        assert!(verify(&one, &secret));
        assert!(verify(&two, &secret));
        assert!(!verify(&one, &Secret::new("wrong")));
        assert!(!verify("not a hash", &secret));
    }
}
