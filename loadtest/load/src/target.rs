//! What to load: `NAME=HOST:PORT` (one address, e.g. respgate) or
//! `NAME=cluster:HOST:PORT` (a Redis Cluster reached directly, from a seed node).
//!
//! Loopback only unless `--allow-remote`: a load tool pointed at the wrong address is a
//! denial of service, so the default refuses anything but 127.0.0.0/8 and ::1, including
//! node addresses a cluster announces.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Single,
    Cluster,
}

#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub name: String,
    pub kind: Kind,
    pub addr: SocketAddr,
}

pub fn parse(spec: &str, allow_remote: bool) -> Result<TargetSpec, String> {
    let (name, rest) = spec.split_once('=').ok_or_else(|| {
        format!("--target {spec:?}: expected NAME=HOST:PORT or NAME=cluster:HOST:PORT")
    })?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "--target {spec:?}: the name must be letters, digits, - or _"
        ));
    }
    let (kind, hostport) = match rest.strip_prefix("cluster:") {
        Some(hp) => (Kind::Cluster, hp),
        None => (Kind::Single, rest),
    };
    let addr = resolve(hostport)?;
    check_address(addr, allow_remote)?;
    Ok(TargetSpec {
        name: name.to_string(),
        kind,
        addr,
    })
}

pub fn resolve(hostport: &str) -> Result<SocketAddr, String> {
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("{hostport:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport:?}: no address"))
}

/// Refuses a non-loopback address unless remote targets are allowed.
pub fn check_address(addr: SocketAddr, allow_remote: bool) -> Result<(), String> {
    if allow_remote || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{addr} is not a loopback address: refused (pass --allow-remote to load a remote host you own)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_and_refuses_remote() {
        let t = parse("respgate=127.0.0.1:6390", false).unwrap();
        assert_eq!(
            (t.name.as_str(), &t.kind, t.addr.port()),
            ("respgate", &Kind::Single, 6390)
        );
        let t = parse("direct=cluster:127.0.0.1:7000", false).unwrap();
        assert_eq!(t.kind, Kind::Cluster);
        assert!(parse("x=[::1]:7000", false).is_ok());
        let e = parse("x=10.1.2.3:6379", false).unwrap_err();
        assert!(e.contains("--allow-remote"), "{e}");
        assert!(parse("x=10.1.2.3:6379", true).is_ok());
        assert!(parse("127.0.0.1:6379", false).is_err());
        assert!(parse("a b=127.0.0.1:6379", false).is_err());
    }
}
