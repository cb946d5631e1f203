//! Scripts and functions under their caller's rules.
//!
//! **Why.** respgate checks what it can see: a command, its keys, its channels. A script
//! (EVAL, EVALSHA, FCALL and their `_RO` forms) runs commands respgate never sees, so
//! its rules must be enforced by the node that runs it. With `isolation = "acl"` (the
//! default) every respgate user is mirrored onto every node as a Redis ACL user
//! ([`Mirror`]) carrying the user's key, channel and command rules, minus what the
//! guards deny that user and minus the key-listing commands a restricted user only gets
//! filtered through respgate; scripts run as that user, on links that authenticated as
//! it ([`crate::backend::Node::send_as`]). The mirror's password is derived from
//! respgate's own node password, so it is a secret only respgate knows, and every
//! respgate instance in front of the cluster derives the same one.
//!
//! **Kept in step.** Each identity link sends the user's `ACL SETUSER` on connecting
//! (a node that joins or restarts has the user before it serves that user's scripts);
//! start and SIGHUP push every mirror to every node and delete the mirrors of removed
//! users ([`sync`]). A refused switch of identity fails the call: it never runs with
//! respgate's own rights.
//!
//! **Allowlist mode.** Where the nodes do not let respgate manage users (a managed
//! service), `isolation = "allowlist"`: restricted users may run only the scripts whose
//! SHA1 is listed, and no functions; scripts run as respgate's node user.
//!
//! **Must not.** Log or reply with a mirror's secret.

use crate::acl::{hash_password, User};
use crate::backend::NodeIdentity;
use crate::cluster::Cluster;
use crate::commands::CommandTable;
use crate::config::{ScriptIsolation, ScriptsConfig};
use crate::guards::GuardSet;
use crate::protocol::refusal::Refusal;
use crate::protocol::Args;
use arc_swap::ArcSwap;
use bytes::Bytes;

use std::collections::HashMap;
use std::sync::Arc;

/// Node user names of mirrors start with this.
pub const MIRROR_PREFIX: &str = "respgate-mirror:";

/// One respgate user as a node user.
#[derive(Debug)]
pub struct Mirror {
    /// What the links run as (name, secret, `ACL SETUSER` to send first).
    pub identity: Arc<NodeIdentity>,
    /// The `ACL SETUSER` arguments (for [`sync`]).
    pub setuser: Vec<String>,
}

/// The node user name for respgate user `user`.
pub fn mirror_name(user: &str) -> String {
    format!("{MIRROR_PREFIX}{user}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Mirror {
    /// The mirror of `user` under `guards` for the cluster's command `table`, its secret
    /// derived from `upstream_password`.
    pub fn new(
        user: &User,
        guards: &GuardSet,
        table: &CommandTable,
        upstream_password: Option<&str>,
    ) -> Mirror {
        let name = mirror_name(&user.name);
        let secret = hash_password(
            format!(
                "respgate-mirror\0{}\0{}",
                upstream_password.unwrap_or(""),
                user.name
            )
            .as_bytes(),
        );
        let acl = &user.acl;
        let mut setuser: Vec<String> = vec!["ACL".into(), "SETUSER".into(), name.clone()];
        setuser.push("reset".into());
        setuser.push("on".into());
        setuser.push(format!("#{}", hash_password(secret.as_bytes())));
        setuser.extend(acl.keys_description().split(' ').map(String::from));
        setuser.extend(acl.channels_description().split(' ').map(String::from));
        setuser.extend(acl.commands_description().split(' ').map(String::from));
        setuser.extend(guards.script_denials(&user.name, table));
        if !acl.allkeys {
            // respgate filters these for a restricted user; a node would list every key
            // (CLUSTER GETKEYSINSLOT is `@slow` only: `-@dangerous` keeps it).
            setuser.extend(["-keys", "-scan", "-randomkey", "-cluster"].map(String::from));
        }
        let setup = crate::protocol::reply::command(setuser.iter().map(String::as_str));
        Mirror {
            identity: Arc::new(NodeIdentity::new(&name, secret, Some(setup))),
            setuser,
        }
    }
}

/// What a session needs to decide how a script call runs.
pub struct Scripts {
    isolation: ScriptIsolation,
    allowed: Vec<String>,
    /// The command table the mirrors were built for (its address; 0: none yet) and the
    /// mirrors by user name. Rebuilt on reload, and on first use with a new table.
    mirrors: ArcSwap<(usize, HashMap<String, Arc<Mirror>>)>,
    /// Serialises rebuilds.
    building: std::sync::Mutex<()>,
    security: Arc<crate::acl::Security>,
    guards: Arc<crate::guards::Guards>,
    upstream_password: Option<String>,
}

/// How one script call runs.
pub enum Decision {
    /// On the node as this identity.
    As(Arc<NodeIdentity>),
    /// As respgate's own node user (allowlist mode: an unrestricted or allow-listed call).
    AsRespgate,
    /// Refused with this error.
    Refuse(Bytes),
}

impl Scripts {
    pub fn new(
        cfg: &ScriptsConfig,
        security: Arc<crate::acl::Security>,
        guards: Arc<crate::guards::Guards>,
        upstream_password: Option<String>,
    ) -> Scripts {
        Scripts {
            isolation: cfg.isolation,
            allowed: cfg
                .allowed_sha1
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            mirrors: Default::default(),
            building: Default::default(),
            security,
            guards,
            upstream_password,
        }
    }

    pub fn isolation(&self) -> ScriptIsolation {
        self.isolation
    }

    /// Rebuilds the mirrors from the users and guards in force, for the cluster's command
    /// `table` (a node refuses rules naming commands it does not have); returns the
    /// node user names of users no longer configured (a reload removed them).
    pub fn rebuild(&self, table: &Arc<CommandTable>) -> Vec<String> {
        if self.isolation != ScriptIsolation::Acl {
            return Vec::new();
        }
        let _one = self.building.lock().unwrap_or_else(|p| p.into_inner());
        self.rebuild_locked(table)
    }

    /// [`Scripts::rebuild`] with `building` held.
    fn rebuild_locked(&self, table: &Arc<CommandTable>) -> Vec<String> {
        let users = self.security.users();
        let guards = self.guards.current();
        let old = self.mirrors.load_full();
        // A user whose rules did not change keeps its identity (and its links).
        let next: HashMap<String, Arc<Mirror>> = users
            .sorted()
            .into_iter()
            .map(|u| {
                let m = Mirror::new(u, &guards, table, self.upstream_password.as_deref());
                let m = match old.1.get(&u.name) {
                    Some(kept) if kept.setuser == m.setuser => kept.clone(),
                    _ => Arc::new(m),
                };
                (u.name.clone(), m)
            })
            .collect();
        // The others are retired: their links close and never reconnect with the old
        // rules.
        for (name, m) in &old.1 {
            if next.get(name).is_none_or(|n| !Arc::ptr_eq(n, m)) {
                m.identity.retire();
            }
        }
        self.mirrors
            .store(Arc::new((Arc::as_ptr(table) as usize, next)));
        old.1
            .keys()
            .filter(|u| users.get(u).is_none())
            .map(|u| mirror_name(u))
            .collect()
    }

    /// Every mirror in force.
    pub fn mirrors(&self) -> Vec<Arc<Mirror>> {
        self.mirrors.load().1.values().cloned().collect()
    }

    /// The identity `user`'s scripts run as (acl mode), also used for the user's own
    /// connections (WATCH, blocking commands), where a queued script may run. Built on
    /// first use for `table`.
    pub fn identity(&self, user: &str, table: &Arc<CommandTable>) -> Option<Arc<NodeIdentity>> {
        if self.isolation != ScriptIsolation::Acl {
            return None;
        }
        let built_for = |s: &Self| s.mirrors.load().0 == Arc::as_ptr(table) as usize;
        if !built_for(self) {
            // Checked again under the lock: two sessions meeting a new table at once
            // build once (a second build would make new identities, and new links).
            let _one = self.building.lock().unwrap_or_else(|p| p.into_inner());
            if !built_for(self) {
                self.rebuild_locked(table);
            }
        }
        self.mirrors.load().1.get(user).map(|m| m.identity.clone())
    }

    /// How `user`'s script call `args` (EVAL, EVALSHA, FCALL, ...) runs.
    pub fn decide(
        &self,
        user: Option<&Arc<User>>,
        name: &str,
        args: Args<'_>,
        table: &Arc<CommandTable>,
    ) -> Decision {
        let Some(user) = user else {
            return Decision::Refuse(Refusal::NoAuth.reply());
        };
        match self.isolation {
            ScriptIsolation::Acl => match self.identity(&user.name, table) {
                Some(id) => Decision::As(id),
                None => Decision::Refuse(Refusal::NoScriptIdentity(user.name.clone()).reply()),
            },
            ScriptIsolation::Allowlist if user.unrestricted => Decision::AsRespgate,
            ScriptIsolation::Allowlist => {
                let sha = match name {
                    "eval" | "eval_ro" => {
                        use sha1::Digest as _;
                        Some(hex(&sha1::Sha1::digest(args.get(1))))
                    }
                    "evalsha" | "evalsha_ro" => {
                        Some(String::from_utf8_lossy(args.get(1)).to_ascii_lowercase())
                    }
                    _ => None,
                };
                match sha {
                    Some(sha) if self.allowed.contains(&sha) => Decision::AsRespgate,
                    Some(sha) => Decision::Refuse(Refusal::ScriptNotAllowed(sha).reply()),
                    None => Decision::Refuse(Refusal::FunctionsNotAllowed.reply()),
                }
            }
        }
    }
}

/// Pushes every mirror to every node of the topology and deletes `removed` node users
/// (mirrors of users a reload removed; Redis then closes their connections). Other
/// `respgate-mirror:` users are left alone: another respgate in front of the cluster
/// may run another configuration (a rolling change). Failures are logged: the identity
/// links set their user up again on connecting, and a node that refuses makes the
/// user's scripts fail, never run as respgate.
pub async fn sync(cluster: Arc<Cluster>, scripts: Arc<Scripts>, removed: Vec<String>) {
    let Some(topo) = cluster.topology().as_ref().cloned() else {
        return;
    };
    let mirrors = scripts.mirrors();
    let opts = cluster.link_options().clone();
    let nodes: Vec<String> = topo
        .shards()
        .iter()
        .flat_map(|s| std::iter::once(&s.master).chain(s.replicas.iter()))
        .map(|n| n.addr().to_string())
        .collect();
    let mut failures = 0;
    for addr in &nodes {
        for m in &mirrors {
            let args: Vec<&str> = m.setuser.iter().map(String::as_str).collect();
            if let Err(e) = crate::cluster::control::query(addr, &args, &opts).await {
                failures += 1;
                // A node's error names the command, whose arguments carry the secret's
                // hash: only its reply is logged.
                let e = match e {
                    crate::cluster::control::ControlError::NodeError { reply, .. } => reply,
                    other => other.to_string(),
                };
                tracing::warn!(node = %addr, user = %m.identity.user, error = %e, "could not set up a script identity on a node: that user's scripts fail there until it can");
            }
        }
        for name in &removed {
            let _ = crate::cluster::control::query(addr, &["ACL", "DELUSER", name], &opts).await;
        }
    }
    tracing::info!(
        nodes = nodes.len(),
        users = mirrors.len(),
        failures,
        "script identities pushed to the nodes"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Acl;

    fn table() -> CommandTable {
        CommandTable::from_command_reply(include_bytes!("../../tests/fixtures/command-7.0.resp"))
            .unwrap()
    }

    fn guards() -> GuardSet {
        let cfg = crate::config::GuardsConfig {
            admins: vec!["ops".into()],
            ..crate::config::GuardsConfig::file_default()
        };
        GuardSet::from_config(&cfg, &[]).unwrap()
    }

    #[test]
    fn a_mirror_carries_the_users_rules_and_the_guards_denials() {
        let user = User::new(
            "inventory-service",
            Acl::parse("on nopass ~lock:product:* +@read +@write +@scripting -@dangerous").unwrap(),
        );
        let m = Mirror::new(&user, &guards(), &table(), Some("pw"));
        let rules = m.setuser.join(" ");
        assert!(rules.starts_with("ACL SETUSER respgate-mirror:inventory-service reset on #"));
        assert!(
            rules.contains(" ~lock:product:* resetchannels +@read +@write +@scripting -@dangerous")
        );
        assert!(rules.contains(" -flushall"), "{rules}");
        assert!(rules.contains(" -config|set"), "{rules}");
        assert!(
            rules.ends_with("-keys -scan -randomkey -cluster"),
            "{rules}"
        );
        assert!(
            !rules.contains(&m.identity.secret),
            "the secret is sent hashed"
        );
        // Every respgate in front of the cluster derives the same secret; another
        // node password gives another one.
        assert_eq!(
            m.identity.secret,
            Mirror::new(&user, &guards(), &table(), Some("pw"))
                .identity
                .secret
        );
        assert_ne!(
            m.identity.secret,
            Mirror::new(&user, &guards(), &table(), Some("px"))
                .identity
                .secret
        );
    }

    #[test]
    fn admins_scripts_may_not_call_what_they_may_only_run_at_a_rate() {
        let ops = User::new("ops", Acl::parse("on nopass ~* &* +@all").unwrap());
        let rules = Mirror::new(&ops, &guards(), &table(), None)
            .setuser
            .join(" ");
        assert!(rules.contains(" -flushall"), "{rules}");
        assert!(!rules.contains("-randomkey"), "{rules}");
        // Redis 7.0 has no CLIENT NO-TOUCH: a rule naming it would make the node refuse
        // the whole user.
        assert!(!rules.contains("no-touch"), "{rules}");
    }

    #[test]
    fn a_reload_keeps_unchanged_identities_and_retires_changed_ones() {
        let auth = |rules: &str| crate::config::AuthConfig {
            mode: Some(crate::config::AuthMode::Users),
            users: vec![
                crate::config::UserConfig {
                    max_dedicated_connections: None,
                    cross_slot: None,
                    name: "a".into(),
                    rules: "on nopass ~a:* +@all".into(),
                },
                crate::config::UserConfig {
                    max_dedicated_connections: None,
                    cross_slot: None,
                    name: "b".into(),
                    rules: rules.into(),
                },
            ],
            ..Default::default()
        };
        let security = Arc::new(crate::acl::Security::new(&auth("on nopass ~b:* +@all")).unwrap());
        let guards = Arc::new(
            crate::guards::Guards::new(&crate::config::GuardsConfig::file_default(), &[]).unwrap(),
        );
        let scripts = Scripts::new(&ScriptsConfig::default(), security.clone(), guards, None);
        let table = Arc::new(table());
        let (a, b) = (
            scripts.identity("a", &table).unwrap(),
            scripts.identity("b", &table).unwrap(),
        );
        security
            .replace(&auth("on nopass ~b:* ~c:* +@all"))
            .unwrap();
        assert!(scripts.rebuild(&table).is_empty());
        assert!(Arc::ptr_eq(&a, &scripts.identity("a", &table).unwrap()));
        assert!(!a.is_retired());
        assert!(b.is_retired(), "b's old rules must never be sent again");
        assert!(!Arc::ptr_eq(&b, &scripts.identity("b", &table).unwrap()));
    }
}
