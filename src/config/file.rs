//! The `--config` file: TOML whose keys are the flags' long names (`max-clients = 100`, repeatable
//! flags as arrays, switches as `true`/`false`). Each value is turned back into its flag and parsed
//! by clap like the command line, so the file cannot get past a flag's parser or bounds; flags
//! given on the command line win over the file. One key has a block form besides: `[[oper]]`
//! with `name` and `password` (a PHC string) is `--oper NAME=PHC`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};
use toml::{Spanned, Value};

use super::ServerArgs;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The command line is wrong or asks for `--help`: clap reports it as usual.
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        source: std::io::Error,
    },
    /// The file is not TOML, or one of its keys or values is refused.
    #[error("config file {}, line {line}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Where in it (from 1).
        line: usize,
        /// What is wrong there, naming the key.
        message: String,
    },
}

/// Parses the command line `cli` (program name first) and, when it names `--config`, that file,
/// whose keys fill in what the command line leaves unset.
pub fn load(cli: &[OsString]) -> Result<ServerArgs, LoadError> {
    let matches = ServerArgs::command().try_get_matches_from(cli)?;
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
        return Ok(ServerArgs::from_arg_matches(&matches)?);
    };
    let text = read(&path)?;
    let from_file = file_args(&text, &matches).map_err(|(line, message)| LoadError::File {
        path: path.clone(),
        line,
        message,
    })?;
    let program = cli.first().cloned().unwrap_or_else(|| "chatd".into());
    let merged = std::iter::once(program)
        .chain(from_file)
        .chain(cli.iter().skip(1).cloned());
    Ok(ServerArgs::try_parse_from(merged)?)
}

/// Reads the file, bounded: a config file is a few kilobytes, not whatever the path points at.
fn read(path: &Path) -> Result<String, LoadError> {
    use std::io::Read;
    const MAX_FILE: u64 = 1 << 20;
    let error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE + 1).read_to_string(&mut text))
        .map_err(error)?;
    if text.len() as u64 > MAX_FILE {
        return Err(error(std::io::Error::other("larger than 1 MiB")));
    }
    Ok(text)
}

/// The file's settings as command-line arguments, leaving out every flag `cli` gave itself. Each
/// key is parsed on its own first, so an error carries its line: `(line, message)`.
fn file_args(text: &str, cli: &ArgMatches) -> Result<Vec<OsString>, (usize, String)> {
    let table: BTreeMap<String, Spanned<Value>> = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |span| line_of(text, span.start));
        (line, e.message().trim().to_string())
    })?;
    let command = ServerArgs::command();
    let mut args = Vec::new();
    for (key, value) in table {
        let line = line_of(text, value.span().start);
        let arg = command
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(key.as_str())
                    || a.get_all_aliases()
                        .is_some_and(|aliases| aliases.contains(&key.as_str()))
            })
            .filter(|a| a.get_id() != "config")
            .ok_or_else(|| {
                (
                    line,
                    format!("unknown key `{key}` (keys are chatd's flags)"),
                )
            })?;
        let flag = format!("--{}", arg.get_long().unwrap_or(key.as_str()));
        // A flag that takes a value among which is `true` (`udp-validate`) takes a boolean as
        // that word; switches take booleans as themselves.
        let takes_bool = !matches!(arg.get_action(), ArgAction::SetTrue)
            && arg
                .get_possible_values()
                .iter()
                .any(|v| v.matches("true", false));
        let value = match value.get_ref() {
            Value::Boolean(b) if takes_bool => Value::String(b.to_string()),
            Value::Array(items) if arg.get_id() == "opers" => Value::Array(
                items
                    .iter()
                    .map(oper_block)
                    .collect::<Result<_, _>>()
                    .map_err(|message| (line, format!("{key}: {message}")))?,
            ),
            other => other.clone(),
        };
        let these = as_args(&flag, arg.get_action(), &value)
            .map_err(|message| (line, format!("{key}: {message}")))?;
        // Same parsers, same bounds: the flag alone must parse as it would on the command line.
        if let Err(e) =
            ServerArgs::try_parse_from(std::iter::once("chatd".into()).chain(these.clone()))
        {
            return Err((line, format!("{key}: {}", clap_message(&e))));
        }
        if cli.value_source(arg.get_id().as_str()) != Some(ValueSource::CommandLine) {
            args.extend(these);
        }
    }
    Ok(args)
}

/// The arguments one key stands for: `--flag=value`, a switch alone, or one per array item.
fn as_args(flag: &str, action: &ArgAction, value: &Value) -> Result<Vec<OsString>, String> {
    match (action, value) {
        (ArgAction::SetTrue, Value::Boolean(true)) => Ok(vec![flag.into()]),
        (ArgAction::SetTrue, Value::Boolean(false)) => Ok(Vec::new()),
        (ArgAction::SetTrue, other) => Err(format!("expected true or false, got {}", kind(other))),
        (ArgAction::Append, Value::Array(items)) => items
            .iter()
            .map(|item| scalar(item).map(|v| format!("{flag}={v}").into()))
            .collect(),
        (ArgAction::Append, item) => Ok(vec![format!("{flag}={}", scalar(item)?).into()]),
        (_, Value::Array(_)) => Err("expected one value, got an array".into()),
        (_, item) => Ok(vec![format!("{flag}={}", scalar(item)?).into()]),
    }
}

/// An `[[oper]]` block (`name`, `password`) as `--oper`'s `NAME=PHC`; other items unchanged.
fn oper_block(item: &Value) -> Result<Value, String> {
    let Value::Table(block) = item else {
        return Ok(item.clone());
    };
    let field = |name: &str| match block.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        _ => Err(format!("an [[oper]] block needs `{name}` as a string")),
    };
    if let Some(other) = block.keys().find(|k| *k != "name" && *k != "password") {
        return Err(format!(
            "unknown key `{other}` in an [[oper]] block (name, password)"
        ));
    }
    Ok(Value::String(format!(
        "{}={}",
        field("name")?,
        field("password")?
    )))
}

/// A value as its flag would be typed.
fn scalar(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(n) => Ok(n.to_string()),
        Value::Float(x) => Ok(x.to_string()),
        other => Err(format!(
            "expected a string or a number, got {}",
            kind(other)
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    value.type_str()
}

/// Clap's reason, without its `error:` prefix and usage hints.
fn clap_message(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// The line (from 1) holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &str) -> Vec<OsString> {
        std::iter::once("chatd")
            .chain(args.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    fn from_file(text: &str, args: &str) -> Result<Vec<String>, (usize, String)> {
        let matches = ServerArgs::command()
            .try_get_matches_from(cli(args))
            .expect("command line");
        file_args(text, &matches).map(|args| {
            args.into_iter()
                .map(|a| a.into_string().expect("utf-8"))
                .collect()
        })
    }

    #[test]
    fn keys_become_the_flags_of_the_same_name() {
        let args = from_file(
            "motd = \"hi there\"\nmax-clients = 100\nrate = 0.5\necho = true\n\
             udp-validate = false\noper = [\"ann\", \"bob\"]\nhistory-db = \"x.db\"\n",
            "",
        )
        .expect("valid file");
        assert_eq!(
            args,
            [
                "--echo",
                "--db=x.db",
                "--max-clients=100",
                "--motd=hi there",
                "--oper=ann",
                "--oper=bob",
                "--rate=0.5",
                "--udp-validate=false",
            ]
        );
    }

    #[test]
    fn listeners_and_the_certificate_are_keys_too() {
        let args = from_file(
            "tls = 6698\nircs = 6697\nself-signed = true\nirc = 6667\n",
            "",
        )
        .expect("valid file");
        assert_eq!(
            args,
            ["--irc=6667", "--ircs=6697", "--self-signed", "--tls=6698"]
        );
    }

    #[test]
    fn oper_blocks_are_names_with_their_hashes() {
        let phc = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$\
                   kyW4mBnmQBqzNY5qz1AjGyiDUMVGrwlyIhXbCMC/SrM";
        let text = format!(
            "[[oper]]\nname = \"root\"\npassword = \"{phc}\"\n\n[[oper]]\nname = \"ann\"\n\
             password = \"{phc}\"\n"
        );
        let args = from_file(&text, "").expect("valid file");
        assert_eq!(
            args,
            [format!("--oper=root={phc}"), format!("--oper=ann={phc}")]
        );
        let (line, message) =
            from_file("[[oper]]\nname = \"root\"\n", "").expect_err("no password");
        assert_eq!(line, 1);
        assert!(message.contains("needs `password`"), "{message}");
        let (_, message) =
            from_file("[[oper]]\nname = \"root\"\npassword = \"x\"\n", "").expect_err("not a hash");
        assert!(message.contains("not a PHC password hash"), "{message}");
    }

    #[test]
    fn the_command_line_wins_even_for_lists() {
        let args = from_file(
            "motd = \"file\"\noper = [\"ann\"]\nmax-line = 100\n",
            "--motd cli --oper x",
        )
        .expect("valid file");
        assert_eq!(args, ["--max-line=100"]);
    }

    #[test]
    fn errors_name_the_key_and_its_line() {
        let (line, message) = from_file("motd = \"ok\"\n\nmax-clients = 0\n", "").unwrap_err();
        assert_eq!(line, 3);
        assert!(message.starts_with("max-clients: "), "{message}");
        assert!(message.contains("1..=1000000"), "{message}");
        let (line, message) = from_file("motd = \"ok\"\nmax-cleints = 5\n", "").unwrap_err();
        assert_eq!(
            (line, message.contains("unknown key `max-cleints`")),
            (2, true)
        );
        let (line, _) = from_file("motd = \"ok\"\nrate = \n", "").unwrap_err();
        assert_eq!(line, 2);
        for (text, expected) in [
            ("echo = 1\n", "echo: expected true or false"),
            ("motd = [\"a\"]\n", "motd: expected one value"),
            ("motd = true\n", "motd: expected a string or a number"),
            ("udp-validate = 1\n", "udp-validate: invalid value"),
            ("[tcp]\nport = 1\n", "tcp: expected a string"),
            ("config = \"other.toml\"\n", "unknown key `config`"),
            ("sendq = 10\n", "sendq: invalid value"),
            (
                "trusted-proxy = [\"10.0.0.0/33\"]\n",
                "trusted-proxy: invalid value",
            ),
        ] {
            let (line, message) = from_file(text, "").unwrap_err();
            assert_eq!(line, 1, "{text}");
            assert!(message.starts_with(expected), "{text}: {message}");
        }
    }

    #[test]
    fn load_merges_file_and_command_line() {
        let dir = std::env::temp_dir().join(format!("chatd-config-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("chatd.toml");
        std::fs::write(
            &path,
            "motd = \"from the file\"\nmax-per-ip = 3\nhistory = 5\n",
        )
        .expect("write");
        let given = format!("--config {} --history 7", path.display());
        let args = load(&cli(&given)).expect("loads");
        assert_eq!(args.motd, "from the file");
        assert_eq!(args.max_per_ip, 3);
        assert_eq!(args.history, 7, "the command line wins");
        let missing = load(&cli("--config /nonexistent/chatd.toml")).unwrap_err();
        assert!(matches!(missing, LoadError::Read { .. }), "{missing}");
        std::fs::write(&path, "motd = \"unterminated\n").expect("write");
        let broken = load(&cli(&format!("--config {}", path.display()))).unwrap_err();
        assert!(broken.to_string().contains("line 1"), "{broken}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_are_counted_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
