//! The configuration loader (`respgate::loader::parse`, which runs `Config::from_toml`
//! and every module's checks) on mutated TOML: never a panic, and an error names the
//! field it is about.
//!
//! The base is `config/production.example.toml`, which documents every option: each case
//! replaces the value of some of its `key = value` lines with a value of another type or
//! out of range, deletes lines, or splices random bytes in.

use super::config;
use proptest::prelude::*;
use std::path::Path;

const EXAMPLE: &str = include_str!("../../config/production.example.toml");

/// The example's `key = value` lines: (line number, key).
fn settings() -> Vec<(usize, String)> {
    EXAMPLE
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let (key, _) = l.split_once(" = ")?;
            (!key.starts_with('#') && !key.contains(' ')).then(|| (i, key.to_string()))
        })
        .collect()
}

fn wrong_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "-1",
            "0",
            "1",
            "99999999999999999999",
            "-9223372036854775808",
            "1.5",
            "nan",
            "true",
            "\"\"",
            "\"x\"",
            "\"0.0.0.0:99999\"",
            "[]",
            "[1, \"a\"]",
            "{}",
            "{ a = 1 }",
            "\"\\u0000\"",
            "\"10/0s\"",
            "\"-5/min\"",
            "\"*\"",
            "\"on >\"",
            "1979-05-27T07:32:00Z",
        ])
        .prop_map(String::from),
        any::<i64>().prop_map(|n| n.to_string()),
        // Valid TOML strings (a quote inside would be a syntax error, named by line).
        "\"[ !#-\\[\\]-~]{0,12}\"",
    ]
}

/// The example with `changes` applied to its settings (index into them, new value).
fn mutated(changes: &[(usize, String)], deletions: &[usize]) -> (String, Vec<String>) {
    let settings = settings();
    let mut lines: Vec<String> = EXAMPLE.lines().map(String::from).collect();
    let mut keys = Vec::new();
    for (which, value) in changes {
        let (line, key) = &settings[which % settings.len()];
        lines[*line] = format!("{key} = {value}");
        keys.push(key.clone());
    }
    for d in deletions {
        let (line, key) = &settings[d % settings.len()];
        lines[*line] = String::new();
        keys.push(key.clone());
    }
    (lines.join("\n"), keys)
}

/// The loader on `text`: never a panic.
fn load(text: &str) -> Result<respgate::config::Config, String> {
    // The example reads the upstream password from this variable.
    std::env::set_var("RESPGATE_UPSTREAM_PASSWORD", "fuzz");
    respgate::loader::parse(text, Path::new("fuzz.toml")).map_err(|e| e.to_string())
}

#[test]
fn the_example_itself_loads() {
    load(EXAMPLE).unwrap();
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn a_wrong_value_is_refused_by_name(which in any::<usize>(), value in wrong_value()) {
        let (text, keys) = mutated(&[(which, value.clone())], &[]);
        if let Err(e) = load(&text) {
            prop_assert!(
                e.contains(keys[0].as_str()),
                "setting {} = {} refused without naming it: {}", keys[0], value, e
            );
        }
    }

    #[test]
    fn mutated_files_never_panic(
        changes in prop::collection::vec((any::<usize>(), wrong_value()), 0..4),
        deletions in prop::collection::vec(any::<usize>(), 0..4),
        splice in prop::collection::vec((any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)), 0..3),
    ) {
        let (text, _) = mutated(&changes, &deletions);
        let mut bytes = text.into_bytes();
        for (at, junk) in splice {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, junk);
        }
        if let Ok(text) = String::from_utf8(bytes) {
            if let Err(e) = load(&text) {
                prop_assert!(e.starts_with("fuzz.toml: "), "{}", e);
            }
        }
    }
}
