//! Differential check of respgate's hot-path scanners against redis-protocol.
//!
//! `protocol::scan` frames requests and replies without building frames; redis-protocol's
//! decoders are the oracle. Random well-formed frames (nested, RESP2 and RESP3), every
//! truncation of them, and random byte flips must give the same verdict: the same frame
//! length when complete, "need more" when cut short. A cheap, deterministic fuzz that
//! runs in the normal test suite (fixed seeds, bounded count).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis_protocol::resp2::decode::decode_range as resp2_decode;
use redis_protocol::resp3::decode::complete::decode_range as resp3_decode;
use respgate::protocol::scan::{scan_reply, scan_request, Request, RequestLimits};

fn bulk(rng: &mut StdRng, out: &mut Vec<u8>) {
    let len = if rng.random_bool(0.1) {
        rng.random_range(0..300)
    } else {
        rng.random_range(0..12)
    };
    let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    out.extend_from_slice(format!("${len}\r\n").as_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\r\n");
}

fn word(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..10);
    (0..n)
        .map(|_| rng.random_range(b'a'..=b'z') as char)
        .collect()
}

/// A random RESP2 reply value, nested up to `depth`.
fn resp2_value(rng: &mut StdRng, depth: u32, out: &mut Vec<u8>) {
    match rng.random_range(0..if depth == 0 { 5 } else { 6 }) {
        0 => out.extend_from_slice(format!("+{}\r\n", word(rng)).as_bytes()),
        1 => out.extend_from_slice(format!("-ERR {}\r\n", word(rng)).as_bytes()),
        2 => out.extend_from_slice(format!(":{}\r\n", rng.random::<i64>()).as_bytes()),
        3 => bulk(rng, out),
        4 => out.extend_from_slice(if rng.random_bool(0.5) {
            b"$-1\r\n"
        } else {
            b"*-1\r\n"
        }),
        _ => {
            let n = rng.random_range(0..5);
            out.extend_from_slice(format!("*{n}\r\n").as_bytes());
            for _ in 0..n {
                resp2_value(rng, depth - 1, out);
            }
        }
    }
}

/// A random RESP3 reply value (maps, sets, pushes, doubles, nulls, verbatim strings).
fn resp3_value(rng: &mut StdRng, depth: u32, out: &mut Vec<u8>) {
    match rng.random_range(0..if depth == 0 { 8 } else { 11 }) {
        0 => out.extend_from_slice(format!("+{}\r\n", word(rng)).as_bytes()),
        1 => out.extend_from_slice(format!(":{}\r\n", rng.random::<i32>()).as_bytes()),
        2 => bulk(rng, out),
        3 => out.extend_from_slice(b"_\r\n"),
        4 => out.extend_from_slice(format!(",{}\r\n", rng.random::<f32>()).as_bytes()),
        5 => out.extend_from_slice(if rng.random_bool(0.5) {
            b"#t\r\n"
        } else {
            b"#f\r\n"
        }),
        6 => {
            let w = word(rng);
            out.extend_from_slice(format!("={}\r\ntxt:{w}\r\n", w.len() + 4).as_bytes());
        }
        7 => out.extend_from_slice(format!("({}\r\n", rng.random::<u32>()).as_bytes()),
        k => {
            let n = rng.random_range(0..4);
            let (tag, items) = match k {
                8 => ('*', n),
                9 => ('~', n),
                _ => ('%', 2 * n),
            };
            out.extend_from_slice(format!("{tag}{n}\r\n").as_bytes());
            for i in 0..items {
                if tag == '%' && i % 2 == 0 {
                    // The oracle only takes hashable map keys.
                    out.extend_from_slice(format!("+k{i}{}\r\n", word(rng)).as_bytes());
                } else if tag == '~' {
                    out.extend_from_slice(format!(":{}\r\n", rng.random::<i32>()).as_bytes());
                } else {
                    resp3_value(rng, depth - 1, out);
                }
            }
        }
    }
}

fn request(rng: &mut StdRng) -> Vec<u8> {
    let n = rng.random_range(1..6);
    let mut out = format!("*{n}\r\n").into_bytes();
    for _ in 0..n {
        bulk(rng, &mut out);
    }
    out
}

#[test]
fn reply_scanner_agrees_with_redis_protocol_on_resp2() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..3000 {
        let mut frame = Vec::new();
        resp2_value(&mut rng, 3, &mut frame);
        let (_, len) = resp2_decode(&frame).unwrap().unwrap();
        assert_eq!(len, frame.len());
        assert_eq!(
            scan_reply(&frame),
            Ok(Some(len)),
            "{:?}",
            String::from_utf8_lossy(&frame)
        );
        for cut in 0..frame.len() {
            assert!(resp2_decode(&frame[..cut]).unwrap().is_none());
            assert_eq!(scan_reply(&frame[..cut]), Ok(None));
        }
    }
}

#[test]
fn reply_scanner_agrees_with_redis_protocol_on_resp3() {
    let mut rng = StdRng::seed_from_u64(0x3333);
    for _ in 0..3000 {
        let mut frame = Vec::new();
        resp3_value(&mut rng, 3, &mut frame);
        let (_, len) = resp3_decode(&frame).unwrap().unwrap();
        assert_eq!(
            scan_reply(&frame),
            Ok(Some(len)),
            "{:?}",
            String::from_utf8_lossy(&frame)
        );
        for cut in 0..frame.len() {
            assert_eq!(scan_reply(&frame[..cut]), Ok(None));
        }
    }
}

#[test]
fn request_scanner_agrees_with_redis_protocol() {
    let mut rng = StdRng::seed_from_u64(0xabc);
    let limits = RequestLimits::default();
    let mut ranges = Vec::new();
    for _ in 0..3000 {
        let frame = request(&mut rng);
        let (_, len) = resp2_decode(&frame).unwrap().unwrap();
        assert_eq!(
            scan_request(&frame, &limits, &mut ranges),
            Ok(Some(Request::Multibulk { len }))
        );
        for cut in 0..frame.len() {
            assert_eq!(scan_request(&frame[..cut], &limits, &mut ranges), Ok(None));
        }
    }
}

#[test]
fn corrupted_bytes_never_make_the_scanners_claim_more_than_the_oracle() {
    // With random corruption the two may disagree on *why* a frame is bad, but when the
    // oracle decodes a complete frame the scanners must frame exactly the same bytes,
    // and the scanners must never panic or read past the buffer.
    let mut rng = StdRng::seed_from_u64(0xbad);
    let limits = RequestLimits::default();
    let mut ranges = Vec::new();
    for _ in 0..20000 {
        let mut frame = Vec::new();
        if rng.random_bool(0.5) {
            resp2_value(&mut rng, 2, &mut frame);
        } else {
            frame = request(&mut rng);
        }
        let flips = rng.random_range(1..3);
        for _ in 0..flips {
            let i = rng.random_range(0..frame.len());
            frame[i] = rng.random();
        }
        let reply = scan_reply(&frame);
        let req = scan_request(&frame, &limits, &mut ranges);
        if let Ok(Some((_, len))) = resp2_decode(&frame) {
            if let Ok(Some(n)) = reply {
                assert_eq!(n, len, "{:?}", String::from_utf8_lossy(&frame));
            }
            if let Ok(Some(Request::Multibulk { len: n })) = req {
                assert_eq!(n, len, "{:?}", String::from_utf8_lossy(&frame));
            }
        }
    }
}
