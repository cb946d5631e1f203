#!/usr/bin/env python3
"""Reproduces issue 13's findings 1-3 against a running respgate and reports its RSS.

Driven by loadtest/rss.sh (which starts the cluster and the respgate under test); can be
pointed at any respgate whose user `ops` has password `ops-pw` and all keys/channels.
Python 3 standard library only. Every socket operation has a timeout.

Phases (each holds its clients for --hold seconds, sampling RSS every 50 ms):
  unauth   N connections that never log in, each sending a partial
           `AUTH ops <--auth-bytes>` (finding 1), plus one 1M-argument request
  slow     3 logged-in connections pipelining --gets GETs of a --value-bytes value and
           never reading (finding 2)
  pubsub   one subscriber that never reads, and --publishes PUBLISHes of --value-bytes
           (finding 3)
Meanwhile a well-behaved client (a separate process) does SET/GET round trips every
10 ms; its p50/p99/max latency and errors are reported. After the phases every client
is closed and RSS is read again after --settle seconds.
"""
import argparse
import os
import socket
import subprocess
import sys
import threading
import time

PASSWORD = b"ops-pw"


def cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Sampler:
    """Peak VmRSS of `pid` while running."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return
            time.sleep(0.05)

    def done(self):
        self.stop.set()
        self.t.join()
        return self.peak


def connect(addr, timeout=10.0, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(addr)
    return s


def read_reply(s, buf=b""):
    """One simple reply (+, -, :, $); returns (reply, rest)."""
    while b"\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    line, rest = buf.split(b"\r\n", 1)
    if line[:1] == b"$" and int(line[1:]) >= 0:
        n = int(line[1:])
        while len(rest) < n + 2:
            chunk = s.recv(max(65536, n + 2 - len(rest)))
            if not chunk:
                raise ConnectionError("closed")
            rest += chunk
        return line + b"\r\n" + rest[: n + 2], rest[n + 2 :]
    if line[:1] == b"*":
        # Subscribe confirmation: 3 elements.
        out = line + b"\r\n"
        for _ in range(int(line[1:])):
            r, rest = read_reply(s, rest)
            out += r
        return out, rest
    return line + b"\r\n", rest


def login(addr, **kw):
    s = connect(addr, **kw)
    s.sendall(cmd("AUTH", "ops", PASSWORD))
    r, _ = read_reply(s)
    if r != b"+OK\r\n":
        raise RuntimeError(f"AUTH: {r!r}")
    return s


def send_quietly(s, data):
    """sendall that stops at the first error (respgate may close the connection)."""
    try:
        s.sendall(data)
        return True
    except OSError:
        return False


def phase_unauth(addr, a):
    conns, threads = [], []
    head = b"*3\r\n$4\r\nAUTH\r\n$3\r\nops\r\n$%d\r\n" % a.auth_bytes
    body = b"p" * (a.auth_bytes - 1)  # one byte short: the request never completes

    def one():
        try:
            s = connect(addr, timeout=30)
        except OSError:
            return
        conns.append(s)
        if send_quietly(s, head):
            send_quietly(s, body)

    for _ in range(a.unauth):
        t = threading.Thread(target=one, daemon=True)
        t.start()
        threads.append(t)

    def many_args():
        try:
            s = connect(addr, timeout=30)
        except OSError:
            return
        conns.append(s)
        n = 1_000_000
        if send_quietly(s, b"*%d\r\n" % n):
            send_quietly(s, b"$1\r\na\r\n" * (n - 1))

    t = threading.Thread(target=many_args, daemon=True)
    t.start()
    threads.append(t)
    for t in threads:
        t.join(timeout=a.hold + 60)
    time.sleep(a.hold)
    return conns


def phase_slow(addr, a):
    s = login(addr)
    value = b"v" * a.value_bytes
    s.sendall(cmd("SET", "rss:big", value))
    r, _ = read_reply(s)
    assert r == b"+OK\r\n", r
    s.close()
    conns = []
    pipeline = cmd("GET", "rss:big") * a.gets
    for _ in range(3):
        c = login(addr, rcvbuf=4096)
        c.setblocking(False)
        # Whatever the proxy reads of it; never a byte read back.
        try:
            c.send(pipeline)
        except OSError:
            pass
        conns.append(c)
    time.sleep(a.hold)
    return conns


def phase_pubsub(addr, a):
    sub = login(addr, rcvbuf=4096)
    sub.sendall(cmd("SUBSCRIBE", "rss:news"))
    read_reply(sub)
    pub = login(addr)
    message = b"m" * a.value_bytes
    deadline = time.time() + a.hold * 4
    sent = 0
    for _ in range(a.publishes):
        if time.time() > deadline:
            break
        pub.sendall(cmd("PUBLISH", "rss:news", message))
        read_reply(pub)
        sent += 1
    time.sleep(a.hold)
    return [sub, pub], sent


def probe(addr, stop_path):
    """The well-behaved client: SET/GET round trips every 10 ms until `stop_path` exists."""
    lat, errors = [], 0
    s = login(addr)
    i = 0
    while not os.path.exists(stop_path):
        v = str(i).encode()
        t0 = time.perf_counter()
        try:
            s.sendall(cmd("SET", "rss:probe", v))
            r1, rest = read_reply(s)
            s.sendall(cmd("GET", "rss:probe"))
            r2, _ = read_reply(s, rest)
            if r1 != b"+OK\r\n" or r2 != b"$%d\r\n%s\r\n" % (len(v), v):
                errors += 1
        except (OSError, ConnectionError):
            errors += 1
            try:
                s = login(addr)
            except OSError:
                time.sleep(0.1)
            continue
        lat.append((time.time(), (time.perf_counter() - t0) * 1000))
        i += 1
        time.sleep(0.01)
    print(f"errors {errors}")
    for t, ms in lat:
        print(f"{t:.3f} {ms:.3f}")


def latency_summary(samples, t0=None, t1=None):
    """'N round trips, p50, p99, max' of the (time, ms) samples within [t0, t1]."""
    lat = sorted(ms for t, ms in samples if (t0 is None or t >= t0) and (t1 is None or t <= t1))
    if not lat:
        return "no round trips"

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p))]

    return f"{len(lat)} round trips, p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, max {lat[-1]:.2f} ms"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("addr", help="host:port of respgate")
    p.add_argument("--pid", type=int, required=False, help="respgate's pid (for RSS)")
    p.add_argument("--unauth", type=int, default=100)
    p.add_argument("--auth-bytes", type=int, default=15_000_000)
    p.add_argument("--gets", type=int, default=300)
    p.add_argument("--value-bytes", type=int, default=1_000_000)
    p.add_argument("--publishes", type=int, default=300)
    p.add_argument("--hold", type=float, default=5.0)
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--probe", metavar="STOPFILE", help=argparse.SUPPRESS)
    a = p.parse_args()
    host, port = a.addr.rsplit(":", 1)
    addr = (host, int(port))
    if a.probe:
        probe(addr, a.probe)
        return
    pid = a.pid
    stop = f"/tmp/rss-probe-stop-{os.getpid()}"
    probe_proc = subprocess.Popen(
        [sys.executable, __file__, a.addr, "--probe", stop], stdout=subprocess.PIPE, text=True
    )
    print(f"respgate RSS at start: {rss_kib(pid) // 1024} MiB")
    rows, windows = [], []
    for name, run in [
        (f"unauth: {a.unauth} x partial AUTH of {a.auth_bytes} B + one *1000000", phase_unauth),
        (f"slow: 3 x {a.gets} pipelined GET of {a.value_bytes} B, never read", phase_slow),
        (f"pubsub: 1 non-reading subscriber, {a.publishes} x PUBLISH {a.value_bytes} B", phase_pubsub),
    ]:
        sampler = Sampler(pid)
        t0 = time.time()
        windows.append((t0, None))
        out = run(addr, a)
        extra = ""
        if isinstance(out, tuple):
            out, sent = out
            extra = f" ({sent} published)"
        peak = sampler.done()
        for c in out:
            try:
                c.close()
            except OSError:
                pass
        time.sleep(1)
        windows[-1] = (t0, time.time())
        rows.append((name + extra, peak // 1024, rss_kib(pid) // 1024, time.time() - t0))
    time.sleep(a.settle)
    after = rss_kib(pid) // 1024
    open(stop, "w").close()
    probe_out = probe_proc.communicate(timeout=30)[0]
    os.unlink(stop)
    lines = probe_out.split("\n")
    samples = [tuple(map(float, l.split())) for l in lines[1:] if l.strip()]
    for (name, peak, closed, secs), (t0, t1) in zip(rows, windows):
        print(f"{name}: peak RSS {peak} MiB, 1 s after close {closed} MiB ({secs:.0f} s)")
        print(f"    well-behaved client meanwhile: {latency_summary(samples, t0, t1)}")
    print(f"respgate peak RSS (VmHWM): {rss_kib(pid, 'VmHWM') // 1024} MiB")
    print(f"respgate RSS {a.settle:.0f} s after every client closed: {after} MiB")
    print(f"well-behaved client, whole run: {latency_summary(samples)}, {lines[0]}")


if __name__ == "__main__":
    main()
