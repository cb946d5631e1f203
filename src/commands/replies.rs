//! The exact error replies Redis 7.0 sends when it rejects a command before running it
//! (`processCommand` in server.c), so a client cannot tell respgate's rejection from the
//! server's. Each function returns the complete RESP2 error line, CRLF included.
//!
//! Redis formats these with C strings: an argument is cut at its first NUL byte, and the
//! finished message has every CR and LF replaced by a space (`rejectCommandFormat`).

use bytes::Bytes;

use crate::protocol::Args;

use super::CommandInfo;

/// Redis's budget for the quoted argument list, and for a quoted name.
const LIMIT: usize = 128;

/// The bytes a C `%s` would print: up to the first NUL.
fn c_str(s: &[u8]) -> &[u8] {
    s.iter().position(|&b| b == 0).map_or(s, |n| &s[..n])
}

fn truncated(s: &[u8], max: usize) -> &[u8] {
    let s = c_str(s);
    &s[..s.len().min(max)]
}

/// Turns message text into an error line: CR/LF become spaces, `-` and CRLF added.
fn finish(mut msg: Vec<u8>) -> Bytes {
    for b in &mut msg {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
    let mut line = Vec::with_capacity(msg.len() + 3);
    line.push(b'-');
    line.extend_from_slice(&msg);
    line.extend_from_slice(b"\r\n");
    Bytes::from(line)
}

/// `-ERR unknown command '<name>', with args beginning with: '<a1>' '<a2>' \r\n`.
///
/// The name is cut to 128 bytes. Arguments are appended as `'<arg>' ` while the list is
/// shorter than 128 bytes, each cut to what remains of those 128 (quotes and spaces
/// count), exactly as Redis's `sdscatprintf(args, "'%.*s' ", 128-sdslen(args), arg)`.
pub fn unknown_command_reply(args: Args<'_>) -> Bytes {
    let name = args.try_get(0).unwrap_or_default();
    let mut msg = Vec::with_capacity(64 + LIMIT * 2);
    msg.extend_from_slice(b"ERR unknown command '");
    msg.extend_from_slice(truncated(name, LIMIT));
    msg.extend_from_slice(b"', with args beginning with: ");
    let mut list_len = 0;
    for i in 1..args.len() {
        if list_len >= LIMIT {
            break;
        }
        let a = truncated(args.get(i), LIMIT - list_len);
        msg.push(b'\'');
        msg.extend_from_slice(a);
        msg.extend_from_slice(b"' ");
        list_len += a.len() + 3;
    }
    finish(msg)
}

/// `-ERR unknown subcommand '<sub>'. Try <CMD> HELP.\r\n`: `<sub>` is `args[1]` cut to
/// 128 bytes, `<CMD>` is `args[0]` as the client sent it, in ASCII upper case.
pub fn unknown_subcommand_reply(args: Args<'_>) -> Bytes {
    let cmd = c_str(args.try_get(0).unwrap_or_default());
    let sub = truncated(args.try_get(1).unwrap_or_default(), LIMIT);
    let mut msg = Vec::with_capacity(48 + cmd.len() + sub.len());
    msg.extend_from_slice(b"ERR unknown subcommand '");
    msg.extend_from_slice(sub);
    msg.extend_from_slice(b"'. Try ");
    msg.extend(cmd.iter().map(u8::to_ascii_uppercase));
    msg.extend_from_slice(b" HELP.");
    finish(msg)
}

/// `-ERR wrong number of arguments for '<name>' command\r\n`, with the command's
/// canonical lowercase name (`object|encoding` for a subcommand), whatever case the
/// client used.
pub fn wrong_arity_reply(cmd: &CommandInfo) -> Bytes {
    finish(format!("ERR wrong number of arguments for '{}' command", cmd.name).into_bytes())
}
