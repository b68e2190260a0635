//! The architecture, checked: the core's top-level modules form layers, each importing only the
//! layers below it, so that no module calls back up into an earlier one (docs/architecture.md).
//! Run it with `cargo test -p rest-live-core --test layers`; `-- --nocapture` prints the module
//! graph.
//!
//! It reads the sources as text: every path that starts with `crate::`, `super::`, `self::` or a
//! child module declared with `mod x;` (in `use` lines and in code alike; comments, strings and
//! `#[cfg(test)] mod tests` blocks are left out) is resolved to the file that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules of `rest-live-core/src`, from the bottom up. A module may use only those
/// listed before it.
const LAYERS: &[&str] = &[
    // Shared by every layer; they know nothing of the others.
    "json",
    "error",
    // What a resource declared, and the query model over it.
    "meta",
    "query",
    "config",
    "outbox",
    "auth",
    "throttle",
    // The database: pool, transactions, the change log.
    "store",
    // Resources: model traits, hooks, permissions, write transactions, bindings.
    "resource",
    // Delivery: the subscription index and fan-out; the feed from the store into it.
    "hub",
    "feed",
    // Jobs: declarations, records, workers, the `jobs` stream.
    "jobs",
    // Wiring: what is registered, the running application.
    "registry",
    "app",
    // Requests: CRUD, wire formats, one socket, the HTTP API, descriptions.
    "actions",
    "protocol",
    "connection",
    "http",
    "describe",
    // The seam for web-framework adapters.
    "transport",
];

/// File-level cycles that are allowed, each within one module: a resource's hooks receive the
/// transaction ([`Tx`]) that runs them, so the model traits and `Tx` name each other.
const ALLOWED_CYCLES: &[&[&str]] = &[&["resource", "resource::tx"]];

type ModPath = Vec<String>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`, by module path (`store/mod.rs` → `store`, `lib.rs` → the root).
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<ModPath, PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read the source folder")
        .map(|e| e.expect("a folder entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a UTF-8 file name")
            .to_owned();
        if path.is_dir() {
            let mut inner = prefix.to_vec();
            inner.push(name);
            modules(&path, &inner, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut module = prefix.to_vec();
            if name != "mod" && name != "lib" {
                module.push(name);
            }
            out.insert(module, path);
        }
    }
}

/// The source without comments, string and char literals, and `#[cfg(test)] mod … { … }` blocks.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('#') || next == Some('"')) && !ident_before(&chars, i) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            'raw: while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a), which stays.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    without_test_modules(&out)
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

fn without_test_modules(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(at) = out.find("#[cfg(test)]") {
        let rest = &out[at + "#[cfg(test)]".len()..];
        let trimmed = rest.trim_start();
        let is_mod = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ");
        let Some(open) = rest.find(['{', ';']) else {
            break;
        };
        let end = if is_mod && rest.as_bytes()[open] == b'{' {
            let mut depth = 0;
            let mut end = rest.len();
            for (k, ch) in rest[open..].char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + k + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end
        } else {
            // A test-only item that is not a module: keep it, drop only the attribute.
            0
        };
        out.replace_range(at..at + "#[cfg(test)]".len() + end, " ");
    }
    out
}

/// The child modules a file declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`).
fn declared_children(code: &str) -> BTreeSet<String> {
    let mut children = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim();
        let line = line
            .strip_prefix("pub(crate) ")
            .or_else(|| line.strip_prefix("pub(super) "))
            .or_else(|| line.strip_prefix("pub "))
            .unwrap_or(line);
        if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
            children.insert(name.trim().to_owned());
        }
    }
    children
}

/// Every path of `code` that starts with one of `heads` followed by `::`, as segment lists (a
/// `use a::{b, c::d}` group gives one path per leaf).
fn paths(code: &str, heads: &BTreeSet<String>) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if is_ident_start(chars[i]) && !(i > 0 && is_path_char(chars[i - 1])) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if heads.contains(&word) && chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':')
            {
                let mut j = i + 2;
                let mut leaves = Vec::new();
                parse_tree(&chars, &mut j, vec![word], &mut leaves);
                found.extend(leaves);
                i = j;
            }
        } else {
            i += 1;
        }
    }
    found
}

/// Parses what follows `prefix::` (segments, or a `{…}` group), pushing every leaf path.
fn parse_tree(chars: &[char], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    skip_space(chars, i);
    if chars.get(*i) == Some(&'{') {
        *i += 1;
        loop {
            skip_space(chars, i);
            match chars.get(*i) {
                None => return,
                Some('}') => {
                    *i += 1;
                    return;
                }
                Some(',') => *i += 1,
                Some(_) => {
                    let before = *i;
                    parse_tree(chars, i, prefix.clone(), out);
                    // Skip `as name` and anything else up to the next item.
                    while let Some(&c) = chars.get(*i) {
                        if c == ',' || c == '}' {
                            break;
                        }
                        *i += 1;
                    }
                    if *i == before {
                        *i += 1;
                    }
                }
            }
        }
    }
    let start = *i;
    while chars.get(*i).is_some_and(|c| is_ident_char(*c)) {
        *i += 1;
    }
    if *i == start {
        out.push(prefix);
        return;
    }
    let mut path = prefix;
    let segment: String = chars[start..*i].iter().collect();
    if segment != "self" {
        path.push(segment);
    }
    if chars.get(*i) == Some(&':') && chars.get(*i + 1) == Some(&':') {
        *i += 2;
        parse_tree(chars, i, path, out);
    } else {
        out.push(path);
    }
}

fn skip_space(chars: &[char], i: &mut usize) {
    while chars.get(*i).is_some_and(|c| c.is_whitespace()) {
        *i += 1;
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A character that makes the word after it not the start of a path (`a::b`, `$crate`, `x.y`).
fn is_path_char(c: char) -> bool {
    is_ident_char(c) || c == ':' || c == '$' || c == '.'
}

/// The files each file uses, by module path.
fn graph() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut files = BTreeMap::new();
    modules(&src_dir(), &[], &mut files);
    let mut edges = BTreeMap::new();
    for (module, path) in &files {
        let source = std::fs::read_to_string(path).expect("read a source file");
        let code = code_only(&source);
        let children = declared_children(&code);
        let is_dir_module = path
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
        let mut heads: BTreeSet<String> = ["crate", "super", "self"].map(String::from).into();
        heads.extend(children.iter().cloned());
        let mut uses = BTreeSet::new();
        for segments in paths(&code, &heads) {
            let (head, rest) = segments.split_first().expect("a path has a head");
            let mut full: Vec<String> = match head.as_str() {
                "crate" => Vec::new(),
                "self" => module.clone(),
                "super" => {
                    // `super` of a file module `a::b` is `a`; of a folder module too.
                    let _ = is_dir_module;
                    module[..module.len().saturating_sub(1)].to_vec()
                }
                child => {
                    let mut m = module.clone();
                    m.push(child.to_owned());
                    m
                }
            };
            full.extend(rest.iter().cloned());
            // The deepest prefix that is a file.
            let target = (0..=full.len())
                .rev()
                .map(|n| full[..n].to_vec())
                .find(|m| files.contains_key(m));
            match target {
                // Exported macros (`crate::__with_conn!`) live at the root by Rust's rules; any
                // other path through the root would hide what it uses.
                Some(target)
                    if target.is_empty() && !full.last().is_some_and(|s| s.starts_with("__")) =>
                {
                    uses.insert(target);
                }
                Some(target) if target.is_empty() => {}
                Some(target) if target != *module => {
                    uses.insert(target);
                }
                _ => {}
            }
        }
        edges.insert(module.clone(), uses);
    }
    edges
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

#[test]
fn every_module_is_in_a_layer() {
    let listed: BTreeSet<&str> = LAYERS.iter().copied().collect();
    assert_eq!(listed.len(), LAYERS.len(), "a module is listed twice");
    let top: BTreeSet<String> = graph().keys().filter_map(|m| m.first().cloned()).collect();
    let top: BTreeSet<&str> = top.iter().map(String::as_str).collect();
    assert_eq!(
        top, listed,
        "LAYERS must list exactly the top-level modules of rest-live-core/src"
    );
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let rank = |m: &[String]| -> Option<usize> {
        let top = m.first()?;
        LAYERS.iter().position(|l| l == top)
    };
    let mut violations = Vec::new();
    for (from, uses) in graph() {
        // The crate root declares and re-exports everything; it is not a layer.
        let Some(from_rank) = rank(&from) else {
            continue;
        };
        for to in uses {
            let Some(to_rank) = rank(&to) else {
                violations.push(format!("{} uses the crate root", name(&from)));
                continue;
            };
            if to_rank > from_rank {
                violations.push(format!(
                    "{} (layer {}) uses {} (layer {}), which is above it",
                    name(&from),
                    LAYERS[from_rank],
                    name(&to),
                    LAYERS[to_rank]
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that run up the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn no_file_level_cycle_but_the_declared_ones() {
    let edges = graph();
    for (from, uses) in &edges {
        println!(
            "{} -> {:?}",
            name(from),
            uses.iter().map(|u| name(u)).collect::<Vec<_>>()
        );
    }
    let cycles: Vec<BTreeSet<String>> = strongly_connected(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.iter().map(|m| name(m)).collect())
        .collect();
    let allowed: Vec<BTreeSet<String>> = ALLOWED_CYCLES
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect();
    let unexpected: Vec<_> = cycles.iter().filter(|c| !allowed.contains(c)).collect();
    assert!(
        unexpected.is_empty(),
        "import cycles among the core's files: {unexpected:?}"
    );
}

/// Tarjan's strongly connected components.
fn strongly_connected(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        next: usize,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flatten() {
            let Some((w, _)) = edges.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[w].min(s.low[v]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.index[w].min(s.low[v]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.out
}

/// The checker itself, on a few lines of code it must read right (a checker that sees no import
/// would pass any tree).
#[test]
fn the_reader_finds_paths_in_code_and_not_in_comments() {
    let code = code_only(
        "use crate::store::{self, changelog::{Change, read_stream}, AnyConn as C};\n\
         // use crate::app::App;\n\
         let s = \"crate::http::x\";\n\
         fn f<'a>(x: &'a str) -> char { let _ = crate::hub::Hub::new(); 'x' }\n\
         $crate::__private::x; super::sibling::Y; child::Z;\n\
         #[cfg(test)]\nmod tests { use crate::connection::Connection; }\n",
    );
    let heads: BTreeSet<String> = ["crate", "super", "child"].map(String::from).into();
    let found: BTreeSet<String> = paths(&code, &heads)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let expected: BTreeSet<String> = [
        "crate::store",
        "crate::store::changelog::Change",
        "crate::store::changelog::read_stream",
        "crate::store::AnyConn",
        "crate::hub::Hub::new",
        "super::sibling::Y",
        "child::Z",
    ]
    .map(String::from)
    .into();
    assert_eq!(found, expected);
}
