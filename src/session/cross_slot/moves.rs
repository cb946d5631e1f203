//! SMOVE, LMOVE and RPOPLPUSH across slots: the element is given to the destination
//! before the source gives it up, so a failed step or a killed respgate may leave it in
//! both keys, never in neither.
//!
//! **Checks first, in Redis's order.** SMOVE: a missing source answers 0, then a source
//! or destination of another type WRONGTYPE, then an element not in the source 0.
//! LMOVE: the directions (`ERR syntax error`), a missing source nil, then WRONGTYPE for
//! either key. The source's checks run in one MULTI/EXEC on its master (its type and
//! the element, read together), the destination's TYPE at the same time on its master.
//!
//! **Then the move.** SMOVE: `SADD dst m`, then `SREM src m`. LMOVE: the element read
//! by the check (LINDEX at the source's end) is pushed to the destination, then popped
//! from the source by a script only if the source's end still holds it (another
//! client's pop in between is not undone: the element was then taken twice, which the
//! README lists among what can interleave).

use super::rename::with_expires;
use super::steps::{simple_text, Job, WRONGTYPE};
use crate::cluster::key_slot;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use crate::protocol::value::{bulk_payload, integer, is_null};
use bytes::Bytes;

/// Pops KEYS[1]'s end ARGV[1] (`0` left, `-1` right) when it is still ARGV[2].
const POP_IF_SAME: &[u8] = b"if redis.call('LINDEX', KEYS[1], ARGV[1]) == ARGV[2] then if ARGV[1] == '0' then redis.call('LPOP', KEYS[1]) else redis.call('RPOP', KEYS[1]) end return 1 end return 0";

/// SMOVE `src` `dst` `member`; the client's reply.
pub async fn smove(job: &Job, src: Bytes, dst: Bytes, member: Bytes) -> Bytes {
    match try_smove(job, &src, &dst, &member).await {
        Ok(r) | Err(r) => r,
    }
}

async fn try_smove(job: &Job, src: &Bytes, dst: &Bytes, member: &Bytes) -> Result<Bytes, Bytes> {
    let src_node = job.master(key_slot(src))?;
    let dst_node = job.master(key_slot(dst))?;
    let dst_type = job.send(&dst_node, &[reply::command([&b"TYPE"[..], dst])], false);
    let read = [
        reply::command([&b"TYPE"[..], src]),
        reply::command([&b"SISMEMBER"[..], src, member]),
    ];
    let items = job.exec(&src_node, &read, false).await?;
    let dst_type = job.replies(&dst_node, dst_type, 1).await?.remove(0);
    match simple_text(&items[0]) {
        Some(b"none") => return Ok(reply::integer(0)),
        Some(b"set") => {}
        _ => return Ok(Bytes::from_static(WRONGTYPE)),
    }
    if !matches!(simple_text(&dst_type), Some(b"none" | b"set")) {
        return Ok(Bytes::from_static(WRONGTYPE));
    }
    if integer(&items[1]) != Some(1) {
        return Ok(reply::integer(0));
    }
    let added = job
        .pipeline(
            &dst_node,
            &with_expires(job, reply::command([&b"SADD"[..], dst, member])),
            false,
        )
        .await?
        .remove(0);
    if added.first() == Some(&b'-') {
        return Err(added);
    }
    let removed = job
        .pipeline(
            &src_node,
            &[reply::command([&b"SREM"[..], src, member])],
            false,
        )
        .await?
        .remove(0);
    if removed.first() == Some(&b'-') {
        return Err(job.fail(format!(
            "the member was added to the destination but not removed from the source: {}",
            super::steps::error_text(&removed)
        )));
    }
    Ok(reply::integer(1))
}

/// An end of a list: LEFT or RIGHT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

impl End {
    /// `LEFT` / `RIGHT` (any case); Redis's syntax error otherwise.
    pub fn parse(word: &[u8]) -> Result<End, Bytes> {
        if word.eq_ignore_ascii_case(b"left") {
            Ok(End::Left)
        } else if word.eq_ignore_ascii_case(b"right") {
            Ok(End::Right)
        } else {
            Err(Refusal::Syntax.reply())
        }
    }

    fn index(self) -> &'static [u8] {
        match self {
            End::Left => b"0",
            End::Right => b"-1",
        }
    }

    fn push(self) -> &'static [u8] {
        match self {
            End::Left => b"LPUSH",
            End::Right => b"RPUSH",
        }
    }
}

/// LMOVE `src` `dst` `from` `to` (RPOPLPUSH: RIGHT LEFT); the client's reply.
pub async fn lmove(job: &Job, src: Bytes, dst: Bytes, from: End, to: End) -> Bytes {
    match try_lmove(job, &src, &dst, from, to).await {
        Ok(r) | Err(r) => r,
    }
}

async fn try_lmove(
    job: &Job,
    src: &Bytes,
    dst: &Bytes,
    from: End,
    to: End,
) -> Result<Bytes, Bytes> {
    let null = || Bytes::from_static(if job.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    let src_node = job.master(key_slot(src))?;
    let dst_node = job.master(key_slot(dst))?;
    let dst_type = job.send(&dst_node, &[reply::command([&b"TYPE"[..], dst])], false);
    let read = [
        reply::command([&b"TYPE"[..], src]),
        reply::command([&b"LINDEX"[..], src, from.index()]),
    ];
    let items = job.exec(&src_node, &read, false).await?;
    let dst_type = job.replies(&dst_node, dst_type, 1).await?.remove(0);
    match simple_text(&items[0]) {
        Some(b"none") => return Ok(null()),
        Some(b"list") => {}
        _ => return Ok(Bytes::from_static(WRONGTYPE)),
    }
    if !matches!(simple_text(&dst_type), Some(b"none" | b"list")) {
        return Ok(Bytes::from_static(WRONGTYPE));
    }
    if is_null(&items[1]) {
        return Ok(null());
    }
    let Some(value) = bulk_payload(&items[1]) else {
        return Err(job.fail("unreadable LINDEX reply"));
    };
    let pushed = job
        .pipeline(
            &dst_node,
            &with_expires(job, reply::command([to.push(), dst, value])),
            false,
        )
        .await?
        .remove(0);
    if pushed.first() == Some(&b'-') {
        return Err(pushed);
    }
    let pop = reply::command([&b"EVAL"[..], POP_IF_SAME, b"1", src, from.index(), value]);
    let popped = job.pipeline(&src_node, &[pop], false).await?.remove(0);
    if popped.first() == Some(&b'-') {
        return Err(job.fail(format!(
            "the element was pushed to the destination but not popped from the source: {}",
            super::steps::error_text(&popped)
        )));
    }
    Ok(reply::bulk(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_parse_as_redis_reads_them() {
        assert_eq!(End::parse(b"left"), Ok(End::Left));
        assert_eq!(End::parse(b"RIGHT"), Ok(End::Right));
        assert_eq!(
            End::parse(b"middle").unwrap_err(),
            Bytes::from_static(b"-ERR syntax error\r\n")
        );
    }
}
