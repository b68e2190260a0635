//! Tests that need PostgreSQL show it: `cargo test` lists each of them as `ignored, needs
//! PostgreSQL …` (never an `ok` that ran nothing), and CI and the README run them on purpose with
//! `--ignored`, where `TestDatabase::require_postgres` fails them if there is no server.
//!
//! It reads the test sources as text. A test needs PostgreSQL if its body calls
//! `TestDatabase::require_postgres` or `TestDatabase::postgres`, directly or through a function
//! of its file that does. Each such test must carry `#[ignore = "needs PostgreSQL …"]`; no other
//! test may be ignored (so that `--ignored` runs exactly these); and every file holding one must be
//! named (`--test <file>`) on a `--ignored` line of `.ci/run` and of the README.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const REASON: &str = "needs PostgreSQL";
/// What a function calls to get a PostgreSQL database.
const NEEDS: &[&str] = &["require_postgres", "TestDatabase::postgres"];

/// A function found in a source file.
#[derive(Debug)]
struct Function {
    name: String,
    /// Its attributes, as written.
    attributes: Vec<String>,
    /// Its body, comments and the insides of literals blanked out.
    body: String,
    line: usize,
}

impl Function {
    fn is_test(&self) -> bool {
        self.attributes.iter().any(|a| {
            let path = a
                .trim_start_matches("#[")
                .split(['(', ']'])
                .next()
                .unwrap_or("")
                .trim();
            path == "test" || path.ends_with("::test")
        })
    }

    fn ignore(&self) -> Option<&str> {
        self.attributes
            .iter()
            .map(String::as_str)
            .find(|a| a.starts_with("#[ignore"))
    }
}

/// `source` with comments replaced by spaces and the insides of string and char literals by
/// spaces (line breaks kept): every index still points at the same place.
fn blank(source: &[char]) -> Vec<char> {
    let mut out = source.to_vec();
    let mut i = 0;
    let blank_range = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    while i < source.len() {
        let rest = &source[i..];
        if rest.starts_with(&['/', '/']) {
            let end = (i..source.len())
                .find(|&j| source[j] == '\n')
                .unwrap_or(source.len());
            blank_range(&mut out, i, end);
            i = end;
        } else if rest.starts_with(&['/', '*']) {
            let end = (i + 2..source.len().saturating_sub(1))
                .find(|&j| source[j] == '*' && source[j + 1] == '/')
                .map_or(source.len(), |j| j + 2);
            blank_range(&mut out, i, end);
            i = end;
        } else if source[i] == 'r'
            && (i == 0 || !is_ident(source[i - 1]))
            && rest.get(1 + hashes(rest)) == Some(&'"')
        {
            // r"…", r#"…"#
            let hashes = hashes(rest);
            let start = i + 2 + hashes;
            let mut j = start;
            while j < source.len() {
                if source[j] == '"'
                    && source[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&c| c == '#')
                        .count()
                        == hashes
                {
                    break;
                }
                j += 1;
            }
            blank_range(&mut out, start, j.min(source.len()));
            i = j + 1 + hashes;
        } else if source[i] == '"' {
            let mut j = i + 1;
            while j < source.len() && source[j] != '"' {
                j += if source[j] == '\\' { 2 } else { 1 };
            }
            blank_range(&mut out, i + 1, j.min(source.len()));
            i = j + 1;
        } else if source[i] == '\'' {
            // A char literal ('x', '\n', '\u{7f}'), or a lifetime ('a).
            let end = if rest.get(1) == Some(&'\\') {
                (i + 3..source.len()).find(|&j| source[j] == '\'')
            } else if rest.get(2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank_range(&mut out, i + 1, end);
                    i = end + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The `#`s after the `r` that starts `rest`.
fn hashes(rest: &[char]) -> usize {
    rest.iter().skip(1).take_while(|&&c| c == '#').count()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every function of a file, with its attributes and body.
fn functions(text: &str) -> Vec<Function> {
    let source: Vec<char> = text.chars().collect();
    let code = blank(&source);
    let mut found = Vec::new();
    let mut i = 0;
    while i + 3 < code.len() {
        let is_fn =
            code[i..].starts_with(&['f', 'n', ' ']) && (i == 0 || code[i - 1].is_whitespace());
        if !is_fn {
            i += 1;
            continue;
        }
        let name: String = code[i + 3..].iter().take_while(|&&c| is_ident(c)).collect();
        // The body: from the first `{` (a `;` first: no body) outside the signature's
        // parentheses and brackets (`[u8; 4]`) to its match.
        let mut nesting = 0i32;
        let Some(open) = (i..code.len()).find(|&j| {
            match code[j] {
                '(' | '[' => nesting += 1,
                ')' | ']' => nesting -= 1,
                _ => {}
            }
            nesting == 0 && (code[j] == '{' || code[j] == ';')
        }) else {
            break;
        };
        if code[open] == ';' {
            i = open + 1;
            continue;
        }
        let mut depth = 0;
        let mut close = open;
        for (j, &c) in code.iter().enumerate().skip(open) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        // Attributes: `#[…]` groups before the keywords (`pub`, `async`, …) in front of `fn`.
        let mut start = i;
        while start > 0 && (code[start - 1].is_whitespace() || is_ident(code[start - 1])) {
            start -= 1;
        }
        let mut attributes = Vec::new();
        let mut end = start;
        loop {
            while end > 0 && code[end - 1].is_whitespace() {
                end -= 1;
            }
            if end == 0 || code[end - 1] != ']' {
                break;
            }
            let mut depth = 0;
            let mut open = end - 1;
            loop {
                match code[open] {
                    ']' => depth += 1,
                    '[' => depth -= 1,
                    _ => {}
                }
                if depth == 0 || open == 0 {
                    break;
                }
                open -= 1;
            }
            if open == 0 || code[open - 1] != '#' {
                break;
            }
            attributes.push(source[open - 1..end].iter().collect::<String>());
            end = open - 1;
        }
        attributes.reverse();
        found.push(Function {
            name,
            attributes,
            body: code[open..=close].iter().collect(),
            line: code[..i].iter().filter(|&&c| c == '\n').count() + 1,
        });
        i = open + 1;
    }
    found
}

/// Whether `body` calls `name` (`name(`, `path::name(`, a method `.name(`).
fn calls(body: &str, name: &str) -> bool {
    body.match_indices(name).any(|(at, _)| {
        let before = body[..at].chars().next_back();
        let after = body[at + name.len()..].trim_start();
        !before.is_some_and(is_ident) && after.starts_with('(')
    })
}

/// The functions of `functions` that need PostgreSQL, by name.
fn needing_postgres(functions: &[Function]) -> BTreeSet<String> {
    let mut needing: BTreeSet<String> = BTreeSet::new();
    loop {
        let more: Vec<String> = functions
            .iter()
            .filter(|f| !needing.contains(&f.name))
            .filter(|f| {
                NEEDS.iter().any(|n| calls(&f.body, n)) || needing.iter().any(|n| calls(&f.body, n))
            })
            .map(|f| f.name.clone())
            .collect();
        if more.is_empty() {
            return needing;
        }
        needing.extend(more);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the tests folder")
        .map(|e| e.expect("a folder entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `--test <name>`s on the lines of `text` that run ignored tests.
fn run_ignored(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| line.contains("--ignored") || line.contains("--include-ignored"))
        .flat_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words
                .windows(2)
                .filter(|w| w[0] == "--test")
                .map(|w| w[1].trim_matches(['`', '\'', '"']).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What is wrong with the tests of `files` (path, source), for the runs in `ci` and `readme`.
fn problems(files: &[(String, String)], ci: &str, readme: &str) -> (Vec<String>, usize, usize) {
    let mut problems = Vec::new();
    let mut tests = 0;
    let mut postgres_files: BTreeMap<String, usize> = BTreeMap::new();
    for (path, text) in files {
        let functions = functions(text);
        let needing = needing_postgres(&functions);
        for f in functions.iter().filter(|f| f.is_test()) {
            tests += 1;
            let at = format!("{path}:{} {}", f.line, f.name);
            let needs = needing.contains(&f.name);
            match (needs, f.ignore()) {
                (true, Some(ignore)) if ignore.contains(&format!("\"{REASON}")) => {
                    let stem = Path::new(path)
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default()
                        .to_owned();
                    *postgres_files.entry(stem).or_default() += 1;
                }
                (true, _) => problems.push(format!(
                    "{at}: needs PostgreSQL, so it must be #[ignore = \"{REASON}: …\"]"
                )),
                (false, Some(ignore)) => problems.push(format!(
                    "{at}: ignored ({ignore}) but needs no PostgreSQL: `--ignored` runs would pick it up"
                )),
                (false, None) => {}
            }
        }
    }
    let (in_ci, in_readme) = (run_ignored(ci), run_ignored(readme));
    for file in postgres_files.keys() {
        if !in_ci.contains(file) {
            problems.push(format!(
                "{file}: not run by .ci/run (`cargo test --test {file} … -- --ignored`)"
            ));
        }
        if !in_readme.contains(file) {
            problems.push(format!(
                "{file}: the README's PostgreSQL command does not name `--test {file}`"
            ));
        }
    }
    let postgres_tests = postgres_files.values().sum();
    (problems, tests, postgres_tests)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_test_that_needs_postgres_is_ignored_with_the_reason_and_run_by_ci() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    rust_files(&root.join("tests"), &mut paths);
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let name = p.strip_prefix(root).unwrap_or(p).display().to_string();
            (name, read(p))
        })
        .collect();
    let (problems, tests, postgres_tests) = problems(
        &files,
        &read(&root.join(".ci/run")),
        &read(&root.join("README.md")),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The reading found the suite (it did not pass by finding nothing).
    assert!(tests > 100, "only {tests} tests found");
    assert!(
        postgres_tests >= 3,
        "only {postgres_tests} PostgreSQL tests found"
    );
}

/// The check itself, on made-up sources: it finds what it must.
#[test]
fn the_check_finds_an_unmarked_test_a_stray_ignore_and_a_file_ci_does_not_run() {
    let source = r##"
        async fn database() -> TestDatabase {
            // TestDatabase::require_postgres() in a comment is no call
            TestDatabase::require_postgres().await
        }

        #[tokio::test]
        #[ignore = "needs PostgreSQL: run with --ignored"]
        async fn marked() { let _db = database().await; }

        /// Says `{` in a doc comment.
        #[tokio::test(flavor = "multi_thread")]
        async fn unmarked() {
            let brace = '{';
            let _ = r#"}"#;
            let _db = TestDatabase::postgres().await;
        }

        #[test]
        #[ignore = "slow"]
        fn stray() { let _ = "require_postgres()"; }

        #[test]
        fn plain<'a>() { let _: &'a str = "}"; }
    "##;
    let files = [("tests/pg.rs".to_owned(), source.to_owned())];
    let (found, tests, postgres) = problems(&files, "", "cargo test --test pg -- --ignored");
    assert_eq!((tests, postgres), (4, 1));
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].contains("unmarked: needs PostgreSQL"),
        "{found:#?}"
    );
    assert!(found[1].contains("stray: ignored"), "{found:#?}");
    assert!(found[2].contains("pg: not run by .ci/run"), "{found:#?}");

    let (found, ..) = problems(
        &files[..],
        "cargo test --test pg -- --ignored",
        "cargo test --test pg -- --ignored",
    );
    assert_eq!(found.len(), 2, "{found:#?}");
}
