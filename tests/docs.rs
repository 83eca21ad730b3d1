//! The docs cannot drift from the behaviour: every fenced block in README.md and docs/**/*.md is
//! checked against the real thing, or marked `no-check` and counted.
//!
//! - ```transcript blocks are replayed against a real server (see docs/README.md for the
//!   convention) and every line a client receives must be the one shown;
//! - ```sh blocks may only run chatd, chatc, nc or `cargo test`: each command parses with the
//!   programs' own clap definitions, and those needing nothing from outside are run against a
//!   real server (the built chatd, the built chatc);
//! - ```toml blocks load with chatd's config loader and start the built chatd;
//! - ```ini blocks are lines of contrib/chatd.service;
//! - relative links and `#anchors` point at files and headings that exist.

#[path = "docs/commands.rs"]
mod commands;
mod common;
#[path = "docs/markdown.rs"]
mod markdown;
#[path = "common/nats.rs"]
mod nats;
#[path = "docs/transcript.rs"]
mod transcript;

use markdown::{all_docs, blocks, Block};

/// Blocks deliberately left unchecked (benchmark figures, systemctl, other programs' configs):
/// few, and each says `no-check` in its info string. Raise this only with a reason.
const MAX_UNCHECKED: usize = 12;

/// Every block of every doc, in file order.
fn all_blocks() -> Vec<Block> {
    all_docs().iter().flat_map(blocks).collect()
}

fn checked(kind: &str) -> Vec<Block> {
    all_blocks()
        .into_iter()
        .filter(|b| b.kind() == kind && !b.unchecked())
        .collect()
}

#[test]
fn every_block_is_checked_or_marked_no_check() {
    let blocks = all_blocks();
    let mut unknown = Vec::new();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for block in &blocks {
        let kind = if block.unchecked() {
            "no-check"
        } else {
            block.kind()
        };
        match kind {
            "transcript" | "sh" | "toml" | "ini" | "no-check" => {
                *counts.entry(kind.to_string()).or_default() += 1
            }
            _ => unknown.push(format!("{} ```{}", block.at(), block.info)),
        }
    }
    eprintln!("docs blocks: {counts:?}");
    assert!(
        unknown.is_empty(),
        "blocks no test checks (use transcript, sh, toml or ini, or add `no-check`):\n{}",
        unknown.join("\n")
    );
    let unchecked = counts.get("no-check").copied().unwrap_or(0);
    assert!(
        unchecked <= MAX_UNCHECKED,
        "{unchecked} blocks are marked no-check; at most {MAX_UNCHECKED}"
    );
    for kind in ["transcript", "sh", "toml", "ini"] {
        assert!(
            counts.get(kind).is_some_and(|&n| n > 0),
            "no {kind} block found"
        );
    }
}

#[test]
fn relative_links_point_at_files_and_headings() {
    let docs = all_docs();
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        for (line, target) in markdown::links(doc) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let dir = doc.path.parent().unwrap_or(std::path::Path::new(""));
            let path = if file.is_empty() {
                doc.path.clone()
            } else {
                dir.join(file)
            };
            let full = markdown::root().join(&path);
            if !full.exists() {
                broken.push(format!(
                    "{}:{line}: {target}: no such file",
                    doc.path.display()
                ));
                continue;
            }
            if anchor.is_empty() {
                continue;
            }
            let target_doc = docs.iter().find(|d| normalise(&d.path) == normalise(&path));
            match target_doc {
                Some(d) if markdown::anchors(d).iter().any(|a| a == anchor) => {}
                Some(_) => broken.push(format!(
                    "{}:{line}: {target}: no heading with that anchor",
                    doc.path.display()
                )),
                None => broken.push(format!(
                    "{}:{line}: {target}: an anchor into a file that is not a doc",
                    doc.path.display()
                )),
            }
        }
    }
    eprintln!("relative links checked: {checked}");
    assert!(checked > 0, "no relative links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `docs/users/../protocol.md` as `docs/protocol.md`.
fn normalise(path: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[tokio::test]
async fn transcripts_replay_against_a_real_server() {
    let transcripts: Vec<_> = checked("transcript")
        .iter()
        .map(transcript::parse)
        .collect();
    for t in &transcripts {
        eprintln!("replaying {}", t.at);
        transcript::replay(t).await;
    }
    eprintln!("transcripts replayed: {}", transcripts.len());
}

#[tokio::test]
async fn shell_commands_parse_and_the_runnable_ones_serve() {
    let mut parsed = 0;
    let mut ran = 0;
    for block in checked("sh") {
        // What a block starts lives until its end, so its later lines reach it.
        let mut sandbox = commands::Sandbox::default();
        for (i, line) in block.body.iter().enumerate() {
            let at = format!("{}:{}", block.path.display(), block.line + 1 + i);
            let command = match commands::command(line) {
                Ok(Some(command)) => command,
                Ok(None) => continue,
                Err(e) => panic!("{at}: {e}"),
            };
            if let Err(e) = commands::parse(&command) {
                panic!("{at}: `{line}` does not parse:\n{e}");
            }
            parsed += 1;
            eprintln!("{at}: checking {command:?}");
            if sandbox.run(&command).await {
                ran += 1;
            }
        }
    }
    eprintln!("shell commands: {parsed} parsed, {ran} of them also run against a real server");
    assert!(ran > 0, "no command was run");
}

#[tokio::test]
async fn config_snippets_load_and_serve() {
    let blocks = checked("toml");
    for block in &blocks {
        commands::check_toml(&block.at(), &block.body.join("\n")).await;
    }
    eprintln!("config snippets loaded and served: {}", blocks.len());
}

#[test]
fn service_snippets_are_lines_of_the_unit() {
    let unit = std::fs::read_to_string(markdown::root().join("contrib/chatd.service"))
        .expect("contrib/chatd.service");
    let unit_lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for block in checked("ini") {
        for (i, line) in block.body.iter().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            assert!(
                unit_lines.contains(&line),
                "{}:{}: `{line}` is not in contrib/chatd.service",
                block.path.display(),
                block.line + 1 + i
            );
        }
    }
}

/// The inline code spans of `doc`'s prose that sit on one line, with their line numbers.
fn inline_code(doc: &markdown::Doc) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut inside = false;
    for (i, line) in doc.text.lines().enumerate() {
        if line.starts_with("```") {
            inside = !inside;
            continue;
        }
        if inside {
            continue;
        }
        let pieces: Vec<&str> = line.split('`').collect();
        // Odd pieces are inside backticks when the line closes every span it opens.
        if pieces.len() % 2 == 1 {
            spans.extend(
                pieces
                    .iter()
                    .skip(1)
                    .step_by(2)
                    .map(|s| (i + 1, s.to_string())),
            );
        }
    }
    spans
}

#[test]
fn inline_chatd_commands_parse() {
    let mut checked = 0;
    for doc in all_docs() {
        for (line, span) in inline_code(&doc) {
            let Some(args) = span.strip_prefix("chatd --") else {
                continue;
            };
            let words = commands::words(&format!("--{args}")).expect("shell words");
            if let Err(e) = commands::parse(&commands::Command::Chatd(words)) {
                panic!(
                    "{}:{line}: `{span}` does not parse:\n{e}",
                    doc.path.display()
                );
            }
            checked += 1;
        }
    }
    eprintln!("inline chatd commands parsed: {checked}");
    assert!(checked > 0, "no inline chatd command found");
}

/// The flag table in docs/operators/configuration.md names every flag chatd has and no other,
/// and a default written as code is clap's default for that flag.
#[test]
fn the_flag_table_matches_chatds_flags() {
    use chatd::config::ServerArgs;
    use clap::CommandFactory;
    let command = ServerArgs::command();
    let doc = all_docs()
        .into_iter()
        .find(|d| d.path == std::path::Path::new("docs/operators/configuration.md"))
        .expect("docs/operators/configuration.md");
    let mut documented = Vec::new();
    let mut wrong = Vec::new();
    for (n, row) in doc.text.lines().enumerate() {
        let cells: Vec<&str> = row.split(" | ").collect();
        if !row.starts_with("| `--") || cells.len() < 3 {
            continue;
        }
        let default = cells[1].trim();
        for span in cells[0].split('`').skip(1).step_by(2) {
            let Some(long) = span.strip_prefix("--") else {
                continue;
            };
            let long = long.split_whitespace().next().unwrap_or_default();
            documented.push(long.to_string());
            let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(long)) else {
                wrong.push(format!("line {}: --{long} is not a chatd flag", n + 1));
                continue;
            };
            let clap_default: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let written = default
                .strip_prefix('`')
                .and_then(|d| d.strip_suffix('`'))
                .filter(|d| !d.contains('`'));
            match written {
                Some(d) if clap_default != [d] => wrong.push(format!(
                    "line {}: --{long}: the table says `{d}`, chatd's default is {clap_default:?}",
                    n + 1
                )),
                None if !(clap_default.is_empty() || clap_default == ["false"]) => {
                    wrong.push(format!(
                        "line {}: --{long}: the table says {default}, chatd's default is {clap_default:?}",
                        n + 1
                    ))
                }
                _ => {}
            }
        }
    }
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if !["help", "version"].contains(&long) && !documented.iter().any(|d| d == long) {
            wrong.push(format!("--{long} is missing from the table"));
        }
    }
    eprintln!("flags in the table: {}", documented.len());
    assert!(
        wrong.is_empty(),
        "the flag table and chatd differ:\n{}",
        wrong.join("\n")
    );
}

/// The config-file error the docs quote is the one chatd gives, for a file whose third line sets
/// `max-clients = 0`.
#[test]
fn the_quoted_config_error_is_chatds() {
    const PATH: &str = "/etc/chatd/chatd.toml";
    let quoted: Vec<(std::path::PathBuf, usize, String)> = all_docs()
        .iter()
        .flat_map(|doc| {
            inline_code(doc)
                .into_iter()
                .filter(|(_, span)| span.starts_with(&format!("chatd: config file {PATH}, ")))
                .map(|(line, span)| (doc.path.clone(), line, span))
        })
        .collect();
    assert!(!quoted.is_empty(), "no quoted config error found");
    let db = common::temp_db("docs-config-error");
    let path = db.with_file_name("chatd.toml");
    std::fs::write(&path, "tcp = 9001\nudp = 9001\nmax-clients = 0\n").expect("write config");
    let cli: Vec<std::ffi::OsString> = vec!["chatd".into(), "--config".into(), path.clone().into()];
    let error = match chatd::config::file::load(&cli) {
        Ok(_) => panic!("max-clients = 0 was accepted"),
        Err(e) => format!("chatd: {e}").replace(&path.display().to_string(), PATH),
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    for (doc, line, span) in quoted {
        assert_eq!(
            span,
            error,
            "{}:{line}: the quoted error differs",
            doc.display()
        );
    }
}
