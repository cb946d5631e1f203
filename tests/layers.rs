//! The shape of `src/`, read from the source as a newcomer would, so it cannot drift:
//!
//! - Layers point down only: no import cycle among the files of `src/`, hence none among
//!   its top-level modules, and `config` imports nothing of the crate. Every `crate::`
//!   or `super::` path outside comments and the trailing `#[cfg(test)]` module is an
//!   edge from its file to the file the path names (the longest module path that is a
//!   file). Edges between a module and its own parent or child are left out: a parent
//!   declares its children, a child may use its parent's types; a cycle through a
//!   sibling is what counts. The same check as `shared/tools/module-cycles.py src`, at
//!   file granularity.
//! - Short files and functions: no file over 600 lines and no function over 100, except
//!   the files and functions named in [`LONG`] (each named in docs/ARCHITECTURE.md with
//!   why).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files and functions allowed past the limits (`path` or `path::function`), each
/// explained in docs/ARCHITECTURE.md, "Long on purpose".
const LONG: &[&str] = &[];

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 100;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `session/routing.rs` -> `session::routing`; `session/mod.rs` -> `session`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// The code of a file without its trailing test module and without comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths named after `prefix` (`crate::` or `super::`) in `code`.
fn paths_after<'a>(code: &'a str, prefix: &'a str) -> impl Iterator<Item = Vec<String>> + 'a {
    code.match_indices(prefix).filter_map(move |(i, _)| {
        if code[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            return None;
        }
        let rest = &code[i + prefix.len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let parts: Vec<String> = path
            .split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        (!parts.is_empty()).then_some(parts)
    })
}

/// File module -> the file modules it names.
fn file_edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = src();
    let mut all = Vec::new();
    files(&src, &mut all);
    let modules: BTreeMap<String, PathBuf> = all
        .iter()
        .map(|p| (module_of(p.strip_prefix(&src).unwrap()), p.clone()))
        .collect();
    let resolve = |parts: &[String]| -> Option<String> {
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| modules.contains_key(m))
    };
    let mut graph = BTreeMap::new();
    for (module, path) in &modules {
        if module.is_empty() {
            continue; // lib.rs / main.rs declare everything
        }
        let code = code(&std::fs::read_to_string(path).unwrap());
        let is_mod_rs = path.file_name().is_some_and(|f| f == "mod.rs");
        let own: Vec<String> = module.split("::").map(str::to_string).collect();
        // `super` of `a::b` (file a/b.rs) is `a`; of `a::b` (file a/b/mod.rs) also `a`.
        let parent = &own[..own.len() - 1];
        let _ = is_mod_rs;
        let mut deps = BTreeSet::new();
        let named = paths_after(&code, "crate::")
            .chain(paths_after(&code, "super::").map(|p| [parent.to_vec(), p].concat()));
        for parts in named {
            let Some(target) = resolve(&parts) else {
                continue;
            };
            let related = target == *module
                || target.is_empty()
                || module.starts_with(&format!("{target}::"))
                || target.starts_with(&format!("{module}::"));
            if !related {
                deps.insert(target);
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

/// Top-level module -> the top-level modules it names.
fn top_level_edges() -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").next().unwrap().to_string();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, deps) in file_edges() {
        let from = top(&module);
        let entry = graph.entry(from.clone()).or_default();
        entry.extend(deps.iter().map(|d| top(d)).filter(|d| *d != from));
    }
    graph
}

/// A cycle through `start`, if any (depth-first search).
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    at: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> bool {
    for next in graph.get(at).into_iter().flatten() {
        if next == start {
            return true;
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if cycle_from(graph, start, next, path, seen) {
                return true;
            }
            path.pop();
        }
    }
    false
}

fn assert_acyclic(graph: &BTreeMap<String, BTreeSet<String>>) {
    for module in graph.keys() {
        let mut path = vec![module.clone()];
        let mut seen = BTreeSet::new();
        assert!(
            !cycle_from(graph, module, module, &mut path, &mut seen),
            "import cycle: {} -> {module}",
            path.join(" -> ")
        );
    }
}

#[test]
fn no_import_cycle_among_src_files() {
    assert_acyclic(&file_edges());
}

#[test]
fn no_import_cycle_among_top_level_modules() {
    assert_acyclic(&top_level_edges());
}

#[test]
fn config_imports_nothing_above_it() {
    let graph = top_level_edges();
    assert_eq!(
        graph["config"],
        BTreeSet::new(),
        "config must stay plain data"
    );
}

/// Blanks out string and char literals and comments, keeping line breaks, so braces
/// can be counted.
fn strip_literals(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'r' if b.get(i + 1) == Some(&b'#') || (b.get(i + 1) == Some(&b'"')) => {
                // raw string r"..." or r#"..."#
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"')
                    || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
                {
                    out.push(b[i]);
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"'
                        && b[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|c| **c == b'#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    if b[j] == b'\n' {
                        out.push(b'\n');
                    }
                    j += 1;
                }
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    if i < b.len() && b[i] == b'\n' {
                        out.push(b'\n');
                    }
                    i += 1;
                }
                i += 1;
            }
            b'\'' => {
                // a char literal ('x', '\n', '\u{..}') or a lifetime ('a)
                if b.get(i + 1) == Some(&b'\\') {
                    let close = b[i + 2..]
                        .iter()
                        .position(|c| *c == b'\'')
                        .map_or(b.len(), |p| i + 2 + p);
                    i = close + 1;
                } else if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(name, first line, lines)` of every function body in `text`.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let code = strip_literals(text);
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(at) = line.find("fn ") else {
            continue;
        };
        if at > 0 && !line[..at].ends_with(' ') {
            continue;
        }
        let name: String = line[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body opens at the first `{` before any `;` (a declaration has none).
        let mut depth = 0usize;
        let mut opened = false;
        let mut end = None;
        'scan: for (m, l) in lines.iter().enumerate().skip(n) {
            let from = if m == n { at } else { 0 };
            for c in l[from..].chars() {
                match c {
                    ';' if !opened => break 'scan,
                    '{' => {
                        opened = true;
                        depth += 1;
                    }
                    '}' if opened => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(m);
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(end) = end {
            found.push((name, n + 1, end - n + 1));
        }
    }
    found
}

#[test]
fn files_and_functions_stay_short() {
    let src = src();
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut over = Vec::new();
    let mut allowed_used = BTreeSet::new();
    for path in all {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            if LONG.contains(&rel.as_str()) {
                allowed_used.insert(rel.clone());
            } else {
                over.push(format!("{rel}: {lines} lines"));
            }
        }
        for (name, line, len) in functions(&text) {
            if len > MAX_FN_LINES {
                let id = format!("{rel}::{name}");
                if LONG.contains(&id.as_str()) {
                    allowed_used.insert(id);
                } else {
                    over.push(format!("{rel}:{line} fn {name}: {len} lines"));
                }
            }
        }
    }
    assert!(
        over.is_empty(),
        "over {MAX_FILE_LINES} lines per file / {MAX_FN_LINES} per function (split it, or name it in LONG and in docs/ARCHITECTURE.md with why):\n{}",
        over.join("\n")
    );
    let stale: Vec<&&str> = LONG
        .iter()
        .filter(|l| !allowed_used.contains(**l))
        .collect();
    assert!(
        stale.is_empty(),
        "LONG names what is no longer long: {stale:?}"
    );
}

#[test]
fn the_function_counter_sees_bodies_not_strings() {
    let text = "fn a() {\n    let s = \"{ not a brace\";\n    let c = '{';\n}\nfn b(x: u8) -> u8;\nfn c() { 1 }\n";
    assert_eq!(
        functions(text),
        vec![("a".to_string(), 1, 4), ("c".to_string(), 6, 1)]
    );
}
