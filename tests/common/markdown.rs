//! Code blocks of the Markdown documents, for the tests that keep README.md and docs/guide.md true
//! (included by path, so that a test binary takes only this and not the example's resources).
#![allow(dead_code)]

use std::path::Path;

/// The fenced blocks of a Markdown text: (language, body).
pub fn blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) => current = Some((lang.trim().to_owned(), Vec::new())),
            (Some(_), Some("")) => {
                let (lang, lines) = current.take().unwrap_or_default();
                out.push((lang, lines.join("\n")));
            }
            (Some((_, lines)), _) => lines.push(line),
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "an unclosed code block");
    out
}

/// Whether `block`'s lines appear, in order and contiguous, in `source` (trailing spaces aside).
pub fn is_slice_of(block: &str, source: &str) -> bool {
    let block: Vec<&str> = block.lines().map(str::trim_end).collect();
    let source: Vec<&str> = source.lines().map(str::trim_end).collect();
    !block.is_empty() && source.windows(block.len()).any(|w| w == block.as_slice())
}

/// A file of the repository.
pub fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}
