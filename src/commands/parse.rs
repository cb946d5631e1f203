//! Turning the raw RESP2 reply of `COMMAND` into [`CommandInfo`]s.
//!
//! Strict about shape (a malformed table must fail loudly at startup rather than route
//! wrongly later), lenient about vocabulary: unknown command flags, ACL categories, tips
//! and key-spec flags are ignored so a newer server still loads. Key specs respgate cannot
//! interpret safely become `Unknown`, which makes that command's key lookup report
//! `Incomplete` instead of guessing.

use redis_protocol::resp2::types::OwnedFrame;

use super::info::{acl_category_bit, cmd_flags, CommandInfo, Tips};
use super::keys::{BeginSearch, FindKeys, KeyFlags, KeyRule, KeySpec};
use super::CommandTableError;

/// Decodes `reply` (exactly one RESP2 frame) into top-level commands.
pub(crate) fn parse_reply(reply: &[u8]) -> Result<Vec<CommandInfo>, CommandTableError> {
    let (frame, used) = match redis_protocol::resp2::decode::decode(reply) {
        Ok(Some(v)) => v,
        Ok(None) => return Err(CommandTableError::Truncated),
        Err(e) => return Err(CommandTableError::Decode(e.to_string())),
    };
    if used != reply.len() {
        return Err(CommandTableError::TrailingBytes(reply.len() - used));
    }
    let entries = match &frame {
        OwnedFrame::Array(entries) => entries,
        OwnedFrame::Error(e) => return Err(CommandTableError::Server(e.clone())),
        _ => return Err(malformed("", "the reply is not an array")),
    };
    entries.iter().map(|e| parse_entry(e, None)).collect()
}

fn malformed(command: &str, reason: impl Into<String>) -> CommandTableError {
    CommandTableError::Malformed {
        command: command.to_string(),
        reason: reason.into(),
    }
}

type Res<T> = Result<T, String>;

fn array<'a>(f: &'a OwnedFrame, what: &str) -> Res<&'a [OwnedFrame]> {
    match f {
        OwnedFrame::Array(a) => Ok(a),
        _ => Err(format!("{what} is not an array")),
    }
}

fn bytes<'a>(f: &'a OwnedFrame, what: &str) -> Res<&'a [u8]> {
    match f {
        OwnedFrame::SimpleString(s) | OwnedFrame::BulkString(s) => Ok(s),
        _ => Err(format!("{what} is not a string")),
    }
}

fn string(f: &OwnedFrame, what: &str) -> Res<String> {
    String::from_utf8(bytes(f, what)?.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

fn int(f: &OwnedFrame, what: &str) -> Res<i32> {
    match f {
        OwnedFrame::Integer(i) => i32::try_from(*i).map_err(|_| format!("{what} out of range")),
        _ => Err(format!("{what} is not an integer")),
    }
}

/// A flat map (`[k1, v1, k2, v2, ...]`, as RESP2 renders maps): the value of `key`.
fn field<'a>(map: &'a [OwnedFrame], key: &str, what: &str) -> Res<Option<&'a OwnedFrame>> {
    if map.len() % 2 != 0 {
        return Err(format!("{what} has an odd number of elements"));
    }
    for pair in map.chunks_exact(2) {
        if bytes(&pair[0], what)? == key.as_bytes() {
            return Ok(Some(&pair[1]));
        }
    }
    Ok(None)
}

fn required<'a>(map: &'a [OwnedFrame], key: &str, what: &str) -> Res<&'a OwnedFrame> {
    field(map, key, what)?.ok_or_else(|| format!("{what} has no {key:?}"))
}

fn parse_entry(f: &OwnedFrame, parent: Option<&str>) -> Result<CommandInfo, CommandTableError> {
    let e = array(f, "a command entry").map_err(|r| malformed("", r))?;
    let name = match e.first().map(|n| string(n, "the command name")) {
        Some(Ok(n)) => n.to_ascii_lowercase(),
        Some(Err(r)) => return Err(malformed("", r)),
        None => return Err(malformed("", "empty command entry")),
    };
    let err = |r: String| malformed(&name, r);
    if e.len() < 10 {
        return Err(err(format!(
            "the entry has {} fields, not 10 (a Redis >= 7.0 server is required)",
            e.len()
        )));
    }
    if let Some(p) = parent {
        let ok = matches!(name.split_once('|'), Some((c, s)) if c == p && !s.is_empty());
        if !ok {
            return Err(err(format!(
                "a subcommand of {p:?} must be named \"{p}|...\""
            )));
        }
    } else if name.is_empty() || name.contains('|') {
        return Err(err("not a valid top-level command name".into()));
    }
    let arity = int(&e[1], "arity").map_err(err)?;
    if arity == 0 {
        return Err(err("arity 0".into()));
    }
    let mut flags = 0;
    for fl in array(&e[2], "flags").map_err(err)? {
        let fl = bytes(fl, "a flag").map_err(err)?;
        match cmd_flags::from_name(fl) {
            Some(bit) => flags |= bit,
            None => {
                tracing::debug!(command = %name, flag = %String::from_utf8_lossy(fl), "ignoring unknown command flag")
            }
        }
    }
    let first_key = int(&e[3], "first key").map_err(err)?;
    let last_key = int(&e[4], "last key").map_err(err)?;
    let step = int(&e[5], "step").map_err(err)?;
    let mut acl_categories = 0;
    for c in array(&e[6], "ACL categories").map_err(err)? {
        let c = bytes(c, "an ACL category").map_err(err)?;
        match acl_category_bit(c) {
            Some(bit) => acl_categories |= bit,
            None => {
                tracing::debug!(command = %name, category = %String::from_utf8_lossy(c), "ignoring unknown ACL category")
            }
        }
    }
    let tips = array(&e[7], "tips")
        .and_then(|t| {
            t.iter()
                .map(|t| string(t, "a tip"))
                .collect::<Res<Vec<_>>>()
        })
        .map_err(err)?;
    let key_specs = array(&e[8], "key specs")
        .and_then(|specs| {
            specs
                .iter()
                .map(|s| parse_key_spec(s, &name))
                .collect::<Res<Vec<_>>>()
        })
        .map_err(err)?;
    let subcommands = array(&e[9], "subcommands")
        .map_err(err)?
        .iter()
        .map(|s| parse_entry(s, Some(&name)))
        .collect::<Result<Vec<_>, _>>()?;
    if parent.is_some() && !subcommands.is_empty() {
        return Err(err("nested subcommands are not supported".into()));
    }
    let no_mandatory_keys = flags & cmd_flags::NO_MANDATORY_KEYS != 0;
    let key_rule = KeyRule::choose(&name, parent.is_some(), no_mandatory_keys, &key_specs);
    Ok(CommandInfo {
        name,
        id: 0,
        arity,
        flags,
        first_key,
        last_key,
        step,
        acl_categories,
        tips: Tips::from_raw(tips),
        key_specs,
        subcommands,
        key_rule,
        metrics: Default::default(),
    })
}

fn parse_key_spec(f: &OwnedFrame, command: &str) -> Res<KeySpec> {
    let map = array(f, "a key spec")?;
    let notes = field(map, "notes", "a key spec")?
        .map(|n| string(n, "key spec notes"))
        .transpose()?;
    let mut flags = KeyFlags::default();
    for fl in array(required(map, "flags", "a key spec")?, "key spec flags")? {
        let fl = bytes(fl, "a key spec flag")?;
        match KeyFlags::from_name(fl) {
            Some(bit) => flags = flags | bit,
            None => {
                tracing::debug!(command, flag = %String::from_utf8_lossy(fl), "ignoring unknown key spec flag")
            }
        }
    }
    let bs = array(required(map, "begin_search", "a key spec")?, "begin_search")?;
    let bs_spec = array(required(bs, "spec", "begin_search")?, "begin_search spec")?;
    let begin_search = match bytes(required(bs, "type", "begin_search")?, "begin_search type")? {
        b"index" => {
            let index = int(required(bs_spec, "index", "begin_search")?, "index")?;
            if index < 1 {
                unusable(command, "begin_search index < 1")
            } else {
                BeginSearch::Index(index)
            }
        }
        b"keyword" => {
            let keyword = bytes(required(bs_spec, "keyword", "begin_search")?, "keyword")?;
            let startfrom = int(required(bs_spec, "startfrom", "begin_search")?, "startfrom")?;
            BeginSearch::Keyword {
                keyword: keyword.into(),
                startfrom,
            }
        }
        b"unknown" => BeginSearch::Unknown,
        _ => unusable(command, "begin_search type not understood"),
    };
    let fk = array(required(map, "find_keys", "a key spec")?, "find_keys")?;
    let fk_spec = array(required(fk, "spec", "find_keys")?, "find_keys spec")?;
    let find_keys = match bytes(required(fk, "type", "find_keys")?, "find_keys type")? {
        b"range" => {
            let lastkey = int(required(fk_spec, "lastkey", "find_keys")?, "lastkey")?;
            let keystep = int(required(fk_spec, "keystep", "find_keys")?, "keystep")?;
            let limit = int(required(fk_spec, "limit", "find_keys")?, "limit")?;
            if keystep < 1 || limit < 0 || (limit > 0 && lastkey != -1) {
                unusable(command, "range spec out of Redis's rules")
            } else {
                FindKeys::Range {
                    lastkey,
                    keystep,
                    limit,
                }
            }
        }
        b"keynum" => {
            let keynumidx = int(required(fk_spec, "keynumidx", "find_keys")?, "keynumidx")?;
            let firstkey = int(required(fk_spec, "firstkey", "find_keys")?, "firstkey")?;
            let keystep = int(required(fk_spec, "keystep", "find_keys")?, "keystep")?;
            if keystep < 1 || keynumidx < 0 || firstkey <= keynumidx {
                unusable(command, "keynum spec out of Redis's rules")
            } else {
                FindKeys::Keynum {
                    keynumidx,
                    firstkey,
                    keystep,
                }
            }
        }
        b"unknown" => FindKeys::Unknown,
        _ => unusable(command, "find_keys type not understood"),
    };
    Ok(KeySpec {
        flags,
        begin_search,
        find_keys,
        notes,
    })
}

/// Logs a key spec part respgate will not interpret and returns `Unknown` for it.
fn unusable<T: UnknownPart>(command: &str, why: &str) -> T {
    tracing::warn!(
        command,
        why,
        "key spec not interpretable; the command's keys will be reported incomplete"
    );
    T::UNKNOWN
}

trait UnknownPart {
    const UNKNOWN: Self;
}

impl UnknownPart for BeginSearch {
    const UNKNOWN: Self = BeginSearch::Unknown;
}

impl UnknownPart for FindKeys {
    const UNKNOWN: Self = FindKeys::Unknown;
}
