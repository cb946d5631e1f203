//! RENAME, RENAMENX and COPY across slots: DUMP + PTTL of the source (one MULTI/EXEC on
//! its master, so the value and its TTL are read together), RESTORE on the
//! destination's master with that TTL (`REPLACE` for RENAME and COPY ... REPLACE), then
//! for RENAME/RENAMENX the source deleted, only if it still holds what was copied.
//!
//! **Never neither.** The destination is written before the source is deleted: a
//! failure or a respgate killed between the two leaves the key in both places, never in
//! none. **Replies** are Redis's: `ERR no such key` (RENAME/RENAMENX of a missing key),
//! `0` (COPY of a missing key, RENAMENX/COPY onto an existing key: RESTORE's BUSYKEY),
//! `+OK` / `1`. COPY's options are checked as Redis does before it looks at the keys
//! (`DB n` other than 0 refused with a cluster's words).
//!
//! **Concurrency.** Another client's write to the source between the copy and the
//! delete is kept: the delete is a small script that deletes only when `DUMP` still
//! gives the copied bytes (the rename then reads as having happened before that write).

use super::copy::dumped;
use super::steps::{bytes_copied, Job};
use crate::cluster::key_slot;
use crate::protocol::int::parse_int;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use crate::protocol::value::integer;
use crate::protocol::Args;
use bytes::Bytes;

/// Deletes KEYS[1] only when its DUMP is still ARGV[1].
const DELETE_IF_UNCHANGED: &[u8] =
    b"if redis.call('DUMP', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Which command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rename,
    RenameNx,
    Copy { replace: bool },
}

/// COPY's options (`REPLACE`, `DB n`) as Redis parses them; the error it gives.
pub fn copy_options(args: Args<'_>) -> Result<Kind, Bytes> {
    // A cluster node checks each option in turn (the DB's number and range as it goes),
    // and only after all of them that the DB is 0 (`DB 1 FOO` is a syntax error).
    let mut replace = false;
    let mut other_db = false;
    let mut j = 3;
    while j < args.len() {
        let a = args.get(j);
        if a.eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if a.eq_ignore_ascii_case(b"db") && j + 1 < args.len() {
            let db = parse_int(args.get(j + 1)).ok_or_else(|| Refusal::NotAnInteger.reply())?;
            if i32::try_from(db).is_err() {
                return Err(reply::error(
                    "ERR value is out of range, value must between -2147483648 and 2147483647",
                ));
            }
            if !(0..16).contains(&db) {
                return Err(Refusal::DbIndexOutOfRange.reply());
            }
            other_db = db != 0;
            j += 1;
        } else {
            return Err(Refusal::Syntax.reply());
        }
        j += 1;
    }
    if other_db {
        return Err(reply::error(
            "ERR Copying to another database is not allowed in cluster mode",
        ));
    }
    Ok(Kind::Copy { replace })
}

/// Runs `kind` from `src` to `dst`; the client's reply.
pub async fn run(job: &Job, kind: Kind, src: Bytes, dst: Bytes) -> Bytes {
    match try_run(job, kind, src, dst).await {
        Ok(r) | Err(r) => r,
    }
}

async fn try_run(job: &Job, kind: Kind, src: Bytes, dst: Bytes) -> Result<Bytes, Bytes> {
    let src_node = job.master(key_slot(&src))?;
    let dst_node = job.master(key_slot(&dst))?;
    let read = [
        reply::command([&b"DUMP"[..], &src]),
        reply::command([&b"PTTL"[..], &src]),
    ];
    let items = job.exec(&src_node, &read, false).await?;
    let Some(payload) = dumped(job, items[0].clone())? else {
        return Ok(match kind {
            Kind::Copy { .. } => reply::integer(0),
            _ => reply::error("ERR no such key"),
        });
    };
    let len = payload.len() as u64;
    if len > job.max_bytes {
        return Err(job.too_large(len));
    }
    bytes_copied().increment(len);
    // PTTL -1: no TTL (RESTORE's 0); 0 means "expires within the millisecond".
    let ttl = match integer(&items[1]) {
        Some(ms) if ms >= 0 => ms.max(1),
        _ => 0,
    }
    .to_string();
    let mut restore: Vec<&[u8]> = vec![b"RESTORE", &dst, ttl.as_bytes(), &payload];
    if matches!(kind, Kind::Rename | Kind::Copy { replace: true }) {
        restore.push(b"REPLACE");
    }
    let restored = job
        .pipeline(
            &dst_node,
            &with_expires(job, reply::command(restore)),
            false,
        )
        .await?
        .remove(0);
    if restored.starts_with(b"-BUSYKEY") {
        return Ok(reply::integer(0));
    }
    if restored.first() == Some(&b'-') {
        return Err(restored);
    }
    if let Kind::Copy { .. } = kind {
        return Ok(reply::integer(1));
    }
    let delete = reply::command([&b"EVAL"[..], DELETE_IF_UNCHANGED, b"1", &src, &payload]);
    let deleted = job.pipeline(&src_node, &[delete], false).await?.remove(0);
    if deleted.first() == Some(&b'-') {
        return Err(job.fail(format!(
            "{} was copied but not deleted: {}",
            String::from_utf8_lossy(&src),
            super::steps::error_text(&deleted)
        )));
    }
    Ok(match kind {
        Kind::Rename => Bytes::from_static(reply::OK),
        _ => reply::integer(1),
    })
}

/// `write` followed by the TTL policy's EXPIREs for the destination (one pipeline).
pub fn with_expires(job: &Job, write: Bytes) -> Vec<Bytes> {
    let mut cmds = Vec::with_capacity(1 + job.expires.len());
    cmds.push(write);
    cmds.extend(job.expires.iter().cloned());
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::OwnedArgs;

    fn options(args: &[&str]) -> Result<Kind, String> {
        let owned = OwnedArgs::new(args);
        copy_options(owned.args()).map_err(|e| String::from_utf8_lossy(&e).into_owned())
    }

    #[test]
    fn copy_options_as_a_cluster_node_checks_them() {
        assert_eq!(
            options(&["COPY", "a", "b"]),
            Ok(Kind::Copy { replace: false })
        );
        assert_eq!(
            options(&["COPY", "a", "b", "db", "0", "REPLACE"]),
            Ok(Kind::Copy { replace: true })
        );
        let err = |s: &str| Err(format!("-{s}\r\n"));
        assert_eq!(options(&["COPY", "a", "b", "foo"]), err("ERR syntax error"));
        assert_eq!(options(&["COPY", "a", "b", "DB"]), err("ERR syntax error"));
        assert_eq!(
            options(&["COPY", "a", "b", "DB", "x"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            options(&["COPY", "a", "b", "DB", "20"]),
            err("ERR DB index is out of range")
        );
        assert_eq!(
            options(&["COPY", "a", "b", "DB", "1"]),
            err("ERR Copying to another database is not allowed in cluster mode")
        );
    }

    /// As a cluster node (7.0.15, checked): every option before the DB is refused for
    /// not being 0, and a DB outside 32 bits gets getIntFromObject's range error.
    #[test]
    fn copy_options_are_all_checked_before_the_db() {
        let err = |s: &str| Err(format!("-{s}\r\n"));
        assert_eq!(
            options(&["COPY", "a", "b", "DB", "1", "FOO"]),
            err("ERR syntax error")
        );
        assert_eq!(
            options(&["COPY", "a", "b", "DB", "20", "FOO"]),
            err("ERR DB index is out of range")
        );
        assert_eq!(
            options(&["COPY", "a", "b", "DB", "2147483648"]),
            err("ERR value is out of range, value must between -2147483648 and 2147483647")
        );
        assert_eq!(
            options(&["COPY", "a", "b", "DB", "99999999999999999999"]),
            err("ERR value is not an integer or out of range")
        );
    }
}
