"""redis-py >= 5 speaking RESP3 (`protocol=3`) through respgate.

Usage: python3 redis_py_resp3.py HOST PORT PREFIX. Exits non-zero (an assertion) on any
difference from what a standalone Redis 7 answers a RESP3 client: typed replies (a map,
a set, a double) as they arrive on the wire, the same through redis-py's API, INFO, and
pub/sub messages delivered as push frames.
"""
import socket
import sys
import time

import redis

host, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
major = int(redis.__version__.split(".")[0])
assert major >= 5, f"redis-py {redis.__version__} has no RESP3; need >= 5"

r = redis.Redis(
    host=host, port=port, protocol=3, decode_responses=True, socket_timeout=10
)
assert r.ping() is True

# HELLO 3 was accepted: the connection is a RESP3 one.
hello = r.execute_command("HELLO", "3")
assert hello["proto"] == 3, hello
assert hello["server"] == "redis", hello

h, s, z = f"{prefix}h", f"{prefix}s", f"{prefix}z"
r.delete(h, s, z)
assert r.hset(h, mapping={"user": "alice", "cart": "3"}) == 2
assert r.sadd(s, "a", "b", "c") == 3
assert r.zadd(z, {"m": 1.5}) == 1

# The wire types, below redis-py's response callbacks: a RESP3 map and double (over
# RESP2 these would be a flat list and a bulk string). redis-py's parser reads a RESP3
# set as a list, so the set's wire type is checked on a plain socket below.
try:
    conn = r.connection_pool.get_connection()
except TypeError:  # redis-py < 5.3 wants a command name
    conn = r.connection_pool.get_connection("_")
try:
    conn.send_command("HGETALL", h)
    raw = conn.read_response()
    assert isinstance(raw, dict) and raw == {"user": "alice", "cart": "3"}, repr(raw)
    conn.send_command("SMEMBERS", s)
    raw = conn.read_response()
    assert sorted(raw) == ["a", "b", "c"], repr(raw)
    conn.send_command("ZSCORE", z, "m")
    raw = conn.read_response()
    assert isinstance(raw, float) and raw == 1.5, repr(raw)
    conn.send_command("ZSCORE", z, "nope")
    raw = conn.read_response()
    assert raw is None, repr(raw)
finally:
    r.connection_pool.release(conn)

# SMEMBERS as it travels: a RESP3 set (`~`), after HELLO 3 on a plain connection.
with socket.create_connection((host, port), timeout=10) as raw_sock:
    raw_sock.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
    wire = b""
    while not wire.startswith(b"%") or b"modules" not in wire:
        wire += raw_sock.recv(65536)
    cmd = f"*2\r\n$8\r\nSMEMBERS\r\n${len(s)}\r\n{s}\r\n".encode()
    raw_sock.sendall(cmd)
    wire = b""
    while wire.count(b"\r\n") < 7:
        wire += raw_sock.recv(65536)
    assert wire.startswith(b"~3\r\n"), repr(wire)

# The same through the API.
assert r.hgetall(h) == {"user": "alice", "cart": "3"}
assert r.smembers(s) == {"a", "b", "c"}
assert r.zscore(z, "m") == 1.5
assert r.zrange(z, 0, -1, withscores=True) == [["m", 1.5]] or r.zrange(
    z, 0, -1, withscores=True
) == [("m", 1.5)]
info = r.info()
assert isinstance(info, dict) and info["redis_version"].startswith("7."), info
assert info["cluster_enabled"] == 0, info
assert info["proxy"] == "respgate", info
assert "db0" in r.info("keyspace")

# Errors stay errors.
try:
    r.lpush(h, "x")
    raise AssertionError("expected WRONGTYPE")
except redis.ResponseError as e:
    assert str(e).startswith("WRONGTYPE"), str(e)


def wait_for(p, want_type, limit=10.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        m = p.get_message(timeout=0.5)
        if m is not None and m["type"] == want_type:
            return m
    raise AssertionError(f"no {want_type} within {limit}s")


# Pub/sub: confirmations and messages arrive as RESP3 push frames. A push handler sees
# only frames that came as pushes (`>`), never replies.
pushes = []
p = r.pubsub(push_handler_func=pushes.append)
ch = f"{prefix}news"
p.subscribe(ch)
deadline = time.time() + 10
while ["subscribe", ch, 1] not in pushes and time.time() < deadline:
    p.get_message(timeout=0.2)
assert ["subscribe", ch, 1] in pushes, pushes
assert r.publish(ch, "hello") >= 1
while ["message", ch, "hello"] not in pushes and time.time() < deadline:
    p.get_message(timeout=0.2)
assert ["message", ch, "hello"] in pushes, pushes
p.close()

# The same through redis-py's default handler, and a shard channel (on a client of its
# own: redis-py leaves a custom push handler on the pooled connection).
r2 = redis.Redis(
    host=host, port=port, protocol=3, decode_responses=True, socket_timeout=10
)
p = r2.pubsub()
p.subscribe(ch)
wait_for(p, "subscribe")
r.publish(ch, "again")
m = wait_for(p, "message")
assert m["channel"] == ch and m["data"] == "again", m
sch = f"{prefix}shard"
p.ssubscribe(sch)
wait_for(p, "ssubscribe")
assert r.spublish(sch, "to-shard") == 1
m = wait_for(p, "smessage")
assert m["channel"] == sch and m["data"] == "to-shard", m
p.close()

r.delete(h, s, z)
print("redis-py RESP3 OK")
