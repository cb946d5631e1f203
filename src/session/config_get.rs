//! CONFIG GET with the nodes' secrets redacted.
//!
//! **Why.** A node's configuration holds credentials: `requirepass` (its password),
//! `masterauth` / `masteruser` (what replicas log in to their master with) and the TLS
//! key passphrases. Through a proxy, whoever may run CONFIG GET would read the
//! credentials of the cluster behind it, including respgate's own upstream password.
//! So their values are replaced by `<redacted>` for every caller, admins included
//! (an admin who needs them has them from where they were configured), however they
//! are asked for: by name in any case, among several parameters, or through a glob
//! (`CONFIG GET *`, `*pass*`). The parameter names stay, so a client still sees which
//! parameters exist.
//!
//! The request goes to one master as it came; only its reply is rewritten, in RESP2
//! (`*2n` name/value pairs) or RESP3 (a `%n` map).
//!
//! **Must not.** Let a secret value through because the reply had an unexpected shape:
//! a reply that cannot be read is replaced by an error.

use crate::protocol::reply::put_bulk;
use crate::protocol::scan::{parse_int, scan_reply};
use crate::protocol::value::bulk_payload;
use bytes::{Bytes, BytesMut};

/// Parameters whose values are secrets (Redis 7.0's sensitive configs, and
/// `masteruser`, which names the replication identity).
pub const SECRET_PARAMETERS: &[&str] = &[
    "requirepass",
    "masterauth",
    "masteruser",
    "tls-key-file-pass",
    "tls-client-key-file-pass",
];

/// What a secret's value is replaced by.
pub const REDACTED: &[u8] = b"<redacted>";

/// Whether parameter `name` holds a secret: one of [`SECRET_PARAMETERS`], or any
/// parameter a later Redis names like one (`...pass`, `...password...`).
pub fn is_secret(name: &[u8]) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|s| s.as_bytes() == name)
        || name.ends_with(b"pass")
        || name.windows(8).any(|w| w == b"password")
}

/// `reply` (CONFIG GET's name/value pairs) with every secret's value replaced by
/// [`REDACTED`]; `None` when it is not a readable pair list.
pub fn redact(reply: &[u8]) -> Option<Bytes> {
    let header_end = reply.windows(2).position(|w| w == b"\r\n")?;
    let count = parse_int(&reply[1..header_end])?;
    let items = match reply.first()? {
        b'*' => count,
        b'%' => count.checked_mul(2)?,
        _ => return None,
    };
    if items < 0 || items % 2 != 0 {
        return None;
    }
    let mut out = BytesMut::with_capacity(reply.len());
    out.extend_from_slice(&reply[..header_end + 2]);
    let mut pos = header_end + 2;
    let next = |pos: &mut usize| -> Option<&[u8]> {
        let len = scan_reply(&reply[*pos..]).ok()??;
        let item = &reply[*pos..*pos + len];
        *pos += len;
        Some(item)
    };
    for _ in 0..items / 2 {
        let name = next(&mut pos)?;
        let value = next(&mut pos)?;
        out.extend_from_slice(name);
        if is_secret(bulk_payload(name)?) {
            put_bulk(&mut out, REDACTED);
        } else {
            out.extend_from_slice(value);
        }
    }
    (pos == reply.len()).then(|| out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_resp2_and_resp3() {
        let resp2 = b"*6\r\n$11\r\nrequirepass\r\n$6\r\nhunter\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n$10\r\nmasterauth\r\n$0\r\n\r\n";
        assert_eq!(
            &redact(resp2).unwrap()[..],
            &b"*6\r\n$11\r\nrequirepass\r\n$10\r\n<redacted>\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n$10\r\nmasterauth\r\n$10\r\n<redacted>\r\n"[..]
        );
        let resp3 = b"%2\r\n$17\r\ntls-key-file-pass\r\n$3\r\nabc\r\n$4\r\nport\r\n$4\r\n6379\r\n";
        assert_eq!(
            &redact(resp3).unwrap()[..],
            &b"%2\r\n$17\r\ntls-key-file-pass\r\n$10\r\n<redacted>\r\n$4\r\nport\r\n$4\r\n6379\r\n"
                [..]
        );
        assert_eq!(&redact(b"*0\r\n").unwrap()[..], b"*0\r\n");
    }

    #[test]
    fn unreadable_replies_are_refused_not_passed_on() {
        assert!(redact(b"*1\r\n$11\r\nrequirepass\r\n").is_none());
        assert!(redact(b"*2\r\n$11\r\nrequirepass\r\n$6\r\nhun").is_none());
        assert!(redact(b"$6\r\nhunter\r\n").is_none());
    }

    #[test]
    fn secret_names() {
        for name in SECRET_PARAMETERS {
            assert!(is_secret(name.as_bytes()), "{name}");
        }
        assert!(is_secret(b"MASTERAUTH"));
        assert!(is_secret(b"some-future-password-file"));
        assert!(!is_secret(b"tls-auth-clients"));
        assert!(!is_secret(b"maxmemory"));
    }
}
