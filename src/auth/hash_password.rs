//! `chatd hash-password`: reads a password (from the terminal without echo, asked twice; or one
//! line from a pipe) and prints its Argon2id PHC string, hashed as accounts are, for `--oper
//! NAME=PHC` or a config file's `[[oper]]` block.

use std::io::BufRead;

use clap::Parser;

use super::password::{self, Cost};
use crate::protocol::moderation::Secret;

/// Longest password taken (bytes): as long as any line a member could send.
const MAX_PASSWORD: usize = 4096;

/// The `chatd hash-password` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hash-password",
    bin_name = "chatd hash-password",
    about = "Print the Argon2id hash (PHC string) of a password read from the terminal or stdin",
    after_help = "Use it as `--oper NAME=PHC` or in an [[oper]] block of the config file."
)]
pub struct HashPasswordArgs {
    /// Argon2id memory per hash, in KiB (as the server's --argon2-memory).
    #[arg(long, value_name = "KIB", default_value_t = Cost::DEFAULT.memory_kib, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub argon2_memory: u32,
    /// Argon2id passes over that memory (as the server's --argon2-passes).
    #[arg(long, value_name = "N", default_value_t = Cost::DEFAULT.iterations, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub argon2_passes: u32,
}

/// Why no hash was printed.
#[derive(Debug, thiserror::Error)]
pub enum HashCommandError {
    /// Reading the password failed.
    #[error("cannot read the password: {0}")]
    Read(#[from] std::io::Error),
    /// The password is empty, too long or not text.
    #[error("{0}")]
    Bad(&'static str),
    /// The two passwords typed differ.
    #[error("the passwords differ")]
    Differ,
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] password::HashError),
}

/// Runs the command: the password from the terminal when stdin is one, else from stdin; returns
/// the PHC string to print.
pub fn run(args: &HashPasswordArgs) -> Result<String, HashCommandError> {
    let cost = Cost {
        memory_kib: args.argon2_memory,
        iterations: args.argon2_passes,
    };
    let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            return Err(HashCommandError::Differ);
        }
        checked(first)?
    } else {
        read_line(std::io::stdin().lock())?
    };
    Ok(password::hash(cost, &password)?)
}

/// The first line of `input` (without its line end) as a password.
pub fn read_line(input: impl BufRead) -> Result<Secret, HashCommandError> {
    let mut line = Vec::new();
    input
        .take(MAX_PASSWORD as u64 + 2)
        .read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    let text = String::from_utf8(line).map_err(|_| HashCommandError::Bad("not UTF-8 text"))?;
    checked(text)
}

fn checked(password: String) -> Result<Secret, HashCommandError> {
    if password.is_empty() {
        return Err(HashCommandError::Bad("an empty password"));
    }
    if password.len() > MAX_PASSWORD {
        return Err(HashCommandError::Bad("longer than 4096 bytes"));
    }
    Ok(Secret::new(&password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_password_without_its_end_and_empty_is_refused() {
        let secret = read_line(&b"hunter2\r\nmore\n"[..]).expect("a password");
        assert_eq!(secret.expose(), b"hunter2");
        assert!(read_line(&b"\n"[..]).is_err());
        assert!(read_line(&b""[..]).is_err());
        assert!(read_line(&[b'x'; 5000][..]).is_err());
        assert!(read_line(&b"\xff\n"[..]).is_err());
    }
}
