//! Parsing a user's rules, written in Redis's own ACL syntax (`ACL SETUSER`), into an
//! [`Acl`]: what an operator knows from `redis.conf` / `users.acl` works unchanged.
//!
//! Supported: `on`, `off`, `nopass`, `resetpass`, `#<sha256-hex>`, `!<sha256-hex>`,
//! `~pattern`, `%R~`, `%W~`, `%RW~`, `allkeys`, `resetkeys`, `&pattern`, `allchannels`,
//! `resetchannels`, `+cmd`, `-cmd`, `+cmd|sub`, `-cmd|sub`, `+@category`, `-@category`,
//! `allcommands`, `nocommands`, `reset`. Plain-text passwords (`>secret`) are refused:
//! respgate stores passwords only as hashes (`respgate hash-password`). Selectors
//! (`(...)`) are refused with an explanation.
//!
//! Command rules are kept in order and compiled against the command table when it is
//! known ([`Acl::compile`]): the last rule that mentions a command decides, exactly as
//! Redis's incremental rule application does.

use super::glob::Pattern;
use crate::commands::{acl_category_bit, CommandInfo, CommandTable};

/// Read permission on a key pattern.
pub const READ: u8 = 1;
/// Write permission on a key pattern.
pub const WRITE: u8 = 2;

/// One command rule, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandRule {
    /// `+@all` / `allcommands` (true), `-@all` / `nocommands` (false).
    All(bool),
    /// `+@category` / `-@category`.
    Category(u64, bool),
    /// `+name` / `-name`; `name` is lowercase, `container|sub` for a subcommand.
    Command(String, bool),
}

/// A user's permissions and credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub enabled: bool,
    pub nopass: bool,
    /// SHA-256 of each accepted password.
    pub passwords: Vec<[u8; 32]>,
    pub allkeys: bool,
    /// Key patterns with their [`READ`] / [`WRITE`] permissions.
    pub keys: Vec<(Pattern, u8)>,
    pub allchannels: bool,
    pub channels: Vec<Pattern>,
    /// Channel patterns as written (PSUBSCRIBE needs the literal pattern).
    pub channel_sources: Vec<Vec<u8>>,
    pub commands: Vec<CommandRule>,
    /// Every rule as written, for audit lines and ACL LIST (hashes redacted there).
    pub sources: Vec<String>,
    /// `sources` index of each entry of `commands`.
    pub command_sources: Vec<usize>,
    /// `sources` index of each entry of `keys`.
    key_sources: Vec<String>,
}

/// Which commands a user may run, per command id of one command table.
#[derive(Debug)]
pub struct CompiledCommands {
    /// Per [`CommandInfo::id`]: allowed?
    pub allowed: Vec<bool>,
    /// Per id: the index into [`Acl::sources`] of the rule that decided (`usize::MAX`:
    /// no rule mentions it, so it is denied by default).
    pub decided_by: Vec<usize>,
}

impl Acl {
    /// Parses whitespace-separated rules.
    pub fn parse(rules: &str) -> Result<Acl, String> {
        let mut acl = Acl::default();
        for rule in rules.split_whitespace() {
            acl.apply(rule)?;
        }
        Ok(acl)
    }

    /// Applies one rule, as `ACL SETUSER name <rule>` would.
    pub fn apply(&mut self, rule: &str) -> Result<(), String> {
        let index = self.sources.len();
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "allkeys" | "~*" => {
                self.allkeys = true;
                self.keys.clear();
                self.key_sources.clear();
            }
            "resetkeys" => {
                self.allkeys = false;
                self.keys.clear();
                self.key_sources.clear();
            }
            "allchannels" | "&*" => {
                self.allchannels = true;
                self.channels.clear();
                self.channel_sources.clear();
            }
            "resetchannels" => {
                self.allchannels = false;
                self.channels.clear();
                self.channel_sources.clear();
            }
            "allcommands" | "+@all" => self.command(CommandRule::All(true), index),
            "nocommands" | "-@all" => self.command(CommandRule::All(false), index),
            "reset" => {
                let enabled = false;
                *self = Acl {
                    enabled,
                    sources: std::mem::take(&mut self.sources),
                    ..Acl::default()
                };
                self.command(CommandRule::All(false), index);
            }
            "clearselectors" => {}
            _ => self.apply_prefixed(rule)?,
        }
        self.sources.push(rule.to_string());
        Ok(())
    }

    fn command(&mut self, rule: CommandRule, source: usize) {
        self.commands.push(rule);
        self.command_sources.push(source);
    }

    fn apply_prefixed(&mut self, rule: &str) -> Result<(), String> {
        let index = self.sources.len();
        let bytes = rule.as_bytes();
        match bytes[0] {
            b'>' | b'<' => Err(format!(
                "'{}...': plain-text passwords are not stored; use '#<sha256>' (see `respgate hash-password`)",
                &rule[..1]
            )),
            b'#' | b'!' => {
                let hash = parse_hash(&rule[1..]).ok_or_else(|| {
                    format!("'{rule}': a password hash is 64 hex digits (SHA-256)")
                })?;
                if bytes[0] == b'#' {
                    if !self.passwords.contains(&hash) {
                        self.passwords.push(hash);
                    }
                    self.nopass = false;
                } else {
                    self.passwords.retain(|h| *h != hash);
                }
                Ok(())
            }
            b'~' => {
                self.key_pattern(&rule[1..], READ | WRITE, rule);
                Ok(())
            }
            b'%' => {
                let (perms, pattern) = rule[1..]
                    .split_once('~')
                    .ok_or_else(|| format!("'{rule}': expected %R~, %W~ or %RW~ and a pattern"))?;
                let mut flags = 0;
                for c in perms.chars() {
                    match c.to_ascii_uppercase() {
                        'R' => flags |= READ,
                        'W' => flags |= WRITE,
                        _ => {
                            return Err(format!(
                                "'{rule}': key permissions are R, W or RW, not '{perms}'"
                            ))
                        }
                    }
                }
                if flags == 0 {
                    return Err(format!("'{rule}': key permissions are R, W or RW"));
                }
                if flags == READ | WRITE && pattern == "*" {
                    self.allkeys = true;
                    self.keys.clear();
                    self.key_sources.clear();
                } else {
                    self.key_pattern(pattern, flags, rule);
                }
                Ok(())
            }
            b'&' => {
                if !self.allchannels {
                    self.channels.push(Pattern::new(&rule.as_bytes()[1..]));
                    self.channel_sources.push(rule.as_bytes()[1..].to_vec());
                }
                Ok(())
            }
            b'+' | b'-' => {
                let allow = bytes[0] == b'+';
                let what = &rule[1..];
                if let Some(category) = what.strip_prefix('@') {
                    let bit = acl_category_bit(category.as_bytes()).ok_or_else(|| {
                        format!("'{rule}': unknown command category '{category}'")
                    })?;
                    self.command(CommandRule::Category(bit, allow), index);
                } else if what.is_empty() {
                    return Err(format!("'{rule}': a command name must follow"));
                } else {
                    self.command(CommandRule::Command(what.to_ascii_lowercase(), allow), index);
                }
                Ok(())
            }
            b'(' => Err(format!(
                "'{rule}': selectors are not supported by respgate; give the user one set of rules"
            )),
            _ => Err(format!("'{rule}': unknown ACL rule (see Redis's ACL SETUSER)")),
        }
    }

    fn key_pattern(&mut self, pattern: &str, flags: u8, source: &str) {
        if self.allkeys {
            return;
        }
        self.keys.push((Pattern::new(pattern.as_bytes()), flags));
        self.key_sources.push(source.to_string());
    }

    /// Whether this user may run `cmd` by its command rules alone.
    pub fn allows_command(&self, cmd: &CommandInfo) -> (bool, usize) {
        let mut allowed = false;
        let mut decided = usize::MAX;
        let container = cmd.name.split_once('|').map(|(c, _)| c);
        for (rule, source) in self.commands.iter().zip(&self.command_sources) {
            let verdict = match rule {
                CommandRule::All(a) => Some(*a),
                CommandRule::Category(bit, a) => (cmd.acl_categories & bit != 0).then_some(*a),
                CommandRule::Command(name, a) => {
                    (*name == cmd.name || container == Some(name.as_str())).then_some(*a)
                }
            };
            if let Some(v) = verdict {
                allowed = v;
                decided = *source;
            }
        }
        (allowed, decided)
    }

    /// Resolves the command rules for every command of `table`.
    pub fn compile(&self, table: &CommandTable) -> CompiledCommands {
        let n = table.id_count();
        let mut allowed = vec![false; n];
        let mut decided_by = vec![usize::MAX; n];
        for cmd in table.all() {
            let (a, d) = self.allows_command(cmd);
            allowed[cmd.id as usize] = a;
            decided_by[cmd.id as usize] = d;
        }
        CompiledCommands {
            allowed,
            decided_by,
        }
    }

    /// Whether `key` may be accessed with `needed` permissions (Redis's
    /// `ACLSelectorCheckKey`: every needed bit must come from one pattern).
    #[inline]
    pub fn key_allowed(&self, key: &[u8], needed: u8) -> bool {
        self.allkeys
            || self
                .keys
                .iter()
                .any(|(pattern, flags)| flags & needed == needed && pattern.matches(key))
    }

    /// Whether every key may be written (FLUSHALL / FLUSHDB).
    pub fn writes_all_keys(&self) -> bool {
        self.allkeys
            || self
                .keys
                .iter()
                .any(|(p, f)| *p == Pattern::Any && f & WRITE != 0)
    }

    /// Whether `channel` may be published or subscribed to. `literal`: PSUBSCRIBE's
    /// pattern, which must equal one of the user's patterns (as in Redis).
    pub fn channel_allowed(&self, channel: &[u8], literal: bool) -> bool {
        if self.allchannels {
            return true;
        }
        if literal {
            self.channel_sources.iter().any(|p| p == channel)
        } else {
            self.channels.iter().any(|p| p.matches(channel))
        }
    }

    /// The rules as ACL LIST shows them, with password hashes redacted.
    pub fn describe(&self, name: &str) -> String {
        let mut out = format!("user {name} {}", if self.enabled { "on" } else { "off" });
        if self.nopass {
            out.push_str(" nopass");
        }
        for _ in &self.passwords {
            out.push_str(" #<redacted>");
        }
        out.push(' ');
        out.push_str(&self.keys_description());
        out.push(' ');
        out.push_str(&self.channels_description());
        out.push(' ');
        out.push_str(&self.commands_description());
        out
    }

    pub fn keys_description(&self) -> String {
        if self.allkeys {
            "~*".into()
        } else if self.key_sources.is_empty() {
            "resetkeys".into()
        } else {
            self.key_sources.join(" ")
        }
    }

    pub fn channels_description(&self) -> String {
        if self.allchannels {
            "&*".into()
        } else if self.channel_sources.is_empty() {
            "resetchannels".into()
        } else {
            let mut s = String::from("resetchannels");
            for c in &self.channel_sources {
                s.push_str(" &");
                s.push_str(&String::from_utf8_lossy(c));
            }
            s
        }
    }

    pub fn commands_description(&self) -> String {
        let mut parts: Vec<&str> = self
            .command_sources
            .iter()
            .map(|&i| self.sources[i].as_str())
            .collect();
        if parts.is_empty() {
            parts.push("-@all");
        }
        parts
            .iter()
            .map(|s| match s.to_ascii_lowercase().as_str() {
                "allcommands" => "+@all".to_string(),
                "nocommands" => "-@all".to_string(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// SHA-256 hex (64 digits, either case) into bytes.
pub fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}
