use super::*;

const CHUNK: usize = 64 * 1024;

/// `*n` of `n` short bulks: what `LRANGE` of an `n`-element list sends.
fn lrange_reply(n: usize) -> Vec<u8> {
    let mut out = format!("*{n}\r\n").into_bytes();
    for i in 0..n {
        let v = format!("v{}", i % 1000);
        out.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    out
}

/// Feeds `reply` as a link reads it (`chunk` bytes at a time, appended to one buffer)
/// to one scanner that resumes; returns its result and the header bytes it examined.
fn resumed(reply: &[u8], chunk: usize) -> (Option<usize>, u64) {
    let mut scan = ReplyScan::new(1);
    let mut have = 0;
    loop {
        have = (have + chunk).min(reply.len());
        match scan.scan(&reply[..have], usize::MAX).unwrap() {
            Some(len) => return (Some(len), scan.examined()),
            None if have == reply.len() => return (None, scan.examined()),
            None => {}
        }
    }
}

#[test]
fn framing_a_two_million_element_reply_examines_each_byte_about_once() {
    let reply = lrange_reply(2_000_000);
    let (len, examined) = resumed(&reply, CHUNK);
    assert_eq!(len, Some(reply.len()));
    // Only header bytes are examined (payloads are jumped over), each once, plus at
    // most one byte again per read that cut a header.
    assert!(
        examined <= reply.len() as u64,
        "examined {examined} bytes of a {} byte reply",
        reply.len()
    );
}

#[test]
fn the_work_counter_tells_rescanning_from_resuming() {
    // What a stateless scanner does (main before the fix): every read frames the
    // buffer from its start again. Quadratic: the counter shows it.
    let reply = lrange_reply(200_000);
    let mut rescanned = 0;
    let mut have = 0;
    while have < reply.len() {
        have = (have + CHUNK).min(reply.len());
        let mut fresh = ReplyScan::new(1);
        let _ = fresh.scan(&reply[..have], usize::MAX).unwrap();
        rescanned += fresh.examined();
    }
    let (_, examined) = resumed(&reply, CHUNK);
    // 33 reads: rescanning examines each header ~16 times.
    assert!(
        rescanned > 8 * examined,
        "rescanning examined {rescanned}, resuming {examined}"
    );
}

#[test]
fn a_header_line_arriving_byte_by_byte_is_examined_once() {
    let mut reply = b"*2\r\n+".to_vec();
    reply.extend(std::iter::repeat_n(b'a', 100_000));
    reply.extend_from_slice(b"\r\n$3\r\nxyz\r\n");
    let (len, examined) = resumed(&reply, 1);
    assert_eq!(len, Some(reply.len()));
    assert!(examined <= reply.len() as u64 + 16, "examined {examined}");
}

#[test]
fn every_cut_gives_the_same_end() {
    let reply = b"*3\r\n%1\r\n+k\r\n$5\r\nab\r\nc\r\n|1\r\n+a\r\n+b\r\n:1\r\n_\r\n+NEXT\r\n";
    let full = reply.len() - 7;
    for chunk in 1..reply.len() {
        assert_eq!(resumed(reply, chunk).0, Some(full), "chunk {chunk}");
    }
}

#[test]
fn a_run_of_replies_is_framed_as_one() {
    let mut scan = ReplyScan::new(3);
    assert_eq!(scan.scan(b"+a\r\n$1\r\nb\r\n", usize::MAX), Ok(None));
    assert_eq!(
        scan.scan(b"+a\r\n$1\r\nb\r\n*1\r\n:1\r\n+d\r\n", usize::MAX),
        Ok(Some(19))
    );
    assert!(scan.is_done());
    scan.restart(1);
    assert_eq!(scan.scan(b"+d\r\n", usize::MAX), Ok(Some(4)));
}

#[test]
fn hostile_counts_cannot_wrap_the_owed_count() {
    let huge = b"*9223372036854775807\r\n";
    let mut nested = Vec::new();
    for _ in 0..4 {
        nested.extend_from_slice(huge);
    }
    // Without a limit the sum overflows: not RESP, never a short frame.
    assert_eq!(
        ReplyScan::new(1).scan(&nested, usize::MAX),
        Err(ReplyError::NotResp)
    );
    let maps = b"%9223372036854775807\r\n%9223372036854775807\r\n|9223372036854775807\r\n";
    assert_eq!(
        ReplyScan::new(1).scan(maps, usize::MAX),
        Err(ReplyError::NotResp)
    );
    // With one, the first header is already over it.
    assert_eq!(
        ReplyScan::new(1).scan(huge, 1 << 20),
        Err(ReplyError::OverLimit)
    );
    assert_eq!(
        ReplyScan::new(1).scan(b"$9223372036854775807\r\n", 1 << 20),
        Err(ReplyError::OverLimit)
    );
    // A bulk that large is merely incomplete when nothing bounds it.
    assert_eq!(
        ReplyScan::new(1).scan(b"$9223372036854775807\r\nab", usize::MAX),
        Ok(None)
    );
    assert_eq!(
        ReplyScan::new(2).scan(
            b"$9223372036854775807\r\n$9223372036854775807\r\n",
            usize::MAX
        ),
        Ok(None)
    );
}

#[test]
fn negative_lengths_other_than_minus_one_are_not_resp() {
    for bad in [
        &b"*-2\r\n"[..],
        b"$-2\r\n",
        b"%-1\r\n",
        b"|-1\r\n",
        b"~-5\r\n",
        b"$-9223372036854775808\r\n",
        b"*1x\r\n",
        b"$\r\n",
        b"?\r\n",
    ] {
        assert_eq!(
            ReplyScan::new(1).scan(bad, usize::MAX),
            Err(ReplyError::NotResp),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(ReplyScan::new(1).scan(b"*-1\r\n", 100), Ok(Some(5)));
    assert_eq!(ReplyScan::new(1).scan(b"$-1\r\n", 100), Ok(Some(5)));
}

#[test]
fn an_endless_length_line_is_not_resp() {
    let mut line = b"*".to_vec();
    line.extend(std::iter::repeat_n(b'1', 40));
    assert_eq!(
        ReplyScan::new(1).scan(&line, usize::MAX),
        Err(ReplyError::NotResp)
    );
    // A simple string may be long; the limit bounds it.
    let mut line = b"+".to_vec();
    line.extend(std::iter::repeat_n(b'a', 40));
    assert_eq!(ReplyScan::new(1).scan(&line, usize::MAX), Ok(None));
    assert_eq!(
        ReplyScan::new(1).scan(&line, 32),
        Err(ReplyError::OverLimit)
    );
}

#[test]
fn over_the_limit_is_known_from_headers_and_the_end_found_after() {
    let reply = b"*3\r\n$10\r\n0123456789\r\n:1\r\n:2\r\n+NEXT\r\n";
    let end = reply.len() - 7;
    let mut scan = ReplyScan::new(1);
    // The bulk's header announces more than 12 bytes before its payload is here.
    assert_eq!(scan.scan(&reply[..9], 12), Err(ReplyError::OverLimit));
    // Discarding as the rest streams in: drop what is framed, keep scanning.
    let mut buf = reply[..9].to_vec();
    let mut fed = 9;
    let mut dropped = 0;
    loop {
        match scan.scan(&buf, usize::MAX).unwrap() {
            Some(len) => {
                assert_eq!(dropped + len, end);
                break;
            }
            None => {
                let n = scan.framed().min(buf.len());
                buf.drain(..n);
                scan.consume(n);
                dropped += n;
                buf.push(reply[fed]);
                fed += 1;
            }
        }
    }
    // An aggregate announcing more values than can fit.
    assert_eq!(
        ReplyScan::new(1).scan(b"*1000\r\n", 1000),
        Err(ReplyError::OverLimit)
    );
    assert_eq!(ReplyScan::new(1).scan(b"*300\r\n", 1000), Ok(None));
}

#[test]
fn a_complete_run_over_the_limit_is_refused_even_when_only_simple_lines_made_it() {
    // Found by tests/fuzz (scanners): a frame ending in simple lines was framed whole
    // though longer than the limit.
    let reply = b"*2\r\n+aaaaaaaaaaaaaaaa\r\n:123456789\r\n";
    assert_eq!(
        ReplyScan::new(1).scan(reply, reply.len()),
        Ok(Some(reply.len()))
    );
    assert_eq!(
        ReplyScan::new(1).scan(reply, reply.len() - 1),
        Err(ReplyError::OverLimit)
    );
    assert_eq!(
        ReplyScan::new(1).scan(b"+OK\r\n", 4),
        Err(ReplyError::OverLimit)
    );
}
