//! What a SIGHUP reload changes while running, and what needs a restart.
//!
//! `Proxy::reload` applies `[auth]` (users, rules, lockout), `[guards]`, `[[ttl]]`, the
//! TLS listener's settings (everything in `[tls]` but `listen`) and
//! `server.max_clients` and `[compat]`. Every other setting is read once at start and baked into the
//! running parts (sessions, cluster links, workers). A reload that changes one of those
//! used to be accepted in silence; [`needs_restart`] names each one, so the reload can
//! say that it keeps its running value.
//!
//! Settings are compared by their `Debug` text, field by field (`{:#?}` writes each
//! field of a struct on its own line, nested ones indented). No list of fields is kept
//! here, so a setting added later is covered as it is: it counts as needing a restart
//! until it is made reloadable and added to [`RELOADABLE`]. Only names are reported,
//! never values (some are passwords).

use crate::config::Config;

/// Sections and settings a reload applies (a section applies whole).
pub const RELOADABLE: &[&str] = &[
    "auth",
    "guards",
    "ttl",
    "tls.cert",
    "tls.key",
    "tls.client_auth",
    "tls.client_ca",
    "tls.cert_user",
    "tls.handshake_timeout_ms",
    "tls.max_handshakes_in_flight",
    "server.max_clients",
    "compat",
];

/// The settings of `new` that differ from `running` and that a reload does not apply
/// (`section.setting`, or `section` for a section added or removed), in file order.
pub fn needs_restart(running: &Config, new: &Config) -> Vec<String> {
    let old = fields(&format!("{running:#?}"));
    let new = fields(&format!("{new:#?}"));
    let mut changed = Vec::new();
    for ((section, a), (_, b)) in old.iter().zip(&new) {
        if a == b || RELOADABLE.contains(&section.as_str()) {
            continue;
        }
        match (inner(a), inner(b)) {
            (Some(a), Some(b)) => {
                let (a, b) = (fields(&a), fields(&b));
                for ((name, x), (_, y)) in a.iter().zip(&b) {
                    let key = format!("{section}.{name}");
                    if x != y && !RELOADABLE.contains(&key.as_str()) {
                        changed.push(key);
                    }
                }
            }
            _ => changed.push(section.clone()),
        }
    }
    changed
}

/// The fields of a struct's pretty `Debug` text: each field's name and its text.
fn fields(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines().skip(1) {
        let field = line
            .strip_prefix("    ")
            .filter(|rest| !rest.starts_with(' '))
            .and_then(|rest| rest.split_once(": "))
            .filter(|(name, _)| name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        match (field, out.last_mut()) {
            (Some((name, value)), _) => out.push((name.to_string(), value.to_string())),
            (None, Some((_, value))) => {
                value.push('\n');
                value.push_str(line);
            }
            (None, None) => {}
        }
    }
    out
}

/// A field's value as a struct's pretty `Debug` text of its own (un-indented, `Some(..)`
/// unwrapped), if it is a struct.
fn inner(value: &str) -> Option<String> {
    let mut text = value.trim_end_matches(',').to_string();
    let mut depth = 1;
    if let Some(rest) = text.strip_prefix("Some(\n") {
        text = rest
            .trim_end_matches(')')
            .trim_end()
            .trim_end_matches(',')
            .to_string();
        depth = 2;
    }
    let pad = "    ".repeat(depth);
    let mut lines = text.lines();
    let first = lines.next()?.trim_start();
    if !first.ends_with('{') {
        return None;
    }
    let mut out = first.to_string();
    for line in lines {
        out.push('\n');
        out.push_str(line.strip_prefix(&pad).unwrap_or(line));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsConfig;

    fn tls() -> TlsConfig {
        TlsConfig {
            listen: "127.0.0.1:6390".into(),
            cert: "a.pem".into(),
            key: "a.key".into(),
            client_auth: Default::default(),
            client_ca: None,
            cert_user: Default::default(),
            handshake_timeout_ms: 5000,
            max_handshakes_in_flight: 128,
        }
    }

    #[test]
    fn reloadable_settings_need_no_restart() {
        let running = Config {
            tls: Some(tls()),
            ..Config::default()
        };
        let mut new = running.clone();
        new.server.max_clients = 3;
        new.auth.max_failures = 1;
        new.ttl = vec![];
        let t = new.tls.as_mut().unwrap();
        t.cert = "b.pem".into();
        t.max_handshakes_in_flight = 1;
        assert_eq!(needs_restart(&running, &new), Vec::<String>::new());
    }

    #[test]
    fn other_settings_are_named() {
        let running = Config {
            tls: Some(tls()),
            ..Config::default()
        };
        let mut new = running.clone();
        new.server.idle_timeout_secs = 7;
        new.server.max_clients = 3;
        new.cluster.seeds.push("10.0.0.1:7000".into());
        new.cluster.password = Some("secret".into());
        new.log.level = "debug".into();
        new.tls.as_mut().unwrap().listen = "127.0.0.1:6391".into();
        new.replica_reads.poll_interval_ms += 1;
        let changed = needs_restart(&running, &new);
        assert_eq!(
            changed,
            [
                "server.idle_timeout_secs",
                "cluster.seeds",
                "cluster.password",
                "log.level",
                "tls.listen",
                "replica_reads.poll_interval_ms"
            ]
        );
        // A section added (or removed) is named whole.
        let mut plain = running.clone();
        plain.tls = None;
        assert_eq!(needs_restart(&plain, &running), ["tls"]);
    }
}
