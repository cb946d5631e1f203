//! Layers point down only: no import cycle among the top-level modules of `src/`, and
//! `config` imports nothing of the crate. Read from the source as a newcomer would:
//! every `crate::<module>` path outside comments and the trailing `#[cfg(test)]` module
//! is an edge from the file's top-level module to `<module>`. A new cycle fails here
//! with the modules on it (the same check as `shared/tools/module-cycles.py src`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module -> the top-level modules it names.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in all {
        let rel = path.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = match text.find("#[cfg(test)]\nmod ") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let deps = graph.entry(module.clone()).or_default();
        for line in code.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    deps.insert(name);
                }
            }
        }
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

#[test]
fn no_import_cycle_among_top_level_modules() {
    let graph = edges();
    for module in graph.keys() {
        let mut path = vec![module.clone()];
        let mut seen = BTreeSet::new();
        assert!(
            !cycle_from(&graph, module, module, &mut path, &mut seen),
            "import cycle: {} -> {module}",
            path.join(" -> ")
        );
    }
}

#[test]
fn config_imports_nothing_above_it() {
    let graph = edges();
    assert_eq!(
        graph["config"],
        BTreeSet::new(),
        "config must stay plain data"
    );
}
