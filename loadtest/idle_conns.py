#!/usr/bin/env python3
"""Memory cost of idle client connections on respgate (python3 standard library only).

Acceptance target: with 10,000 idle client connections, respgate's RSS grows by at most
16 KiB per connection.

It reads respgate's VmRSS from /proc/PID/status, opens N TCP connections to respgate,
sends one PING on each and reads +PONG (so every session is fully set up, not merely
accepted by the kernel), waits, reads VmRSS again, and prints the growth in total and per
connection with PASS or MISS. Then it closes everything.

respgate needs about N + 100 file descriptors (its default `max_clients` is 10,000, so
more than 10,000 connections get refused): start it with a raised limit, as
loadtest/idle.sh does, or raise it with `prlimit --pid PID --nofile=20000:20000`. This
script raises its own soft RLIMIT_NOFILE to the hard limit.

Usage: idle_conns.py [--pid PID] [-n 10000] [HOST:PORT]
  Without --pid, the process listening on PORT is found through /proc/net/tcp, and
  failing that with `pgrep -x respgate` (if exactly one runs).
Exit: 0 done (PASS or MISS), 1 MISS with --strict, 2 something broke.
"""

import argparse
import os
import resource
import socket
import subprocess
import sys
import time

TARGET_KIB_PER_CONN = 16.0
PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"
BATCH = 100  # connections set up at a time: under the listen backlog (128 for respgate today)


class Broke(Exception):
    pass


def status_kib(pid, field):
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        raise Broke(f"process {pid} is gone")
    raise Broke(f"no {field} in /proc/{pid}/status")


def status_field(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return "?"


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def nofile_limit(pid):
    """Soft 'Max open files' of another process, or None if unreadable."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    v = line.split()[3]
                    return None if v == "unlimited" else int(v)
    except OSError:
        pass
    return None


def listener_pid(port):
    """Pid of the process with a listening TCP socket on `port`, via /proc/net/tcp{,6}."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, state, inode = cols[1], cols[3], cols[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{inode}]")
        except OSError:
            continue
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def find_pid(port):
    pid = listener_pid(port)
    if pid is not None:
        return pid
    try:
        out = subprocess.run(["pgrep", "-x", "respgate"], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:
        out = []
    if len(out) == 1:
        return int(out[0])
    raise Broke(f"cannot tell which process serves port {port} (pgrep -x respgate: {out or 'none'}); pass --pid")


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < need:
        raise Broke(f"RLIMIT_NOFILE is {soft} (hard {hard}), need {need}: raise it (ulimit -n) first")
    return soft


def open_sessions(host, port, n, deadline):
    """Opens n connections, each answered +PONG to a PING. Returns the sockets."""
    socks = []
    try:
        while len(socks) < n:
            batch = []
            for _ in range(min(BATCH, n - len(socks))):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Broke(f"time is up after {len(socks) + len(batch)} connections")
                s = socket.create_connection((host, port), timeout=min(left, 10))
                batch.append(s)
            for s in batch:
                s.sendall(PING)
            for s in batch:
                buf = b""
                while len(buf) < len(PONG):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Broke(f"time is up waiting for PONG on connection {len(socks) + 1}")
                    s.settimeout(min(left, 10))
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    buf += chunk
                if buf != PONG:
                    if b"max number of clients" in buf:
                        raise Broke(f"respgate refused connection {len(socks) + 1}: {buf!r} "
                                    "(server.max_clients, 10,000 by default)")
                    raise Broke(f"connection {len(socks) + 1}: expected +PONG, got {buf!r}")
                socks.append(s)
            batch = []
    except OSError as e:
        for s in socks + batch:
            s.close()
        raise Broke(f"after {len(socks)} connections: {e}")
    except Broke:
        for s in socks + batch:
            s.close()
        raise
    return socks


def main():
    ap = argparse.ArgumentParser(description="RSS growth of respgate per idle client connection.")
    ap.add_argument("addr", nargs="?", default="127.0.0.1:6380", help="respgate HOST:PORT (default 127.0.0.1:6380)")
    ap.add_argument("--pid", type=int, help="respgate's pid (default: the process listening on PORT)")
    ap.add_argument("-n", "--connections", type=int, default=10000, help="idle connections to open (default 10000)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before the second reading (default 2)")
    ap.add_argument("--timeout", type=float, default=120.0, help="give up setting up after this many seconds (default 120)")
    ap.add_argument("--strict", action="store_true", help="exit 1 on MISS")
    a = ap.parse_args()

    host, _, port = a.addr.rpartition(":")
    host, port = host.strip("[]") or "127.0.0.1", int(port)
    if not 1 <= a.connections <= 100000:
        raise Broke("-n must be within 1..100000")
    pid = a.pid if a.pid is not None else find_pid(port)
    comm = open(f"/proc/{pid}/comm").read().strip() if os.path.exists(f"/proc/{pid}/comm") else "?"
    raise_nofile(a.connections + 64)
    theirs = nofile_limit(pid)
    if theirs is not None and theirs < a.connections + 100:
        print(f"warning: pid {pid} may open only {theirs} files; {a.connections} connections need about "
              f"{a.connections + 100} (prlimit --pid {pid} --nofile=N:N)", file=sys.stderr)

    # Warm-up: one full session, so lazily built one-time state is in the baseline.
    for s in open_sessions(host, port, 1, time.monotonic() + 10):
        s.close()
    time.sleep(0.5)

    fds0 = fd_count(pid)
    rss0 = status_kib(pid, "VmRSS")
    print(f"respgate pid {pid} ({comm}) at {host}:{port}: VmRSS {rss0} KiB, {fds0} fds, "
          f"{status_field(pid, 'Threads')} threads, before")
    t0 = time.monotonic()
    socks = open_sessions(host, port, a.connections, t0 + a.timeout)
    try:
        setup = time.monotonic() - t0
        print(f"opened {len(socks)} connections, each answered PING with +PONG, in {setup:.1f} s; "
              f"waiting {a.settle:g} s")
        time.sleep(a.settle)
        rss1 = status_kib(pid, "VmRSS")
        fds1 = fd_count(pid)
        hwm = status_kib(pid, "VmHWM")
        # Still connected? A closed connection would be readable (EOF); a live idle one is not.
        dead = 0
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    dead += 1
            except BlockingIOError:
                pass
            except OSError:
                dead += 1
    finally:
        for s in socks:
            s.close()

    growth = rss1 - rss0
    per = growth / a.connections
    verdict = "PASS" if per <= TARGET_KIB_PER_CONN else "MISS"
    print(f"respgate: VmRSS {rss1} KiB (peak VmHWM {hwm} KiB), {fds1} fds "
          f"(+{fds1 - fds0}), {status_field(pid, 'Threads')} threads, with {a.connections} idle connections"
          + (f"; {dead} of them closed by the server" if dead else ""))
    print(f"RSS growth: {growth} KiB total = {per:.2f} KiB per connection")
    print(f"{verdict}  {per:.2f} KiB/connection <= {TARGET_KIB_PER_CONN:g} KiB")
    time.sleep(1.0)
    try:
        print(f"after closing all: VmRSS {status_kib(pid, 'VmRSS')} KiB, {fd_count(pid)} fds")
    except Broke as e:
        print(f"after closing all: {e}")
    if dead:
        raise Broke(f"{dead} connections were closed by respgate during the idle period")
    return 1 if (verdict == "MISS" and a.strict) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Broke as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
