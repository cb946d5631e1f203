//! The shop's users of `config/production.example.toml`, each with the password
//! `<name>-pw`, and the guards' safe defaults with `admins = ["ops"]`: what the tenant
//! isolation tests attack.

use super::{test_config, RawConn};
use respgate::acl::hash_password;
use respgate::config::{AuthConfig, AuthMode, Config, GuardsConfig, UserConfig};
use std::net::SocketAddr;

/// Name and rules (without `on` and password) of each user.
pub const USERS: &[(&str, &str)] = &[
    (
        "auth-service",
        "~refresh:* ~rl:* ~session:* +@all -@dangerous",
    ),
    (
        "inventory-service",
        "~lock:product:* +@read +@write +@scripting +@connection +@transaction -@dangerous",
    ),
    ("order-service", "~saga:* +@all -@dangerous"),
    (
        "search-service",
        "~cache:search:* +@read +@connection +set +setex +expire +del",
    ),
    ("ops", "~* &* +@all"),
];

/// A user with password `<name>-pw` and `rules`.
pub fn user(name: &str, rules: &str) -> UserConfig {
    UserConfig {
        max_dedicated_connections: None,
        cross_slot: None,
        name: name.into(),
        rules: format!(
            "on #{} {rules}",
            hash_password(format!("{name}-pw").as_bytes())
        ),
    }
}

/// `[auth]` with the shop's users.
pub fn auth() -> AuthConfig {
    AuthConfig {
        mode: Some(AuthMode::Users),
        users: USERS.iter().map(|(n, r)| user(n, r)).collect(),
        ..AuthConfig::default()
    }
}

/// The shop's users, the safe defaults and `admins = ["ops"]`, in front of `seeds`.
pub fn config(seeds: &[SocketAddr]) -> Config {
    let mut c = test_config(seeds);
    c.auth = auth();
    c.guards = GuardsConfig {
        admins: vec!["ops".into()],
        ..GuardsConfig::file_default()
    };
    c
}

/// A connection to `addr` logged in as `user`.
pub async fn login(addr: SocketAddr, user: &str) -> RawConn {
    let mut c = RawConn::connect(addr).await;
    let pw = format!("{user}-pw");
    assert_eq!(cmd(&mut c, &["AUTH", user, &pw]).await, "+OK\r\n", "{user}");
    c
}

/// One command's reply, as text.
pub async fn cmd<A: AsRef<[u8]>>(c: &mut RawConn, args: &[A]) -> String {
    String::from_utf8_lossy(&c.command(args).await).into_owned()
}
