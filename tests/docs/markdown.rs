//! Reading the docs: every Markdown file of the guide, its fenced blocks, headings and links.

use std::path::{Path, PathBuf};

/// One Markdown file, read whole.
pub struct Doc {
    /// Its path relative to the repository root, as errors name it.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// One fenced block (```INFO ... ```).
pub struct Block {
    /// The file it is in (relative to the repository root).
    pub path: PathBuf,
    /// The line of its opening fence (from 1).
    pub line: usize,
    /// The info string after the opening fence, trimmed (`transcript`, `sh no-check`, ...).
    pub info: String,
    /// The lines between the fences.
    pub body: Vec<String>,
}

impl Block {
    /// `file:line`, for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.path.display(), self.line)
    }

    /// The first word of the info string (`transcript`, `sh`, `toml`, ...).
    pub fn kind(&self) -> &str {
        self.info.split_whitespace().next().unwrap_or("")
    }

    /// Whether the author marked it as deliberately not checked.
    pub fn unchecked(&self) -> bool {
        self.info.split_whitespace().any(|w| w == "no-check")
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every `.md` file under docs/, sorted by path.
pub fn all_docs() -> Vec<Doc> {
    let mut paths = vec![PathBuf::from("README.md")];
    collect_md(&root(), Path::new("docs"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(root().join(&path))
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            Doc { path, text }
        })
        .collect()
}

fn collect_md(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("read directory {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let rel = dir.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            collect_md(root, &rel, out);
        } else if rel.extension().is_some_and(|e| e == "md") {
            out.push(rel);
        }
    }
}

/// Every fenced block of `doc`, in order. An unclosed fence is an error.
pub fn blocks(doc: &Doc) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in doc.text.lines().enumerate() {
        match open.as_mut() {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    open = Some(Block {
                        path: doc.path.clone(),
                        line: i + 1,
                        info: info.trim().to_string(),
                        body: Vec::new(),
                    });
                }
            }
            Some(block) => {
                if line.trim_end() == "```" {
                    blocks.extend(open.take());
                } else {
                    block.body.push(line.to_string());
                }
            }
        }
    }
    if let Some(block) = open {
        panic!("{}: fence never closed", block.at());
    }
    blocks
}

/// The lines of `doc` outside fenced blocks, with their numbers (from 1).
fn prose(doc: &Doc) -> Vec<(usize, &str)> {
    let mut inside = false;
    let mut lines = Vec::new();
    for (i, line) in doc.text.lines().enumerate() {
        if line.starts_with("```") {
            inside = !inside;
        } else if !inside {
            lines.push((i + 1, line));
        }
    }
    lines
}

/// The anchors GitHub gives `doc`'s headings: lower case, punctuation dropped, spaces to `-`,
/// repeats numbered `-1`, `-2`, ...
pub fn anchors(doc: &Doc) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut anchors = Vec::new();
    for (_, line) in prose(doc) {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let n = seen.iter().filter(|s| **s == slug).count();
        seen.push(slug.clone());
        anchors.push(if n == 0 { slug } else { format!("{slug}-{n}") });
    }
    anchors
}

/// Every link target in `doc`'s prose (`[text](target)` and `<img src="target">`) with its line.
pub fn links(doc: &Doc) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    for (n, line) in prose(doc) {
        for (open, close) in [("](", ')'), ("src=\"", '"')] {
            links.extend(between(line, open, close).map(|target| (n, target.to_string())));
        }
    }
    links
}

/// Every piece of `line` that follows `open` and runs up to the next `close`.
fn between<'a>(line: &'a str, open: &'a str, close: char) -> impl Iterator<Item = &'a str> + 'a {
    line.split(open)
        .skip(1)
        .filter_map(move |rest| rest.find(close).map(|end| &rest[..end]))
}
