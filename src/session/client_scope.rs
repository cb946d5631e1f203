//! Which of respgate's clients a caller of CLIENT LIST / KILL / UNBLOCK sees and acts
//! on: the connections of its own user, or every connection for an admin.
//!
//! **Why.** respgate's clients belong to different tenants that share one proxy. Redis
//! itself shows every connection to anyone allowed CLIENT LIST, which through a shared
//! proxy would let one service list another's addresses and names, or close an admin's
//! connection (`CLIENT KILL USER ops`). So a non-admin's view is cut down to its own
//! user's connections before any filter is applied: what lies outside it does not
//! exist for that caller, and the replies are exactly Redis's replies for "nothing
//! matches" (`-ERR No such client`, `:0`). Admins are `[guards] admins`.
//!
//! **Must not.** Be consulted per ordinary request: only the CLIENT commands read it.

use super::{ClientState, SessionContext};
use crate::clients::{ClientEntry, ClientRegistry};
use std::sync::Arc;

/// The connections a caller may see.
pub enum ClientScope {
    /// An admin: every connection.
    All,
    /// Everyone else: the connections of this user.
    User(Arc<str>),
}

impl ClientScope {
    /// The scope of `client`'s current user.
    pub fn of(ctx: &SessionContext, client: &ClientState) -> ClientScope {
        let user = client.auth.name();
        if ctx.guards.current().is_admin(user) {
            ClientScope::All
        } else {
            ClientScope::User(Arc::from(user))
        }
    }

    /// Whether `entry` is inside the scope.
    pub fn includes(&self, entry: &ClientEntry) -> bool {
        match self {
            ClientScope::All => true,
            ClientScope::User(user) => entry.user() == *user,
        }
    }

    /// The registry's clients inside the scope, by id.
    pub fn clients(&self, registry: &ClientRegistry) -> Vec<Arc<ClientEntry>> {
        let mut all = registry.all();
        all.retain(|e| self.includes(e));
        all
    }
}
