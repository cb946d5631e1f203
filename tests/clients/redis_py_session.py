"""A service's typical redis-py usage, run through respgate (a single Redis endpoint).

Usage: python3 redis_py_session.py HOST PORT PREFIX. Exits non-zero (an assertion) on
any difference from what a standalone Redis would answer.
"""
import sys

import redis

host, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = redis.Redis(host=host, port=port, decode_responses=True, socket_timeout=10)

assert r.ping() is True
assert r.echo("hi") == "hi"

# auth service: refresh tokens, sessions, rate limits
assert r.set(f"{prefix}refresh:tok1", "user1", ex=3600) is True
assert r.get(f"{prefix}refresh:tok1") == "user1"
assert 0 < r.ttl(f"{prefix}refresh:tok1") <= 3600
assert r.hset(f"{prefix}session:42", mapping={"user": "alice", "cart": "3"}) == 2
assert r.hgetall(f"{prefix}session:42") == {"user": "alice", "cart": "3"}
for i in range(1, 6):
    assert r.incr(f"{prefix}rl:10.0.0.1:202611260600") == i

# inventory: lock taken with SET NX EX, released by compare-and-delete
lock = f"{prefix}lock:product:42"
assert r.set(lock, "token-a", nx=True, ex=30) is True
assert r.set(lock, "token-b", nx=True, ex=30) is None
release = "if redis.call('get',KEYS[1]) == ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end"
assert r.eval(release, 1, lock, "token-b") == 0
assert r.eval(release, 1, lock, "token-a") == 1
assert r.exists(lock) == 0

# orders: a saga as a hash plus a list, pipelined (non-transactional)
p = r.pipeline(transaction=False)
for i in range(100):
    p.rpush(f"{prefix}saga:{{o1}}:steps", f"step{i}")
p.hset(f"{prefix}saga:{{o1}}", "state", "done")
p.lrange(f"{prefix}saga:{{o1}}:steps", 0, 2)
out = p.execute()
assert out[99] == 100
assert out[-1] == ["step0", "step1", "step2"]

# search cache
assert r.set(f"{prefix}cache:search:shoes", "[1,2,3]", px=60000) is True
assert r.get(f"{prefix}cache:search:shoes") == "[1,2,3]"

# errors come back as Redis errors, the connection stays usable
try:
    r.execute_command("NOSUCHCOMMAND", "x")
    raise AssertionError("expected an error")
except redis.ResponseError as e:
    assert str(e).startswith("unknown command 'NOSUCHCOMMAND'"), str(e)
try:
    r.lpush(f"{prefix}refresh:tok1", "x")
    raise AssertionError("expected WRONGTYPE")
except redis.ResponseError as e:
    assert str(e).startswith("WRONGTYPE"), str(e)
# multi-key commands across slots work as on one Redis
assert r.mset({f"{prefix}a": 1, f"{prefix}b": 2}) is True
assert r.mget(f"{prefix}a", f"{prefix}nope", f"{prefix}b") == ["1", None, "2"]
assert r.delete(f"{prefix}a", f"{prefix}b", f"{prefix}nope") == 2
try:
    r.sunionstore(f"{prefix}a", f"{prefix}b")
    raise AssertionError("expected CROSSSLOT")
except redis.ResponseError as e:
    assert "CROSSSLOT" in str(e), str(e)

# a transaction (redis-py's default pipeline) within one hash tag
p = r.pipeline()
p.set(f"{prefix}{{tx}}a", 1)
p.incr(f"{prefix}{{tx}}a")
p.get(f"{prefix}{{tx}}a")
assert p.execute() == [True, 2, "2"]

r.client_setname("order-service")
assert r.client_getname() == "order-service"
assert r.get(f"{prefix}refresh:tok1") == "user1"
print("redis-py OK")
