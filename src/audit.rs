//! The audit log: one line per security decision, under the tracing target
//! `respgate::audit` (logins by password or certificate, refused logins and
//! certificates, ACL and guard refusals, and the FLUSHALL / FLUSHDB that pass).
//!
//! **Why one place.** Audit lines are read by people and parsed by machines, and several
//! of their fields come from the client: the user name given to AUTH, a certificate's
//! subject, a command's arguments. Written as they came, `AUTH "x\n<a whole line>" pw`
//! would put a forged line into the log. So every line is written here, and every
//! string field goes out through [`Text`]: quoted, with control characters, newlines,
//! quotes and backslashes escaped as Rust's `escape_debug` does. A line is therefore
//! always one line, and a field can never look like the next field.
//!
//! **Must not.** Log a password or any other credential: callers hand in names,
//! addresses, commands and rules only.

use std::fmt;
use std::net::IpAddr;

/// A string from outside (a client, a certificate, the config file) as an audit field:
/// quoted and escaped, whatever bytes it holds (invalid UTF-8 shows as U+FFFD).
pub struct Text<'a>(pub &'a [u8]);

impl<'a> Text<'a> {
    pub fn str(s: &'a str) -> Text<'a> {
        Text(s.as_bytes())
    }
}

/// Bytes of a field written to the log at most: a client's 500 MB user name is not
/// logged (escaped, three times over) in full.
pub const MAX_FIELD: usize = 256;

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        let shown = &self.0[..self.0.len().min(MAX_FIELD)];
        f.write_char('"')?;
        for c in String::from_utf8_lossy(shown).chars() {
            for e in c.escape_debug() {
                f.write_char(e)?;
            }
        }
        if shown.len() < self.0.len() {
            write!(f, "...({} bytes)", self.0.len())?;
        }
        f.write_char('"')
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// How a client proved who it is.
#[derive(Debug, Clone, Copy)]
pub enum Method {
    /// AUTH or HELLO ... AUTH.
    Password,
    /// A verified TLS client certificate naming the user.
    Certificate,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Certificate => "certificate",
        }
    }
}

/// A client logged in as `user`.
pub fn authenticated(user: &str, addr: IpAddr, method: Method) {
    tracing::info!(target: "respgate::audit", event = "auth", user = %Text::str(user), %addr, method = method.as_str(), "authenticated");
}

/// AUTH / HELLO AUTH failed: wrong password, unknown or disabled user (`user` as given).
pub fn auth_failed(user: &[u8], addr: IpAddr) {
    tracing::warn!(target: "respgate::audit", event = "auth_failed", user = %Text(user), %addr, rule = "wrong password, unknown or disabled user", "authentication failed");
}

/// AUTH / HELLO AUTH refused because the user is locked out at this address, or the
/// address (all failures from it, whatever the names) is (`rule`: the limit reached, `auth.max_failures` or
/// `auth.max_unknown_user_failures`).
pub fn auth_locked_out(user: &[u8], addr: IpAddr, rule: &str) {
    tracing::warn!(target: "respgate::audit", event = "auth_refused", user = %Text(user), %addr, rule, "locked out after too many failed authentications");
}

/// A TLS client certificate was refused: the handshake failed over it, or it was
/// verified but names no enabled user. `identity`: the name it stands for, if any.
pub fn certificate_refused(addr: IpAddr, identity: Option<&str>, reason: &str) {
    let identity = identity.map(Text::str);
    tracing::warn!(target: "respgate::audit", event = "cert_refused", identity = ?identity, %addr, reason = %Text::str(reason), "client certificate refused");
}

/// An ACL refusal (`reason`: noauth, command, key, channel).
pub fn acl_denied(reason: &str, user: &str, addr: IpAddr, command: &str, rule: &str) {
    tracing::warn!(target: "respgate::audit", event = "denied", reason, user = %Text::str(user), %addr, command = %Text::str(command), rule = %Text::str(rule), "request refused");
}

/// A guard rule refused a request.
pub fn guard_denied(rule: &str, user: &str, addr: IpAddr, command: &str) {
    tracing::warn!(target: "respgate::audit", event = "guard_denied", rule = %Text::str(rule), user = %Text::str(user), %addr, command = %Text::str(command), "request refused by a guard");
}

/// A guard rule's rate refused a request.
pub fn guard_limited(rule: &str, user: &str, addr: IpAddr, command: &str) {
    tracing::warn!(target: "respgate::audit", event = "guard_limited", rule = %Text::str(rule), user = %Text::str(user), %addr, command = %Text::str(command), "request over its rate");
}

/// A FLUSHALL / FLUSHDB passed every check and goes to the masters. `args`: its
/// arguments after the name (ASYNC / SYNC).
pub fn flush_passed<'a>(
    user: &str,
    addr: IpAddr,
    command: &str,
    args: impl Iterator<Item = &'a [u8]>,
) {
    let args: Vec<u8> = args.collect::<Vec<_>>().join(&b' ');
    tracing::warn!(target: "respgate::audit", event = "flush", user = %Text::str(user), %addr, command = %Text::str(command), args = %Text(&args), "whole keyspace flushed");
}

#[cfg(test)]
mod tests {
    use super::{Text, MAX_FIELD};

    #[test]
    fn long_fields_are_cut() {
        let long = vec![b'x'; 10 * MAX_FIELD];
        let shown = Text(&long).to_string();
        assert_eq!(shown.len(), MAX_FIELD + 2 + "...(2560 bytes)".len());
        assert!(shown.ends_with("...(2560 bytes)\""), "{shown}");
    }

    #[test]
    fn fields_are_quoted_and_escaped_to_one_line() {
        assert_eq!(Text(b"ops").to_string(), "\"ops\"");
        assert_eq!(
            Text(b"fake\n2099-01-01 INFO forged user=\"ops\"").to_string(),
            "\"fake\\n2099-01-01 INFO forged user=\\\"ops\\\"\""
        );
        assert_eq!(
            Text(b"a\r\x1b[31m\x00\\").to_string(),
            "\"a\\r\\u{1b}[31m\\0\\\\\""
        );
        assert_eq!(Text(b"\xff").to_string(), "\"\u{fffd}\"");
        let escaped = Text("x\u{2028}y\u{85}z\t".as_bytes()).to_string();
        assert!(
            !escaped.chars().any(|c| c.is_control() || c == '\u{2028}'),
            "{escaped}"
        );
    }
}
