//! A claim on a move's source key: movers through respgate take the same source's
//! elements one after the other, never the same element twice.
//!
//! **Why.** A cross-slot move writes the destination before the source gives the
//! element up (a killed respgate must leave it in both keys, never in neither), so the
//! element is read first and removed last. Without a claim every concurrent mover
//! reads the same end (or member), pushes it and answers it: one job handed out many
//! times. The claim makes read-push-remove of one source key a critical section among
//! respgate's movers (every respgate instance in front of the cluster: the claim lives
//! on the source's master, not in this process).
//!
//! **The key.** `respgate:xslot:{<tag>}:claim:<h>`: the tag from the per-slot table
//! (`internal.rs`), so the claim lives in the source's slot and one script reads both;
//! `<h>` is a SHA-256 of the source key's name, because every mover of that key must
//! find the same claim (a random name could not be found). Its value is a random
//! 128-bit token: only the mover that set it deletes it. It is set with a TTL of
//! [`TTL_MS`]: a respgate killed inside a move leaves it to expire (the element is then
//! in the source, maybe in the destination too, never lost). Clients cannot name it
//! (`respgate:xslot:` keys are refused to them).
//!
//! **Busy.** A claim held by another mover answers `busy`; the step is retried after
//! 1 ms, doubling to 10 ms, for [`DEADLINE`], then the command is refused
//! (`-ERR respgate: cross-slot LMOVE busy: ...`): nothing was written.

use super::super::internal::{tag, TTL_MS};
use super::super::steps::Job;
use crate::backend::Node;
use crate::cluster::key_slot;
use crate::protocol::reply;
use crate::protocol::value::{array_items, bulk_payload};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long a mover waits for another's claim before refusing.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// The marker a claim script answers when another mover holds the claim.
const BUSY: &[u8] = b"busy";

/// Deletes KEYS[1] when it still holds ARGV[1] (our token).
const RELEASE: &[u8] =
    b"if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1";

/// A claim this mover holds on a source key.
pub struct Claim {
    /// The claim's key (in the source's slot).
    pub key: Bytes,
    /// This mover's random token, the claim's value.
    pub token: Bytes,
}

/// The claim key of source `src`.
pub fn key_of(src: &[u8]) -> Bytes {
    let digest = Sha256::digest(src);
    let mut name = format!("respgate:xslot:{{{}}}:claim:", tag(key_slot(src)));
    for b in &digest[..16] {
        name.push_str(&format!("{b:02x}"));
    }
    Bytes::from(name)
}

/// A claim script's answer: the source's type and, when the claim was taken, what it
/// read (the element, or a flag).
pub struct Taken {
    pub kind: Bytes,
    pub read: Option<Bytes>,
    pub claim: Option<Claim>,
}

/// Runs `script` on `node` with `KEYS = [src, claim]`, `ARGV = [token, ttl, args..]`
/// until it stops answering busy. The script answers `{'busy'}`, `{type}` (nothing
/// claimed) or `{type, read}` (claim set with the token).
pub async fn take(
    job: &Job,
    node: &Node,
    src: &Bytes,
    script: &[u8],
    args: &[&[u8]],
) -> Result<Taken, Bytes> {
    let key = key_of(src);
    let token = Bytes::from(format!("{:032x}", rand::random::<u128>()));
    let ttl = TTL_MS.to_string();
    let mut cmd: Vec<&[u8]> = vec![b"EVAL", script, b"2", src, &key, &token, ttl.as_bytes()];
    cmd.extend_from_slice(args);
    let cmd = reply::command(cmd);
    let start = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let answer = job
            .pipeline(node, std::slice::from_ref(&cmd), false)
            .await?
            .remove(0);
        if answer.first() == Some(&b'-') {
            return Err(answer);
        }
        let items = array_items(&answer).ok_or_else(|| job.fail("unreadable claim reply"))?;
        let texts: Option<Vec<&[u8]>> = items.iter().map(|i| bulk_payload(i)).collect();
        match texts.as_deref() {
            Some([b]) if *b == BUSY => {}
            Some([kind]) => {
                return Ok(Taken {
                    kind: Bytes::copy_from_slice(kind),
                    read: None,
                    claim: None,
                })
            }
            Some([kind, read]) => {
                return Ok(Taken {
                    kind: Bytes::copy_from_slice(kind),
                    read: Some(Bytes::copy_from_slice(read)),
                    claim: Some(Claim { key, token }),
                })
            }
            _ => return Err(job.fail("unreadable claim reply")),
        }
        if start.elapsed() >= DEADLINE {
            return Err(busy(job, src));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Gives `claim` up (a step failed or a check refused after it was taken). Best
/// effort: a claim not deleted expires within its TTL.
pub async fn release(job: &Job, node: &Node, claim: &Claim) {
    let cmd = reply::command([&b"EVAL"[..], RELEASE, b"1", &claim.key, &claim.token]);
    let _ = job.pipeline(node, &[cmd], false).await;
}

/// The refusal when the claim stayed with another mover past [`DEADLINE`].
fn busy(job: &Job, src: &[u8]) -> Bytes {
    let key: String = String::from_utf8_lossy(src)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Bytes::from(format!(
        "-ERR respgate: cross-slot {} busy: another move from '{key}' held it for {} s\r\n",
        job.command,
        DEADLINE.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_lives_in_the_source_slot_and_is_internal() {
        for src in [&b"a:{q}jobs"[..], b"x", b"a}b{c", b""] {
            let k = key_of(src);
            assert_eq!(key_slot(&k), key_slot(src), "{k:?}");
            assert!(super::super::super::internal::is_internal(&k));
        }
        assert_ne!(key_of(b"a"), key_of(b"b"));
        assert_eq!(key_of(b"a"), key_of(b"a"));
    }
}
