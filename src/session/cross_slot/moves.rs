//! SMOVE, LMOVE and RPOPLPUSH across slots: the element is given to the destination
//! before the source gives it up, so a failed step or a killed respgate may leave it in
//! both keys, never in neither; and movers through respgate take one source key's
//! elements one after the other (a claim, `moves/claim.rs`), so no element is handed
//! out twice.
//!
//! **Step 1, on the source's master: checks and claim in one script.** It answers
//! busy while another mover holds the source's claim (retried, see `claim.rs`); else
//! it reads the source's type and the element (SMOVE: is the member there; LMOVE: the
//! element at the source's end) and, when there is one to move, sets the claim. The
//! destination's TYPE is read at the same time on its master. Then the checks in
//! Redis's order: SMOVE: a missing source 0, a source or destination of another type
//! WRONGTYPE, a member not in the source 0. LMOVE: the directions (`ERR syntax
//! error`, before any step), a missing source nil, then WRONGTYPE for either key. A
//! check that refuses after the claim was taken gives the claim back.
//!
//! **Step 2: the destination.** `SADD dst m` / `LPUSH|RPUSH dst e` (with the TTL
//! policy's EXPIREs).
//!
//! **Step 3, on the source's master: one script** removes the element (SREM; LMOVE:
//! pops the end only if it still holds that element) and deletes the claim if it
//! still holds this mover's token. Clients' direct commands do not know claims: a
//! direct pop between steps 1 and 3 is not undone (the element was then taken twice,
//! which the README lists among what can interleave).

mod claim;

use super::rename::with_expires;
use super::steps::{simple_text, Job, WRONGTYPE};
use crate::backend::Node;
use crate::cluster::key_slot;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use crate::protocol::value::integer;
use bytes::Bytes;
use claim::{release, take, Claim, Taken};

/// Step 1 of SMOVE. KEYS: source, claim; ARGV: token, TTL (ms), member.
const SMOVE_CLAIM: &[u8] = b"if redis.call('EXISTS', KEYS[2]) == 1 then return {'busy'} end \
local t = redis.call('TYPE', KEYS[1]).ok \
if t ~= 'set' or redis.call('SISMEMBER', KEYS[1], ARGV[3]) == 0 then return {t} end \
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) return {t, '1'}";

/// Step 3 of SMOVE. KEYS: source, claim; ARGV: member, token. Answers SREM's count.
const SMOVE_FINISH: &[u8] = b"local r = 0 \
if redis.call('TYPE', KEYS[1]).ok == 'set' then r = redis.call('SREM', KEYS[1], ARGV[1]) end \
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end return r";

/// Step 1 of LMOVE. KEYS: source, claim; ARGV: token, TTL (ms), end (`0` / `-1`).
const LMOVE_CLAIM: &[u8] = b"if redis.call('EXISTS', KEYS[2]) == 1 then return {'busy'} end \
local t = redis.call('TYPE', KEYS[1]).ok \
if t ~= 'list' then return {t} end \
local e = redis.call('LINDEX', KEYS[1], ARGV[3]) \
if not e then return {t} end \
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) return {t, e}";

/// Step 3 of LMOVE. KEYS: source, claim; ARGV: end (`0` / `-1`), element, token. Pops
/// the end when it still holds the element; answers 1 if it did.
const LMOVE_FINISH: &[u8] = b"local r = 0 \
if redis.call('TYPE', KEYS[1]).ok == 'list' and redis.call('LINDEX', KEYS[1], ARGV[1]) == ARGV[2] then \
if ARGV[1] == '0' then redis.call('LPOP', KEYS[1]) else redis.call('RPOP', KEYS[1]) end r = 1 end \
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end return r";

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
    let taken = take(job, &src_node, src, SMOVE_CLAIM, &[member]).await?;
    let dst_type = job
        .replies(&dst_node, dst_type, 1)
        .await
        .map(|mut r| r.remove(0));
    let Taken { kind, claim, .. } = taken;
    let Some(claim) = claim else {
        return match &kind[..] {
            b"none" => Ok(reply::integer(0)),
            b"set" if dst_ok(&dst_type?, b"set") => Ok(reply::integer(0)),
            _ => Ok(Bytes::from_static(WRONGTYPE)),
        };
    };
    match dst_type {
        Ok(t) if dst_ok(&t, b"set") => {}
        other => {
            release(job, &src_node, &claim).await;
            return other.and(Ok(Bytes::from_static(WRONGTYPE)));
        }
    }
    let add = with_expires(job, reply::command([&b"SADD"[..], dst, member]));
    write_destination(job, &src_node, &dst_node, &claim, &add).await?;
    let finish = reply::command([
        &b"EVAL"[..],
        SMOVE_FINISH,
        b"2",
        src,
        &claim.key,
        member,
        &claim.token,
    ]);
    let removed = job.pipeline(&src_node, &[finish], false).await?.remove(0);
    if removed.first() == Some(&b'-') || integer(&removed).is_none() {
        return Err(job.fail(format!(
            "the member was added to the destination but not removed from the source: {}",
            super::steps::error_text(&removed)
        )));
    }
    Ok(reply::integer(1))
}

/// True when the destination's TYPE reply is `none` or `want`.
fn dst_ok(dst_type: &[u8], want: &[u8]) -> bool {
    matches!(simple_text(dst_type), Some(t) if t == b"none" || t == want)
}

/// Step 2: `write` (and the TTL policy's EXPIREs) on the destination; on an error the
/// claim is given back and the error is the client's reply.
async fn write_destination(
    job: &Job,
    src_node: &Node,
    dst_node: &Node,
    claim: &Claim,
    write: &[Bytes],
) -> Result<(), Bytes> {
    let written = match job.pipeline(dst_node, write, false).await {
        Ok(mut r) => r.remove(0),
        Err(e) => {
            release(job, src_node, claim).await;
            return Err(e);
        }
    };
    if written.first() == Some(&b'-') {
        release(job, src_node, claim).await;
        return Err(written);
    }
    Ok(())
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
    let taken = take(job, &src_node, src, LMOVE_CLAIM, &[from.index()]).await?;
    let dst_type = job
        .replies(&dst_node, dst_type, 1)
        .await
        .map(|mut r| r.remove(0));
    let Taken { kind, read, claim } = taken;
    let (Some(claim), Some(value)) = (claim, read) else {
        return match &kind[..] {
            b"none" => Ok(null()),
            // An empty list does not exist: a list without an end element is not seen.
            b"list" if dst_ok(&dst_type?, b"list") => Ok(null()),
            _ => Ok(Bytes::from_static(WRONGTYPE)),
        };
    };
    match dst_type {
        Ok(t) if dst_ok(&t, b"list") => {}
        other => {
            release(job, &src_node, &claim).await;
            return other.and(Ok(Bytes::from_static(WRONGTYPE)));
        }
    }
    let push = with_expires(job, reply::command([to.push(), dst, &value]));
    write_destination(job, &src_node, &dst_node, &claim, &push).await?;
    let finish = reply::command([
        &b"EVAL"[..],
        LMOVE_FINISH,
        b"2",
        src,
        &claim.key,
        from.index(),
        &value,
        &claim.token,
    ]);
    let popped = job.pipeline(&src_node, &[finish], false).await?.remove(0);
    if popped.first() == Some(&b'-') {
        return Err(job.fail(format!(
            "the element was pushed to the destination but not popped from the source: {}",
            super::steps::error_text(&popped)
        )));
    }
    Ok(reply::bulk(&value))
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
