//! The wire scanners, with redis-protocol as the oracle:
//!
//! - the request scanner (`scan_request`) against redis-protocol's RESP2 decoder, on
//!   well-formed requests, every cut of them, and mutated bytes; `split_inline` on any
//!   line (no oracle: a round trip of quoted words, and no panic);
//! - the reply scanner (`scan_reply`, and the resumable `ReplyScan` the backend links
//!   use) against redis-protocol's RESP2 and RESP3 decoders, fed whole and cut into
//!   arbitrary chunks (the same end either way), under arbitrary reply limits, and on
//!   mutated bytes (never a panic, never a frame the oracle frames differently).

use super::config;
use proptest::collection::vec;
use proptest::prelude::*;
use redis_protocol::resp2::decode::decode_range as resp2_decode;
use redis_protocol::resp2::types::RangeFrame;
use redis_protocol::resp3::decode::complete::decode_range as resp3_decode;
use respgate::protocol::reply_scan::{ReplyError, ReplyScan};
use respgate::protocol::scan::{
    scan_reply, scan_request, split_inline, Request, RequestLimits, MAX_LINE,
};

fn bulk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn aggregate(tag: char, n: usize, items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("{tag}{n}\r\n").into_bytes();
    for i in items {
        out.extend_from_slice(i);
    }
    out
}

/// Bytes of a bulk payload: mostly short, sometimes CRLF-laden, sometimes long.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..16),
        1 => vec(prop_oneof![Just(b'\r'), Just(b'\n'), any::<u8>()], 0..16),
        1 => vec(any::<u8>(), 0..400),
    ]
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 :_.-]{0,12}"
}

/// Any RESP2 reply, nested.
fn resp2_reply() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        word().prop_map(|s| format!("+{s}\r\n").into_bytes()),
        word().prop_map(|s| format!("-ERR {s}\r\n").into_bytes()),
        any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
        payload().prop_map(|p| bulk(&p)),
        Just(b"$-1\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        vec(inner, 0..6).prop_map(|items| aggregate('*', items.len(), &items))
    })
}

/// Any RESP3 reply the oracle takes (maps keyed by simple strings, sets of integers).
fn resp3_reply() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        word().prop_map(|s| format!("+{s}\r\n").into_bytes()),
        word().prop_map(|s| format!("-ERR {s}\r\n").into_bytes()),
        any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
        payload().prop_map(|p| bulk(&p)),
        Just(b"_\r\n".to_vec()),
        any::<bool>().prop_map(|b| if b {
            b"#t\r\n".to_vec()
        } else {
            b"#f\r\n".to_vec()
        }),
        any::<f32>().prop_map(|f| format!(",{f}\r\n").into_bytes()),
        any::<i64>().prop_map(|n| format!("({n}\r\n").into_bytes()),
        word().prop_map(|w| format!("={}\r\ntxt:{w}\r\n", w.len() + 4).into_bytes()),
        word().prop_map(|w| format!("!{}\r\nERR {w}\r\n", w.len() + 4).into_bytes()),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(|items| aggregate('*', items.len(), &items)),
            vec(inner.clone(), 1..5).prop_map(|items| aggregate('>', items.len(), &items)),
            vec(any::<i32>(), 0..5).prop_map(|ints| {
                let items: Vec<Vec<u8>> = ints
                    .iter()
                    .map(|n| format!(":{n}\r\n").into_bytes())
                    .collect();
                aggregate('~', items.len(), &items)
            }),
            vec(inner, 0..4).prop_map(|values| {
                let mut items = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    items.push(format!("+k{i}\r\n").into_bytes());
                    items.push(v.clone());
                }
                aggregate('%', values.len(), &items)
            }),
        ]
    })
}

/// Feeds `bytes` to one resumable scanner in the pieces `cuts` makes; the first end it
/// finds.
fn scan_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Option<usize>, ReplyError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(bytes.len());
    points.sort_unstable();
    let mut scan = ReplyScan::new(1);
    for p in points {
        if let Some(len) = scan.scan(&bytes[..p], usize::MAX)? {
            return Ok(Some(len));
        }
    }
    Ok(None)
}

/// The properties every reply frame must have, `len` being the oracle's length.
fn check_reply(frame: &[u8], len: usize, cuts: &[usize], limit: usize) {
    assert_eq!(len, frame.len());
    let mut with_tail = frame.to_vec();
    with_tail.extend_from_slice(b"+NEXT\r\n");
    assert_eq!(scan_reply(&with_tail), Ok(Some(len)));
    assert_eq!(scan_in_pieces(&with_tail, cuts), Ok(Some(len)));
    for &cut in cuts {
        assert_eq!(scan_reply(&frame[..cut % len]), Ok(None));
    }
    // The bound: within it the same frame, over it refused, never a longer frame.
    let bounded = ReplyScan::new(1).scan(&with_tail, limit);
    if len <= limit {
        assert_eq!(bounded, Ok(Some(len)), "limit {limit}");
    } else {
        assert_eq!(bounded, Err(ReplyError::OverLimit), "limit {limit}");
    }
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn reply_scanner_agrees_with_redis_protocol_on_resp2(
        frame in resp2_reply(),
        cuts in vec(any::<usize>(), 0..6),
        limit in 0usize..600,
    ) {
        let (_, len) = resp2_decode(&frame).unwrap().unwrap();
        check_reply(&frame, len, &cuts, limit);
    }

    #[test]
    fn reply_scanner_agrees_with_redis_protocol_on_resp3(
        frame in resp3_reply(),
        cuts in vec(any::<usize>(), 0..6),
        limit in 0usize..600,
    ) {
        let (_, len) = resp3_decode(&frame).unwrap().unwrap();
        check_reply(&frame, len, &cuts, limit);
    }

    #[test]
    fn reply_scanner_never_panics_nor_frames_what_the_oracle_frames_otherwise(
        frame in prop_oneof![resp2_reply(), resp3_reply()],
        flips in vec((any::<usize>(), any::<u8>()), 1..4),
        cuts in vec(any::<usize>(), 0..4),
        limit in any::<usize>(),
    ) {
        let mut bytes = frame;
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        let whole = scan_reply(&bytes);
        if let Ok(Some(n)) = whole {
            prop_assert!(n <= bytes.len());
        }
        // In pieces: the same verdict on the same bytes.
        let pieces = scan_in_pieces(&bytes, &cuts);
        prop_assert_eq!(pieces.map_err(|_| ()), whole);
        if let Ok(Some(len)) = ReplyScan::new(1).scan(&bytes, limit) {
            prop_assert!(len <= limit);
        }
        if let (Ok(Some(n)), Ok(Some((_, len)))) = (whole, resp2_decode(&bytes)) {
            prop_assert_eq!(n, len);
        }
        if let (Ok(Some(n)), Ok(Some((_, len)))) = (whole, resp3_decode(&bytes)) {
            prop_assert_eq!(n, len);
        }
    }

    #[test]
    fn reply_scanner_takes_any_bytes(bytes in vec(any::<u8>(), 0..64), limit in any::<usize>()) {
        let _ = scan_reply(&bytes);
        let _ = ReplyScan::new(3).scan(&bytes, limit);
    }

    #[test]
    fn hostile_lengths_never_wrap(
        counts in vec((prop_oneof![Just('*'), Just('%'), Just('|'), Just('~'), Just('$')],
                       prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MAX / 2), -3i64..3]), 1..6),
        limit in any::<usize>(),
    ) {
        let mut bytes = Vec::new();
        for (tag, n) in &counts {
            bytes.extend_from_slice(format!("{tag}{n}\r\n").as_bytes());
        }
        // A count never wraps into a short frame: the frame found (when counts of 0
        // or -1 end it) lies within the bytes.
        if let Ok(Some(len)) = ReplyScan::new(1).scan(&bytes, limit) {
            prop_assert!(len <= bytes.len());
        }
    }
}

/// A request of `args` as clients send it.
fn request(args: &[Vec<u8>]) -> Vec<u8> {
    let items: Vec<Vec<u8>> = args.iter().map(|a| bulk(a)).collect();
    aggregate('*', args.len(), &items)
}

/// Quotes `word` so that `split_inline` gives it back: every byte as `\xHH`.
fn quoted(word: &[u8]) -> String {
    let mut out = String::from("\"");
    for b in word {
        out.push_str(&format!("\\x{b:02x}"));
    }
    out.push('"');
    out
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn request_scanner_agrees_with_redis_protocol(
        args in vec(payload(), 1..8),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let frame = request(&args);
        let (decoded, len) = resp2_decode(&frame).unwrap().unwrap();
        let RangeFrame::Array(items) = decoded else { panic!("not an array") };
        let mut ranges = Vec::new();
        let limits = RequestLimits::default();
        prop_assert_eq!(
            scan_request(&frame, &limits, &mut ranges),
            Ok(Some(Request::Multibulk { len }))
        );
        let oracle: Vec<&[u8]> = items
            .iter()
            .map(|i| match i {
                RangeFrame::BulkString((s, e)) => &frame[*s..*e],
                other => panic!("{other:?}"),
            })
            .collect();
        let ours: Vec<&[u8]> = ranges.iter().map(|r| &frame[r.start as usize..r.end as usize]).collect();
        prop_assert_eq!(ours, oracle);
        for cut in cuts {
            prop_assert_eq!(scan_request(&frame[..cut % len], &limits, &mut ranges), Ok(None));
        }
    }

    #[test]
    fn request_scanner_never_panics_nor_frames_what_the_oracle_frames_otherwise(
        args in vec(payload(), 1..6),
        flips in vec((any::<usize>(), any::<u8>()), 1..4),
        max_bulk in 0usize..64,
        max_request in 0usize..256,
    ) {
        let mut bytes = request(&args);
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        let mut ranges = Vec::new();
        let found = scan_request(&bytes, &RequestLimits::default(), &mut ranges);
        if let Ok(Some(Request::Multibulk { len })) = found {
            prop_assert!(len <= bytes.len());
            let mut at = 0;
            for r in &ranges {
                prop_assert!(r.start as usize >= at && r.start <= r.end && r.end as usize <= len);
                at = r.end as usize;
            }
            if let Ok(Some((RangeFrame::Array(items), olen))) = resp2_decode(&bytes) {
                if items.iter().all(|i| matches!(i, RangeFrame::BulkString(_))) {
                    prop_assert_eq!(len, olen);
                }
            }
        }
        if let Ok(Some(Request::Inline { len } | Request::Empty { len })) = found {
            prop_assert!(len <= bytes.len());
        }
        // Limits: a framed request is within them.
        for pre_auth in [false, true] {
            let limits = RequestLimits { max_bulk, max_request, pre_auth };
            if let Ok(Some(Request::Multibulk { len })) = scan_request(&bytes, &limits, &mut ranges) {
                prop_assert!(len <= max_request);
                prop_assert!(ranges.iter().all(|r| (r.end - r.start) as usize <= max_bulk));
                if pre_auth {
                    // Before login, Redis 7.0's own limits (10 arguments, 16384 bytes).
                    prop_assert!(ranges.len() <= 10);
                    prop_assert!(ranges.iter().all(|r| (r.end - r.start) as usize <= 16384));
                }
            }
        }
    }

    #[test]
    fn request_scanner_takes_any_bytes(bytes in vec(any::<u8>(), 0..64)) {
        let mut ranges = Vec::new();
        let _ = scan_request(&bytes, &RequestLimits::default(), &mut ranges);
        let _ = split_inline(&bytes);
    }

    #[test]
    fn inline_words_come_back_as_sent(
        words in vec(vec(any::<u8>(), 0..10), 0..6),
        plain in vec("[a-zA-Z0-9]{1,8}", 0..6),
        gaps in vec(prop_oneof![Just(" "), Just("  "), Just("\t"), Just(" \t ")], 6),
    ) {
        let line = words.iter().map(|w| quoted(w)).collect::<Vec<_>>().join(" ");
        prop_assert_eq!(split_inline(line.as_bytes()), Ok(words.clone()));
        let mut spaced = String::new();
        for (w, g) in plain.iter().zip(&gaps) {
            spaced.push_str(g);
            spaced.push_str(w);
        }
        let want: Vec<Vec<u8>> = plain.iter().map(|w| w.as_bytes().to_vec()).collect();
        prop_assert_eq!(split_inline(spaced.as_bytes()), Ok(want.clone()));
        // Framed as one inline line (or nothing, when it has no words).
        let mut framed = spaced.clone().into_bytes();
        framed.extend_from_slice(b"\r\n");
        let mut ranges = Vec::new();
        let found = scan_request(&framed, &RequestLimits::default(), &mut ranges);
        if plain.is_empty() {
            prop_assert_eq!(found, Ok(Some(Request::Empty { len: framed.len() })));
        } else if framed[0] != b'*' {
            prop_assert_eq!(found, Ok(Some(Request::Inline { len: framed.len() })));
        }
        prop_assert!(framed.len() < MAX_LINE);
    }
}
