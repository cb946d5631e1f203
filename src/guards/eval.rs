//! Per request: the session's cached view of the guards ([`GuardCache`]), the rules
//! naming a command evaluated in order ([`check`], first match wins), and a limit
//! rule's token paid once nothing else refuses the request ([`Charge`]).

use super::rate::retry_text;
use super::set::{ById, GuardSet};
use super::{shared, Guards};
use crate::commands::{CommandInfo, CommandTable};
use crate::config::GuardAction;
use crate::config::GuardRewrite;
use crate::protocol::refusal::{GuardLimit, Refusal};
use crate::protocol::Args;
use bytes::Bytes;
use std::net::IpAddr;
use std::sync::Arc;

/// What the guards decided about one request that a rule matched.
pub enum Verdict {
    /// Refused: this error.
    Refuse(Bytes),
    /// Serve this KEYS by SCAN on every master, at most `max` keys (once `charge`, if
    /// a limit rule matched, is paid).
    SafeKeys { max: usize, charge: Option<Charge> },
    /// A limit rule matched: the request runs if its token can be paid.
    Charge(Charge),
    /// Count it against a budget kept in the cluster first.
    Shared(Arc<shared::SharedBudget>, GuardLimit),
}

/// A session's view of the guards: the set and its compiled vector, as of `generation`
/// and the table at `table`.
#[derive(Default)]
pub struct GuardCache {
    generation: u64,
    table: usize,
    set: Option<Arc<GuardSet>>,
    by_id: Option<Arc<ById>>,
    /// The next request already passed its shared budget: do not count it again.
    pub bypass_once: bool,
}

impl GuardCache {
    #[inline]
    fn refresh(&mut self, guards: &Guards, table: &Arc<CommandTable>) {
        let generation = guards.generation();
        let table_id = Arc::as_ptr(table) as usize;
        if self.set.is_none() || generation != self.generation || table_id != self.table {
            let set = guards.current();
            self.by_id = Some(set.by_id(table));
            self.set = Some(set);
            self.generation = generation;
            self.table = table_id;
        }
    }

    /// The set in force (for the TTL policy).
    pub fn set(&mut self, guards: &Guards, table: &Arc<CommandTable>) -> &Arc<GuardSet> {
        self.refresh(guards, table);
        self.set.as_ref().expect("refreshed")
    }
}

/// Evaluates the rules naming `info` for this request; `None` lets it through as it is.
#[inline]
pub fn check(
    guards: &Guards,
    cache: &mut GuardCache,
    table: &Arc<CommandTable>,
    info: &CommandInfo,
    args: Args<'_>,
    user: Option<&String>,
    addr: IpAddr,
) -> Option<Verdict> {
    cache.refresh(guards, table);
    if cache.by_id.as_ref()?.0.get(info.id as usize)?.is_empty() {
        return None;
    }
    evaluate(cache, info, args, user, addr)
}

#[cold]
fn evaluate(
    cache: &mut GuardCache,
    info: &CommandInfo,
    args: Args<'_>,
    user: Option<&String>,
    addr: IpAddr,
) -> Option<Verdict> {
    let bypass = std::mem::take(&mut cache.bypass_once);
    // Borrowed, not cloned: no reference count touched (shared by every session).
    let set = cache.set.as_deref()?;
    let list = cache.by_id.as_deref()?.0.get(info.id as usize)?;
    let user = user.unwrap_or(&set.default_user);
    for &i in list.iter() {
        let rule = &set.rules[i as usize];
        if !rule.matches(info, args, user) {
            continue;
        }
        let safe_keys = |charge| Verdict::SafeKeys {
            max: set.max_keys_reply,
            charge,
        };
        match rule.action {
            GuardAction::Allow => {
                rule.passed.increment(1);
                return rule.rewrite.map(|GuardRewrite::Scan| safe_keys(None));
            }
            GuardAction::Deny => {
                rule.denied.increment(1);
                crate::audit::guard_denied(&rule.name, user, addr, &info.name);
                return Some(Verdict::Refuse(
                    Refusal::GuardDenied {
                        what: rule.what(info, args),
                        rule: rule.name.clone(),
                    }
                    .reply(),
                ));
            }
            GuardAction::Limit => {
                if let Some(budget) = &rule.shared {
                    if bypass {
                        return rule.rewrite.map(|GuardRewrite::Scan| safe_keys(None));
                    }
                    return Some(Verdict::Shared(budget.clone(), rule.limit(info, args)));
                }
                // The token is taken only once nothing else refuses the request.
                let charge = Charge {
                    set: cache.set.clone()?,
                    rule: i,
                };
                return Some(match rule.rewrite {
                    Some(GuardRewrite::Scan) => safe_keys(Some(charge)),
                    None => Verdict::Charge(charge),
                });
            }
        }
    }
    None
}

/// A limit rule's token, owed by a request the rule matched: taken by [`Charge::pay`]
/// when the request is about to run, after every other check that could refuse it
/// (MULTI's rules, subscribed mode, CROSSSLOT, ...), so a refused command spends none.
pub struct Charge {
    set: Arc<GuardSet>,
    rule: u16,
}

impl Charge {
    /// Takes the token; the refusal (naming the rule, its rate and the wait) when the
    /// bucket is empty.
    pub fn pay(
        self,
        info: &CommandInfo,
        args: Args<'_>,
        user: Option<&String>,
        addr: IpAddr,
    ) -> Result<(), Bytes> {
        let set = &*self.set;
        let rule = &set.rules[self.rule as usize];
        let user = user.unwrap_or(&set.default_user);
        match rule.take(user, addr, &set.clock) {
            Ok(()) => {
                rule.passed.increment(1);
                Ok(())
            }
            Err(wait) => {
                rule.limited.increment(1);
                crate::audit::guard_limited(&rule.name, user, addr, &info.name);
                Err(Refusal::GuardLimited {
                    limit: rule.limit(info, args),
                    retry: retry_text(wait),
                }
                .reply())
            }
        }
    }
}
