//! Framing cost: respgate's header scanners against redis-protocol's general decoder.
//!
//! This is the measurement behind the choice in `protocol::scan` (see
//! docs/ARCHITECTURE.md): run `cargo bench --bench framing`.

use criterion::{criterion_group, criterion_main, Criterion};
use redis_protocol::resp2::decode::decode_range;
use respgate::cluster::key_slot;
use respgate::protocol::reply_scan::ReplyScan;
use respgate::protocol::scan::{scan_reply, scan_request, RequestLimits};
use std::hint::black_box;

fn framing(c: &mut Criterion) {
    let get = b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000012345\r\n";
    let set = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000012345\r\n$3\r\nxxx\r\n";
    let bulk_reply = b"$3\r\nxxx\r\n";
    let array_reply = b"*3\r\n$1\r\na\r\n:1\r\n*2\r\n+x\r\n$-1\r\n";
    let limits = RequestLimits::default();
    let mut ranges = Vec::with_capacity(8);

    c.bench_function("scan_request GET", |b| {
        b.iter(|| scan_request(black_box(get), &limits, &mut ranges).unwrap())
    });
    c.bench_function("redis-protocol decode_range GET", |b| {
        b.iter(|| decode_range(black_box(get)).unwrap())
    });
    c.bench_function("scan_request SET", |b| {
        b.iter(|| scan_request(black_box(set), &limits, &mut ranges).unwrap())
    });
    c.bench_function("redis-protocol decode_range SET", |b| {
        b.iter(|| decode_range(black_box(set)).unwrap())
    });
    c.bench_function("scan_reply bulk", |b| {
        b.iter(|| scan_reply(black_box(bulk_reply)).unwrap())
    });
    c.bench_function("scan_reply nested array", |b| {
        b.iter(|| scan_reply(black_box(array_reply)).unwrap())
    });
    // What a backend link does per reply: restart its resumable scanner, frame, under
    // the `cluster.max_reply_bytes` bound.
    let mut scan = ReplyScan::new(1);
    c.bench_function("ReplyScan bulk", |b| {
        b.iter(|| {
            scan.restart(1);
            scan.scan(black_box(bulk_reply), 512 << 20).unwrap()
        })
    });
    c.bench_function("ReplyScan nested array", |b| {
        b.iter(|| {
            scan.restart(1);
            scan.scan(black_box(array_reply), 512 << 20).unwrap()
        })
    });
    c.bench_function("redis-protocol decode_range nested array", |b| {
        b.iter(|| decode_range(black_box(array_reply)).unwrap())
    });
    c.bench_function("key_slot 16 bytes", |b| {
        b.iter(|| key_slot(black_box(b"key:000000012345")))
    });
}

criterion_group!(benches, framing);
criterion_main!(benches);
