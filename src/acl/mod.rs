//! Who a client is and what it may touch: users with hashed passwords, Redis-syntax ACL
//! rules, brute-force lockout, and the swappable set of users a SIGHUP reload replaces.
//!
//! **Job.** [`Security`] holds the current [`Users`] behind an `ArcSwap` plus a
//! generation counter. A session authenticates through [`Security::authenticate`] and
//! then keeps an `Arc<User>`; before each command it compares one atomic (the
//! generation) and re-reads its user only when a reload happened, so permission changes
//! apply from a connection's next command without any lock on the request path.
//!
//! **Checks.** [`User::commands`] resolves the user's command rules once per command
//! table into a vector indexed by [`CommandInfo::id`](crate::commands::CommandInfo); key
//! checks walk the user's compiled patterns ([`glob::Pattern`]: mostly a `starts_with`).
//! The session's `auth` module applies them to each request with Redis's exact errors.
//!
//! **Must not.** Store or log a password: only SHA-256 hashes are kept, comparisons are
//! constant time, audit lines name user, address, command and rule, never a credential.

pub(crate) mod glob;
mod lockout;
pub(crate) mod log;
pub(crate) mod rules;

use crate::commands::CommandTable;
use crate::config::{AuthConfig, AuthMode};
use arc_swap::{ArcSwap, ArcSwapOption};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use lockout::{Locked, Lockout};
pub use rules::{Acl, CommandRule, CompiledCommands, READ, WRITE};

/// SHA-256 of `password`, as lowercase hex (what `#<hash>` rules hold).
pub fn hash_password(password: &[u8]) -> String {
    Sha256::digest(password)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One user.
#[derive(Debug)]
pub struct User {
    pub name: String,
    pub acl: Acl,
    /// No restriction at all (`on nopass ~* &* +@all`-like): checks are skipped.
    pub unrestricted: bool,
    /// Connections of its own its clients may hold (`max_dedicated_connections` in
    /// `[[auth.users]]`); `None`: `server.max_dedicated_per_user`.
    pub max_dedicated: Option<usize>,
    /// `cross_slot` in `[[auth.users]]`: `Some(true)` computes cross-slot commands,
    /// `Some(false)` refuses them, `None` follows `compat.cross_slot`.
    pub cross_slot: Option<bool>,
    /// The command rules resolved for the command table at that address.
    compiled: ArcSwapOption<(usize, CompiledCommands)>,
}

impl User {
    pub fn new(name: &str, acl: Acl) -> User {
        let unrestricted =
            acl.allkeys && acl.allchannels && acl.commands.last() == Some(&CommandRule::All(true));
        User {
            name: name.to_string(),
            acl,
            unrestricted,
            max_dedicated: None,
            cross_slot: None,
            compiled: ArcSwapOption::empty(),
        }
    }

    /// The user respgate runs everyone as when `auth.mode = "none"`.
    pub fn open_default() -> User {
        User::new(
            "default",
            Acl::parse("on nopass ~* &* +@all").expect("static rules"),
        )
    }

    /// Whether `password` is one of this user's, compared in constant time against every
    /// stored hash (so the time taken does not tell which, or whether any, matched).
    pub fn check_password(&self, password: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        if self.acl.nopass {
            return true;
        }
        let hash: [u8; 32] = Sha256::digest(password).into();
        let mut ok = subtle::Choice::from(0);
        for stored in &self.acl.passwords {
            ok |= stored.ct_eq(&hash);
        }
        ok.into()
    }

    /// The command rules resolved for `table` (computed once per table and user).
    pub fn commands(&self, table: &Arc<CommandTable>) -> Arc<(usize, CompiledCommands)> {
        let id = Arc::as_ptr(table) as usize;
        if let Some(c) = self.compiled.load_full() {
            if c.0 == id {
                return c;
            }
        }
        let c = Arc::new((id, self.acl.compile(table)));
        self.compiled.store(Some(c.clone()));
        c
    }
}

/// Why an authentication failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown user, wrong password or disabled user (one answer for all three).
    WrongPass,
    /// Refused without looking at the password: this user failed too often from this
    /// address, or the address failed too often (on any user names).
    LockedOut(Locked),
}

/// The configured users (one immutable snapshot; a reload builds a new one).
#[derive(Debug)]
pub struct Users {
    /// False for `auth.mode = "none"`: everyone is the unrestricted `default` user.
    pub required: bool,
    users: HashMap<String, Arc<User>>,
    /// `auth.login_timeout_secs`, when on: how long a connection may stay
    /// unauthenticated.
    pub login_timeout: Option<Duration>,
}

impl Users {
    pub fn from_config(cfg: &AuthConfig) -> Result<Users, String> {
        let required = cfg.mode == Some(AuthMode::Users);
        let mut users = HashMap::new();
        if required {
            for (i, u) in cfg.users.iter().enumerate() {
                let acl =
                    Acl::parse(&u.rules).map_err(|e| format!("auth.users[{i}].rules: {e}"))?;
                let mut user = User::new(&u.name, acl);
                user.max_dedicated = u.max_dedicated_connections;
                user.cross_slot = u
                    .cross_slot
                    .map(|m| m == crate::config::CrossSlotMode::Compute);
                if users.insert(u.name.clone(), Arc::new(user)).is_some() {
                    return Err(format!(
                        "auth.users[{i}].name: user {:?} is defined twice",
                        u.name
                    ));
                }
            }
        } else {
            users.insert("default".to_string(), Arc::new(User::open_default()));
        }
        let login_timeout = (required && cfg.login_timeout_secs > 0)
            .then(|| Duration::from_secs(cfg.login_timeout_secs));
        Ok(Users {
            required,
            users,
            login_timeout,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// Users sorted by name (ACL LIST / ACL USERS).
    pub fn sorted(&self) -> Vec<&Arc<User>> {
        let mut v: Vec<_> = self.users.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Who a new connection is before it authenticates: `default` when that user is
    /// enabled and needs no password (as in Redis), else nobody.
    pub fn initial(&self) -> Option<Arc<User>> {
        self.users
            .get("default")
            .filter(|u| u.acl.enabled && u.acl.nopass)
            .cloned()
    }
}

/// The users in force, swapped whole on reload, and the lockout counters.
pub struct Security {
    users: ArcSwap<Users>,
    generation: AtomicU64,
    pub lockout: Lockout,
    /// ACL LOG.
    pub log: log::AclLog,
}

impl Security {
    pub fn new(cfg: &AuthConfig) -> Result<Security, String> {
        Ok(Security {
            users: ArcSwap::from_pointee(Users::from_config(cfg)?),
            generation: AtomicU64::new(0),
            lockout: Lockout::new(cfg),
            log: Default::default(),
        })
    }

    /// Bumped by every reload; sessions compare it before each command.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn users(&self) -> Arc<Users> {
        self.users.load_full()
    }

    /// Replaces the users (SIGHUP). Existing connections pick the change up on their
    /// next command.
    pub fn replace(&self, cfg: &AuthConfig) -> Result<(), String> {
        let users = Users::from_config(cfg)?;
        self.users.store(Arc::new(users));
        self.lockout.configure(cfg);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Checks `user`'s `password` for a client at `addr`, counting failures per user
    /// and address, and per address (see the lockout module).
    pub fn authenticate(
        &self,
        addr: IpAddr,
        user: &[u8],
        password: &[u8],
    ) -> Result<Arc<User>, AuthError> {
        let users = self.users.load();
        let named = std::str::from_utf8(user).ok().and_then(|u| users.get(u));
        let attempt = self
            .lockout
            .admit(addr, user)
            .map_err(AuthError::LockedOut)?;
        let found = named.filter(|u| u.acl.enabled);
        // The hash is computed even for an unknown user, so timing does not reveal
        // which user names exist.
        let ok = match found {
            Some(u) => u.check_password(password),
            None => {
                let _ = Sha256::digest(password);
                false
            }
        };
        match (found, ok) {
            (Some(u), true) => {
                self.lockout.succeeded(attempt);
                Ok(u.clone())
            }
            _ => {
                self.lockout.failed(addr, attempt);
                Err(AuthError::WrongPass)
            }
        }
    }
}

#[cfg(test)]
mod tests;
