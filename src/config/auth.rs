//! `[auth]`: how clients authenticate, the brute-force lockout's bounds, and the users
//! with their rules. Checked here: the mode against the user list, user names, the
//! lockout's bounds. The rules themselves are the `acl` module's check (run by the
//! loader).

use super::{invalid, Invalid};
use serde::Deserialize;

/// Client authentication. A file must choose: `mode = "users"` with `[[auth.users]]`, or
/// `mode = "none"` to let every client in as an unrestricted `default` user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Required in a file (no silent open proxy). A `Config` built in code without it
    /// runs as `none`.
    pub mode: Option<AuthMode>,
    /// Failed authentications of one user from one address within
    /// `failure_window_secs` that lock that user out from that address (0: never).
    /// Other users behind the same address are not affected.
    pub max_failures: u32,
    pub failure_window_secs: u64,
    /// How long a locked-out user (or address) is refused. It and the window are at
    /// most [`MAX_LOCKOUT_SECS`].
    pub lockout_secs: u64,
    /// Failed authentications from one address (IPv6: one /64) within
    /// `failure_window_secs`, on any user names, existing or not, that lock the whole
    /// address out (0: never): stops one address spraying guesses over many names.
    /// Known names count too, so the lock does not tell whether a name exists.
    pub max_unknown_user_failures: u32,
    /// (user, address) and address entries the lockout tracks at most (memory bound);
    /// when full, expired entries go first, then the oldest.
    pub lockout_max_entries: usize,
    /// A connection that has not authenticated this long after connecting is closed
    /// (0: never). Only where a login is needed (`mode = "users"` without a `nopass`
    /// default user). respgate's own: Redis has none, but without it silent connections
    /// would hold `server.max_clients` places for good.
    pub login_timeout_secs: u64,
    pub users: Vec<UserConfig>,
}

/// The longest `auth.lockout_secs` / `auth.failure_window_secs` (one day).
pub const MAX_LOCKOUT_SECS: u64 = 86_400;

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: None,
            max_failures: 20,
            failure_window_secs: 60,
            lockout_secs: 300,
            max_unknown_user_failures: 100,
            lockout_max_entries: 100_000,
            login_timeout_secs: 10,
            users: Vec::new(),
        }
    }
}

/// `none` or `users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    None,
    Users,
}

/// One user: a name and its rules in Redis ACL syntax (`on #<sha256> ~prefix:* +@read`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub rules: String,
    /// Connections of its own (blocking commands, WATCH) this user's clients may hold
    /// together; absent: `server.max_dedicated_per_user`.
    #[serde(default)]
    pub max_dedicated_connections: Option<usize>,
    /// This user's `compat.cross_slot` (absent: the global setting).
    #[serde(default)]
    pub cross_slot: Option<super::CrossSlotMode>,
}

impl AuthConfig {
    /// A chosen mode that agrees with the user list, valid user names, and lockout
    /// bounds that can work.
    pub(super) fn check(&self) -> Result<(), Invalid> {
        let a = self;
        match a.mode {
            None => {
                return Err(invalid(
                    "auth.mode",
                    "choose mode = \"users\" (with [[auth.users]]) or mode = \"none\" to run without authentication",
                ))
            }
            Some(AuthMode::None) if !a.users.is_empty() => {
                return Err(invalid(
                    "auth.users",
                    "users are listed but auth.mode is \"none\"; set mode = \"users\"",
                ))
            }
            Some(AuthMode::Users) if a.users.is_empty() => {
                return Err(invalid(
                    "auth.users",
                    "mode = \"users\" needs at least one [[auth.users]]",
                ))
            }
            _ => {}
        }
        for (i, u) in a.users.iter().enumerate() {
            if u.name.is_empty() || !u.name.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
                return Err(invalid(
                    &format!("auth.users[{i}].name"),
                    format!(
                        "{:?} is not a valid user name (no spaces or control characters)",
                        u.name
                    ),
                ));
            }
        }
        let lockout = a.max_failures > 0 || a.max_unknown_user_failures > 0;
        if lockout && (a.failure_window_secs == 0 || a.lockout_secs == 0) {
            return Err(invalid(
                "auth.lockout_secs",
                "failure_window_secs and lockout_secs must be above 0 when max_failures or \
                 max_unknown_user_failures is set",
            ));
        }
        for (name, secs) in [
            ("auth.lockout_secs", a.lockout_secs),
            ("auth.failure_window_secs", a.failure_window_secs),
        ] {
            if secs > MAX_LOCKOUT_SECS {
                return Err(invalid(
                    name,
                    format!("{secs} is above the largest allowed, {MAX_LOCKOUT_SECS} (one day)"),
                ));
            }
        }
        if lockout && a.lockout_max_entries == 0 {
            return Err(invalid(
                "auth.lockout_max_entries",
                "must be at least 1 while a lockout is on",
            ));
        }
        Ok(())
    }
}
