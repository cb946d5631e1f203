//! Differential test: the same random command sequence sent through respgate (in front
//! of the shared cluster) and to a standalone redis-server of the same version must get
//! byte-identical replies, errors included.
//!
//! Every key shares one hash tag, so through respgate all of them live on one master and
//! multi-key commands (RENAME, SMOVE, ZUNIONSTORE, MSET, EVAL with several keys, ...) run
//! as they do on a single Redis. Commands whose reply is not deterministic (SPOP,
//! RANDOMKEY, TTL, ...) and commands about the whole keyspace (KEYS, DBSIZE, SCAN, which
//! see other tests' keys in the shared cluster) are left out. Set members are integers
//! (an intset, whose SMEMBERS order is fixed) and hashes stay small (a listpack, in
//! insertion order), so collection replies are deterministic too.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use support::standalone::Standalone;
use support::{same, show, RawConn};

/// Builds random commands over a handful of keys of one hash tag.
struct Gen {
    rng: StdRng,
    tag: String,
    in_multi: bool,
    /// Key prefixes to draw from (ACL tests); empty: `{tag}:kN` keys.
    prefixes: Vec<&'static str>,
}

impl Gen {
    fn new(seed: u64, tag: String) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            tag,
            in_multi: false,
            prefixes: Vec::new(),
        }
    }

    /// A script of this run's own (the script cache is cluster-wide and outlives tests),
    /// and its SHA1 digest.
    fn script(&self) -> String {
        format!("return redis.call('GET', KEYS[1]) -- {}", self.tag)
    }
    fn script_sha(&self) -> String {
        use sha1::Digest;
        sha1::Sha1::digest(self.script().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn key(&mut self) -> String {
        if !self.prefixes.is_empty() {
            let p = self.prefixes[self.rng.random_range(0..self.prefixes.len())];
            return format!("{p}{{{}}}{}", self.tag, self.rng.random_range(0..2));
        }
        format!("{{{}}}:k{}", self.tag, self.rng.random_range(0..6))
    }
    /// A key of its own slot (no hash tag): [`Gen::spread_command`].
    fn spread_key(&mut self) -> String {
        format!("{}:s{}", self.tag, self.rng.random_range(0..SPREAD_KEYS))
    }
    fn spread_keys(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.spread_key()).collect()
    }

    /// A command over keys of many slots: the multi-key commands respgate splits by slot
    /// (MGET, MSET, DEL, EXISTS, TOUCH, UNLINK) and single-key commands.
    fn spread_command(&mut self) -> Vec<String> {
        let n = self.rng.random_range(1..6);
        let keys = self.spread_keys(n);
        let mut args: Vec<String> = Vec::new();
        match self.rng.random_range(0..12) {
            0 => {
                args.push("MGET".into());
                args.extend(keys);
            }
            1 => {
                args.push("MSET".into());
                for k in keys {
                    let v = self.value();
                    args.extend([k, v]);
                }
            }
            2 => args.extend(["MSET".to_string(), keys[0].clone()]),
            3 | 4 => {
                args.push(self.pick(&["DEL", "EXISTS", "TOUCH", "UNLINK"]).into());
                args.extend(keys);
            }
            5 => args.extend(["INCR".to_string(), keys[0].clone()]),
            6 => {
                let v = self.value();
                args.extend(["APPEND".to_string(), keys[0].clone(), v]);
            }
            7 => args.extend(["GET".to_string(), keys[0].clone()]),
            8 => {
                let v = self.value();
                args.extend(["LPUSH".to_string(), keys[0].clone(), v]);
            }
            9 => args.extend(["TYPE".to_string(), keys[0].clone()]),
            10 => args.push(self.pick(&["MGET", "DEL", "EXISTS"]).into()),
            _ => {
                let (f, v) = (self.field(), self.value());
                args.extend(["HSET".to_string(), keys[0].clone(), f, v]);
            }
        }
        args
    }
    fn int(&mut self) -> String {
        self.rng.random_range(-5..20).to_string()
    }
    fn member(&mut self) -> String {
        // Integers only: the set stays an intset (sorted, so SMEMBERS is deterministic).
        self.rng.random_range(0..12).to_string()
    }
    fn field(&mut self) -> String {
        format!("f{}", self.rng.random_range(0..6))
    }
    fn value(&mut self) -> String {
        match self.rng.random_range(0..6) {
            0 => self.int(),
            1 => "1.5".into(),
            2 => "".into(),
            3 => "hello world".into(),
            4 => "x".repeat(self.rng.random_range(1..40)),
            _ => format!("v{}", self.rng.random_range(0..100)),
        }
    }
    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.rng.random_range(0..options.len())]
    }

    /// One command (or a MULTI ... EXEC block) as argument vectors.
    fn commands(&mut self) -> Vec<Vec<String>> {
        if self.rng.random_range(0..40) == 0 {
            let mut block = vec![vec!["MULTI".to_string()]];
            self.in_multi = true;
            for _ in 0..self.rng.random_range(0..4) {
                block.push(self.command());
            }
            let end = if self.rng.random_range(0..5) == 0 {
                "DISCARD"
            } else {
                "EXEC"
            };
            block.push(vec![end.to_string()]);
            self.in_multi = false;
            return block;
        }
        vec![self.command()]
    }

    /// One command; the generator follows MULTI / EXEC / DISCARD to know whether it is
    /// inside a transaction.
    fn command(&mut self) -> Vec<String> {
        let mut c = self.any_command();
        // SCRIPT and FUNCTION are refused inside MULTI by respgate: they run on every
        // master, not on the transaction's node.
        while self.in_multi && (c[0] == "SCRIPT" || c[0] == "FUNCTION") {
            c = self.any_command();
        }
        match c[0].as_str() {
            "MULTI" => self.in_multi = true,
            "EXEC" | "DISCARD" => self.in_multi = false,
            _ => {}
        }
        c
    }

    fn any_command(&mut self) -> Vec<String> {
        let k = self.key();
        let sha = self.script_sha();
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<String>>();
        match self.rng.random_range(0..156) {
            // Strings.
            0 => {
                let v = self.value();
                s(&["SET", &k, &v])
            }
            1 => {
                let v = self.value();
                let o = self.pick(&["NX", "XX", "GET", "KEEPTTL", "EX", "PX", "BOGUS"]);
                if o == "EX" || o == "PX" {
                    s(&["SET", &k, &v, o, "100000"])
                } else {
                    s(&["SET", &k, &v, o])
                }
            }
            2 => s(&["GET", &k]),
            3 => {
                let v = self.value();
                s(&["GETSET", &k, &v])
            }
            4 => s(&["GETDEL", &k]),
            5 => {
                let v = self.value();
                s(&["APPEND", &k, &v])
            }
            6 => s(&["STRLEN", &k]),
            7 => s(&["INCR", &k]),
            8 => {
                let n = self.int();
                s(&["INCRBY", &k, &n])
            }
            9 => s(&[
                "INCRBYFLOAT",
                &k,
                self.pick(&["0.1", "-2.5", "1e3", "abc", "3"]),
            ]),
            10 => s(&["DECR", &k]),
            11 => {
                let n = self.int();
                s(&["DECRBY", &k, &n])
            }
            12 => {
                let v = self.value();
                s(&["SETRANGE", &k, self.pick(&["0", "3", "-1", "10"]), &v])
            }
            13 => s(&[
                "GETRANGE",
                &k,
                self.pick(&["0", "2", "-3"]),
                self.pick(&["-1", "4", "100"]),
            ]),
            14 => {
                let (k2, v1, v2) = (self.key(), self.value(), self.value());
                s(&["MSET", &k, &v1, &k2, &v2])
            }
            15 => {
                let k2 = self.key();
                s(&["MGET", &k, &k2])
            }
            16 => {
                let (k2, v1, v2) = (self.key(), self.value(), self.value());
                s(&["MSETNX", &k, &v1, &k2, &v2])
            }
            17 => {
                let v = self.value();
                s(&["SETNX", &k, &v])
            }
            18 => s(&["GETEX", &k, self.pick(&["PERSIST", "EX", "BAD"]), "100000"]),
            19 => s(&["SET", &k]),
            // Keys.
            20 => s(&["DEL", &k]),
            21 => {
                let k2 = self.key();
                s(&["EXISTS", &k, &k2, &k])
            }
            22 => s(&["TYPE", &k]),
            23 => {
                let k2 = self.key();
                s(&["RENAME", &k, &k2])
            }
            24 => {
                let k2 = self.key();
                s(&["RENAMENX", &k, &k2])
            }
            25 => {
                let k2 = self.key();
                if self.rng.random_bool(0.5) {
                    s(&["COPY", &k, &k2, "REPLACE"])
                } else {
                    s(&["COPY", &k, &k2])
                }
            }
            26 => s(&["PERSIST", &k]),
            // Not GT / LT: they compare with an expiry set moments before, and pipelined
            // both may fall in the same millisecond (equal, so GT is false) where the
            // one-by-one run is a round trip later.
            27 => s(&["EXPIRE", &k, "100000", self.pick(&["NX", "XX", "BAD"])]),
            28 => {
                let k2 = self.key();
                s(&["TOUCH", &k, &k2])
            }
            29 => {
                let k2 = self.key();
                s(&["UNLINK", &k, &k2])
            }
            30 => s(&["OBJECT", "ENCODING", &k]),
            31 => s(&["EXPIRE", &k, "abc"]),
            // Lists.
            32 => {
                let (a, b) = (self.value(), self.value());
                s(&["LPUSH", &k, &a, &b])
            }
            33 => {
                let a = self.value();
                s(&["RPUSH", &k, &a])
            }
            34 => s(&["LPOP", &k]),
            35 => s(&["RPOP", &k, self.pick(&["2", "0", "-1"])]),
            36 => s(&[
                "LRANGE",
                &k,
                self.pick(&["0", "1", "-2"]),
                self.pick(&["-1", "2"]),
            ]),
            37 => s(&["LLEN", &k]),
            38 => s(&["LINDEX", &k, self.pick(&["0", "-1", "5"])]),
            39 => {
                let v = self.value();
                s(&["LSET", &k, self.pick(&["0", "-1", "9"]), &v])
            }
            40 => {
                let v = self.value();
                s(&["LREM", &k, self.pick(&["0", "1", "-2"]), &v])
            }
            41 => s(&["LTRIM", &k, self.pick(&["0", "1"]), self.pick(&["-1", "3"])]),
            42 => {
                let (p, v) = (self.value(), self.value());
                s(&[
                    "LINSERT",
                    &k,
                    self.pick(&["BEFORE", "AFTER", "MIDDLE"]),
                    &p,
                    &v,
                ])
            }
            43 => {
                let v = self.value();
                s(&["LPOS", &k, &v])
            }
            44 => {
                let k2 = self.key();
                s(&[
                    "LMOVE",
                    &k,
                    &k2,
                    self.pick(&["LEFT", "RIGHT"]),
                    self.pick(&["LEFT", "RIGHT", "UP"]),
                ])
            }
            45 => s(&["LPUSHX", &k, "x"]),
            // Hashes.
            46 => {
                let (f, v) = (self.field(), self.value());
                s(&["HSET", &k, &f, &v])
            }
            47 => {
                let f = self.field();
                s(&["HGET", &k, &f])
            }
            48 => {
                let (f, g) = (self.field(), self.field());
                s(&["HDEL", &k, &f, &g])
            }
            49 => s(&["HGETALL", &k]),
            50 => {
                let (f, n) = (self.field(), self.int());
                s(&["HINCRBY", &k, &f, &n])
            }
            51 => {
                let f = self.field();
                s(&["HINCRBYFLOAT", &k, &f, self.pick(&["1.5", "x", "-0.25"])])
            }
            52 => s(&["HKEYS", &k]),
            53 => s(&["HVALS", &k]),
            54 => s(&["HLEN", &k]),
            55 => {
                let f = self.field();
                s(&["HEXISTS", &k, &f])
            }
            56 => {
                let (f, v) = (self.field(), self.value());
                s(&["HSETNX", &k, &f, &v])
            }
            57 => {
                let (f, g) = (self.field(), self.field());
                s(&["HMGET", &k, &f, &g])
            }
            58 => {
                let f = self.field();
                s(&["HSTRLEN", &k, &f])
            }
            59 => s(&["HSET", &k, "lonely"]),
            // Sets (integer members).
            60 => {
                let (a, b) = (self.member(), self.member());
                s(&["SADD", &k, &a, &b])
            }
            61 => {
                let a = self.member();
                s(&["SREM", &k, &a])
            }
            62 => {
                let a = self.member();
                s(&["SISMEMBER", &k, &a])
            }
            63 => {
                let (a, b) = (self.member(), self.member());
                s(&["SMISMEMBER", &k, &a, &b])
            }
            64 => s(&["SCARD", &k]),
            65 => s(&["SMEMBERS", &k]),
            66 => {
                let k2 = self.key();
                s(&["SINTER", &k, &k2])
            }
            67 => {
                let (k2, k3) = (self.key(), self.key());
                s(&["SUNIONSTORE", &k3, &k, &k2])
            }
            68 => {
                let (k2, a) = (self.key(), self.member());
                s(&["SMOVE", &k, &k2, &a])
            }
            69 => {
                let k2 = self.key();
                s(&["SINTERCARD", "2", &k, &k2])
            }
            // Sorted sets.
            70 => {
                let (sc, m) = (self.int(), self.member());
                s(&["ZADD", &k, &sc, &m])
            }
            71 => {
                let (sc, m) = (self.int(), self.member());
                s(&[
                    "ZADD",
                    &k,
                    self.pick(&["NX", "XX", "GT", "LT", "INCR", "CH"]),
                    &sc,
                    &m,
                ])
            }
            72 => {
                let m = self.member();
                s(&["ZSCORE", &k, &m])
            }
            73 => s(&["ZRANGE", &k, "0", "-1", "WITHSCORES"]),
            74 => {
                let m = self.member();
                s(&["ZRANK", &k, &m])
            }
            75 => {
                let m = self.member();
                s(&["ZINCRBY", &k, self.pick(&["1", "-2.5", "nope"]), &m])
            }
            76 => {
                let m = self.member();
                s(&["ZREM", &k, &m])
            }
            77 => s(&["ZCARD", &k]),
            78 => s(&[
                "ZCOUNT",
                &k,
                self.pick(&["-inf", "0", "(1"]),
                self.pick(&["+inf", "5", "x"]),
            ]),
            79 => s(&["ZRANGEBYSCORE", &k, "-inf", "+inf", "LIMIT", "0", "3"]),
            80 => s(&["ZPOPMIN", &k]),
            81 => {
                let (k2, k3) = (self.key(), self.key());
                s(&["ZUNIONSTORE", &k3, "2", &k, &k2, "WEIGHTS", "1", "2"])
            }
            82 => {
                let (k2, k3) = (self.key(), self.key());
                s(&["ZINTERSTORE", &k3, self.pick(&["2", "3", "0"]), &k, &k2])
            }
            // Scripts, and requests that are wrong as a whole.
            83 => s(&["EVAL", "return redis.call('INCR', KEYS[1])", "1", &k]),
            84 => {
                let k2 = self.key();
                s(&[
                    "EVAL",
                    "return {KEYS[1], KEYS[2], ARGV[1]}",
                    "2",
                    &k,
                    &k2,
                    "a",
                ])
            }
            85 => s(&["EVAL", "return 1", self.pick(&["3", "-1", "x"]), &k]),
            86 => s(&["NOSUCHCOMMAND", &k]),
            87 => s(&[self.pick(&["GET", "HGETALL", "LLEN", "INCR", "ZCARD"])]),
            // Transactions out of place, WATCH.
            88 => s(&[self.pick(&["EXEC", "DISCARD", "MULTI", "UNWATCH"])]),
            89 => s(&["WATCH", &k]),
            // Bits, HyperLogLog, streams, geo, sorting, odds and ends.
            90 => s(&[
                "SETBIT",
                &k,
                self.pick(&["7", "100", "-1"]),
                self.pick(&["1", "0", "2"]),
            ]),
            91 => s(&["GETBIT", &k, self.pick(&["7", "100"])]),
            92 => s(&["BITCOUNT", &k]),
            93 => {
                let k2 = self.key();
                s(&["BITOP", self.pick(&["AND", "OR", "XOR", "NOT"]), &k, &k2])
            }
            94 => s(&["BITPOS", &k, self.pick(&["1", "0"])]),
            95 => {
                let (a, b) = (self.value(), self.value());
                s(&["PFADD", &k, &a, &b])
            }
            96 => {
                let k2 = self.key();
                s(&["PFCOUNT", &k, &k2])
            }
            97 => {
                let id = format!(
                    "{}-{}",
                    self.rng.random_range(1..50),
                    self.rng.random_range(0..3)
                );
                s(&["XADD", &k, &id, "f", "v"])
            }
            98 => s(&["XRANGE", &k, "-", "+", "COUNT", "3"]),
            99 => s(&["XLEN", &k]),
            100 => s(&["XTRIM", &k, "MAXLEN", self.pick(&["2", "0", "x"])]),
            101 => s(&[
                "GEOADD",
                &k,
                self.pick(&["13.361389", "200"]),
                "38.115556",
                "Palermo",
            ]),
            102 => s(&["GEODIST", &k, "Palermo", "Catania"]),
            103 => s(&["GEOPOS", &k, "Palermo"]),
            104 => s(&["SORT", &k]),
            105 => s(&["SORT", &k, "ALPHA", "DESC", "LIMIT", "0", "5"]),
            106 => {
                let k2 = self.key();
                s(&["SORT", &k, "ALPHA", "STORE", &k2])
            }
            107 => s(&["DUMP", &k]),
            108 => {
                let k2 = self.key();
                s(&["LCS", &k, &k2])
            }
            109 => s(&["SUBSTR", &k, "0", "3"]),
            110 => {
                let v = self.value();
                s(&["PSETEX", &k, self.pick(&["100000", "0", "-5"]), &v])
            }
            111 => s(&["OBJECT", self.pick(&["FOO", "ENCODING", "HELP"])]),
            112 => s(&["get", &k]),
            113 => {
                let v = self.value();
                s(&["sEt", &k, &v, "xx"])
            }
            114 => s(&["HRANDFIELD"]),
            115 => s(&["EXISTS"]),
            116 => s(&["ZADD", &k, "1"]),
            117 => s(&["ZRANGE", &k, "(1", "+inf", "BYSCORE", "REV"]),
            118 => s(&[
                "ZRANGE", &k, "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "0", "2",
            ]),
            119 => s(&["LPOS", &k, "x", "RANK", self.pick(&["0", "-1", "2"])]),
            // Blocking commands that do not block long: data there, or a 10 ms timeout.
            120 => s(&["BLPOP", &k, "0.01"]),
            121 => {
                let k2 = self.key();
                s(&["BRPOP", &k, &k2, "0.01"])
            }
            122 => {
                let k2 = self.key();
                s(&["BLMOVE", &k, &k2, "LEFT", "RIGHT", "0.01"])
            }
            123 => s(&["BZPOPMIN", &k, "0.01"]),
            124 => s(&["BLPOP", &k, self.pick(&["-1", "abc"])]),
            125 => s(&["XREAD", "COUNT", "2", "STREAMS", &k, "0-0"]),
            126 => s(&["XREAD", "BLOCK", "10", "STREAMS", &k, "$"]),
            // Scripts by digest (SCRIPT LOAD goes to every master through respgate).
            127 => {
                let script = self.script();
                s(&["SCRIPT", "LOAD", &script])
            }
            128 => s(&["EVALSHA", &sha, "1", &k]),
            129 => s(&[
                "EVALSHA",
                "ffffffffffffffffffffffffffffffffffffffff",
                "1",
                &k,
            ]),
            130 => s(&[
                "SCRIPT",
                "EXISTS",
                &sha,
                "ffffffffffffffffffffffffffffffffffffffff",
            ]),
            131 => s(&["EVAL_RO", "return redis.call('GET', KEYS[1])", "1", &k]),
            // Functions: a library of this run's own (libraries are cluster-wide).
            132 | 133 => {
                let lib = format!("lib{}", self.tag.replace('-', "_"));
                let code = format!(
                    "#!lua name={lib}\nredis.register_function('{lib}_get', function(keys, args) return redis.call('GET', keys[1]) end)"
                );
                if self.rng.random_bool(0.5) {
                    s(&["FUNCTION", "LOAD", &code])
                } else {
                    s(&["FUNCTION", "LOAD", "REPLACE", &code])
                }
            }
            134 | 135 => {
                let f = format!("lib{}_get", self.tag.replace('-', "_"));
                s(&["FCALL", &f, "1", &k])
            }
            136 => s(&["FCALL", "nosuchfunction", "1", &k]),
            137 => s(&["FCALL_RO", "nosuchfunction", "0"]),
            // Stream consumer groups (nothing that reports idle times).
            138 => s(&[
                "XGROUP",
                "CREATE",
                &k,
                "g1",
                self.pick(&["0", "$"]),
                "MKSTREAM",
            ]),
            139 => s(&[
                "XREADGROUP",
                "GROUP",
                "g1",
                self.pick(&["alice", "bob"]),
                "COUNT",
                "2",
                "STREAMS",
                &k,
                ">",
            ]),
            140 => s(&["XREADGROUP", "GROUP", "g1", "alice", "STREAMS", &k, "0"]),
            141 => s(&["XACK", &k, "g1", self.pick(&["1-0", "2-1", "3-0"])]),
            142 => s(&["XPENDING", &k, "g1"]),
            143 => s(&[
                "XCLAIM",
                &k,
                "g1",
                "bob",
                "0",
                self.pick(&["1-0", "2-0", "5-1"]),
                "JUSTID",
            ]),
            144 => s(&["XAUTOCLAIM", &k, "g1", "carol", "0", "0-0", "COUNT", "3"]),
            145 => s(&["XINFO", "GROUPS", &k]),
            146 => s(&["XGROUP", "DESTROY", &k, "g1"]),
            147 => s(&["XDEL", &k, self.pick(&["1-0", "2-0"])]),
            148 => s(&["XINFO", "STREAM", &k]),
            // Odds and ends.
            149 => s(&["BITFIELD", &k, "INCRBY", "u8", "0", "200", "GET", "i4", "4"]),
            150 => s(&["GEOADD", &k, "15.087269", "37.502669", "Catania"]),
            151 => s(&[
                "GEOSEARCH",
                &k,
                "FROMLONLAT",
                "15",
                "37",
                "BYRADIUS",
                "200",
                "km",
                "ASC",
                "WITHDIST",
            ]),
            152 => {
                let k2 = self.key();
                s(&[
                    "GEOSEARCHSTORE",
                    &k2,
                    &k,
                    "FROMMEMBER",
                    "Palermo",
                    "BYBOX",
                    "400",
                    "400",
                    "km",
                ])
            }
            153 => s(&["OBJECT", "REFCOUNT", &k]),
            154 => s(&["RPUSHX", &k, "a", "b"]),
            _ => {
                let k2 = self.key();
                s(&["ZRANGESTORE", &k2, &k, "0", "-1"])
            }
        }
    }
}

/// Runs `commands` random commands (seeded) through respgate and on a standalone Redis,
/// comparing every reply.
async fn compare(seed: u64, commands: usize, mode: Mode) {
    let standalone = Standalone::start();
    let proxy = support::proxy_for_shared().await;
    let mut via = RawConn::connect(proxy.local_addr()).await;
    let mut direct = RawConn::connect(standalone.addr).await;
    let mut gen = Gen::new(seed, format!("diff{seed}-{}", std::process::id()));
    if matches!(mode, Mode::Resp3 | Mode::SpreadResp3) {
        // The HELLO replies differ (server id, mode): only what follows is compared.
        via.command(&["HELLO", "3"]).await;
        direct.command(&["HELLO", "3"]).await;
    }
    // Start from nothing on both sides.
    let mut del = vec!["DEL".to_string()];
    del.extend((0..6).map(|i| format!("{{{}}}:k{i}", gen.tag)));
    del.extend((0..SPREAD_KEYS).map(|i| format!("{}:s{i}", gen.tag)));
    for k in &del[1..] {
        via.command(&["DEL", k]).await;
    }
    direct.command(&del).await;

    let mut history: Vec<String> = Vec::new();
    let mut sent = 0;
    while sent < commands {
        let batch = match mode {
            Mode::Spread | Mode::SpreadResp3 => vec![gen.spread_command()],
            _ => gen.commands(),
        };
        for args in batch {
            sent += 1;
            let line = args.join(" ");
            let a = via.command(&args).await;
            let b = direct.command(&args).await;
            history.push(format!("{line}  ->  {}", show(&b)));
            if a != b {
                let tail = history.len().saturating_sub(12);
                panic!(
                    "seed {seed}, command {sent}: `{line}`\n  respgate:   {}\n  redis:      {}\nlast commands (with Redis's replies):\n  {}",
                    show(&a),
                    show(&b),
                    history[tail..].join("\n  ")
                );
            }
        }
    }
    via.command(&del).await;
    proxy.shutdown().await;
}

/// The same, with every command of a seed pipelined through respgate in one go (the
/// standalone Redis gets them one by one): pipelining must not change any reply.
#[tokio::test]
async fn pipelined_random_commands_get_the_same_replies() {
    pipelined(99, false).await;
    pipelined(98, true).await;
}

async fn pipelined(seed: u64, resp3: bool) {
    let standalone = Standalone::start();
    let proxy = support::proxy_for_shared().await;
    let mut via = RawConn::connect(proxy.local_addr()).await;
    let mut direct = RawConn::connect(standalone.addr).await;
    if resp3 {
        via.command(&["HELLO", "3"]).await;
        direct.command(&["HELLO", "3"]).await;
    }
    let mut gen = Gen::new(seed, format!("pdiff{seed}-{}", std::process::id()));
    let mut del = vec!["DEL".to_string()];
    del.extend((0..6).map(|i| format!("{{{}}}:k{i}", gen.tag)));
    via.command(&del).await;
    direct.command(&del).await;
    let mut commands: Vec<Vec<String>> = Vec::new();
    while commands.len() < 5000 {
        commands.extend(gen.commands());
    }
    let mut expected = Vec::with_capacity(commands.len());
    for args in &commands {
        expected.push(direct.command(args).await);
    }
    let mut bytes = Vec::new();
    for args in &commands {
        bytes.extend(support::encode_command(args));
    }
    via.send(&bytes).await;
    for (i, want) in expected.iter().enumerate() {
        let got = via.read_reply().await;
        assert_eq!(
            show(&got),
            show(want),
            "command {i}: `{}`",
            commands[i].join(" ")
        );
    }
    for k in &del[1..] {
        via.command(&["DEL", k]).await;
    }
    proxy.shutdown().await;
}

/// Keys over this many slots in [`Mode::Spread`].
const SPREAD_KEYS: usize = 12;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every key in one hash tag: all commands.
    OneSlot,
    /// The same over RESP3 (HELLO 3 on both sides first).
    Resp3,
    /// Keys over many slots: the commands respgate splits, and single-key ones.
    Spread,
    /// The same over RESP3.
    SpreadResp3,
}

#[tokio::test]
async fn random_commands_get_the_replies_a_standalone_redis_gives() {
    for seed in 1..=4 {
        compare(seed, 4000, Mode::OneSlot).await;
    }
}

#[tokio::test]
async fn random_commands_over_resp3_get_the_replies_a_standalone_redis_gives() {
    for seed in 11..=12 {
        compare(seed, 4000, Mode::Resp3).await;
    }
}

#[tokio::test]
async fn multi_key_commands_split_over_slots_get_the_replies_of_one_redis() {
    for seed in 21..=22 {
        compare(seed, 3000, Mode::Spread).await;
    }
    compare(23, 3000, Mode::SpreadResp3).await;
}

/// Everything `conn` sends back before closing or falling silent for `quiet`, and
/// whether it closed.
async fn drain(stream: &mut tokio::net::TcpStream, quiet: Duration) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Inline commands (as typed in telnet) and malformed RESP: respgate answers with the
/// bytes a standalone Redis sends, and closes the connection exactly when Redis does.
#[tokio::test]
async fn inline_commands_and_protocol_errors_get_redis_own_bytes() {
    use tokio::io::AsyncWriteExt;
    let standalone = Standalone::start();
    let proxy = support::proxy_for_shared().await;
    let k = format!("{{inl{}}}", std::process::id());
    let inputs: Vec<Vec<u8>> = vec![
        format!("SET {k}a hello\r\nGET {k}a\r\n").into_bytes(),
        format!("SET {k}b \"a b\\x41\\n\"\r\nGET {k}b\r\nSTRLEN {k}b\r\n").into_bytes(),
        format!("SET {k}c 'it''s'\r\nGET {k}c\r\n").into_bytes(),
        format!("SET {k}d \"unbalanced\r\nGET {k}d\r\n").into_bytes(),
        format!("SET {k}e \"x\"y\r\n").into_bytes(),
        b"\r\n\r\nPING\r\n".to_vec(),
        b"  PING   \r\n".to_vec(),
        b"PING\n".to_vec(),
        b"ECHO\r\n".to_vec(),
        b"NOSUCH arg1 arg2\r\n".to_vec(),
        format!("get {k}a\r\n").into_bytes(),
        b"*1\r\n$4\r\nPING\r\n*0\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
        b"*-1\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
        b"*1\r\n$-1\r\n".to_vec(),
        b"*1\r\n$x\r\nPING\r\n".to_vec(),
        b"*x\r\n".to_vec(),
        b"*1\r\n:4\r\n".to_vec(),
        b"*1\r\n$999999999999\r\n".to_vec(),
        b"*99999999999\r\n".to_vec(),
        b"*2\r\n$4\r\nPINGxx\r\n".to_vec(),
        b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n".to_vec(),
        b"*1\r\n$4\rXPING\r\n".to_vec(),
        b"*1\n$4\r\nPING\r\n".to_vec(),
        b"*1\r\n$4\nPING\r\n".to_vec(),
        b"*01\r\n$4\r\nPING\r\n".to_vec(),
        b"*1\r\n$04\r\nPING\r\n".to_vec(),
        b"*1\r\n$-0\r\n".to_vec(),
        b"*+1\r\n$4\r\nPING\r\n".to_vec(),
        b"*1\r\n$+4\r\nPING\r\n".to_vec(),
        b"*-0\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
        b"*2147483648\r\n".to_vec(),
        b"*1\r\n%4\r\nPING\r\n".to_vec(),
        b"*1\r\n\xff4\r\nPING\r\n".to_vec(),
        b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n".to_vec(),
        b"$4\r\nPING\r\n".to_vec(),
        b"*1\r\n$4\r\nPING\r\nPING\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
        b"*3\r\n$3\r\nSET\r\n$1\r\n".to_vec(),
        format!("*2\r\n$3\r\nGET\r\n${}\r\n{k}a\r\n", k.len() + 1).into_bytes(),
        format!(
            "CLIENT REPLY SKIP\r\nSET {k}r 1\r\nGET {k}r\r\nCLIENT REPLY OFF\r\nSET {k}r 2\r\n\
             GET {k}r\r\nCLIENT REPLY ON\r\nGET {k}r\r\nCLIENT REPLY BAD\r\nCLIENT REPLY\r\n"
        )
        .into_bytes(),
        format!("CLIENT REPLY SKIP\r\nGET {k}nil\r\nGET {k}nil\r\n").into_bytes(),
        b"PING\r\nQUIT\r\nPING\r\n".to_vec(),
        b"QUIT extra\r\nPING\r\n".to_vec(),
        format!("MULTI\r\nSET {k}m 1\r\nRESET\r\nEXEC\r\nGET {k}m\r\n").into_bytes(),
        format!("MULTI\r\nSET {k}m 1\r\nEXEC x\r\nEXEC\r\n").into_bytes(),
        format!("WATCH {k}w\r\nMULTI\r\nQUIT\r\n").into_bytes(),
        format!("DEL {k}a {k}b {k}c {k}d {k}e {k}r\r\n").into_bytes(),
    ];
    let quiet = Duration::from_millis(300);
    for input in &inputs {
        let mut via = tokio::net::TcpStream::connect(proxy.local_addr())
            .await
            .unwrap();
        let mut direct = tokio::net::TcpStream::connect(standalone.addr)
            .await
            .unwrap();
        via.write_all(input).await.unwrap();
        direct.write_all(input).await.unwrap();
        let (want, want_closed) = drain(&mut direct, quiet).await;
        let (got, got_closed) = drain(&mut via, quiet).await;
        assert_eq!(
            (show(&got), got_closed),
            (show(&want), want_closed),
            "input {:?}: (reply bytes, connection closed)",
            show(input)
        );
    }
    proxy.shutdown().await;
}

/// Commands respgate answers itself (or rewrites) get the bytes a standalone Redis sends:
/// connection commands, SELECT, CLIENT names, HELLO's errors, COMMAND, errors of arity.
#[tokio::test]
async fn commands_respgate_answers_itself_match_a_standalone_redis() {
    let standalone = Standalone::start();
    let proxy = support::proxy_for_shared().await;
    let k = format!("{{loc{}}}", std::process::id());
    let script: Vec<Vec<String>> = [
        vec!["PING"],
        vec!["PING", "hello"],
        vec!["PING", "a", "b"],
        vec!["ping"],
        vec!["ECHO", "x y"],
        vec!["ECHO"],
        vec!["ECHO", "a", "b"],
        vec!["SELECT", "0"],
        vec!["SELECT", "00"],
        vec!["SELECT", "abc"],
        vec!["SELECT"],
        vec!["CLIENT", "GETNAME"],
        vec!["CLIENT", "SETNAME", "svc-a"],
        vec!["CLIENT", "GETNAME"],
        vec!["CLIENT", "SETNAME", "has space"],
        vec!["CLIENT", "SETNAME", ""],
        vec!["CLIENT", "GETNAME"],
        vec!["CLIENT", "SETNAME"],
        vec!["CLIENT", "NOSUCH"],
        vec!["CLIENT", "NO-EVICT", "on"],
        vec!["CLIENT", "NO-EVICT", "maybe"],
        vec!["CLIENT", "UNBLOCK", "999999"],
        vec!["CLIENT", "UNBLOCK", "abc"],
        vec!["CLIENT", "UNBLOCK", "abc", "BAD"],
        vec!["CLIENT", "UNBLOCK", "999999", "error"],
        vec!["CLIENT", "PAUSE", "10"],
        vec!["CLIENT", "UNPAUSE"],
        vec!["CLIENT", "KILL", "ID", "999999"],
        vec!["CLIENT", "REPLY", "ON"],
        vec!["CLIENT", "GETREDIR"],
        vec!["CLIENT", "TRACKINGINFO"],
        vec!["CLIENT", "CACHING", "yes"],
        vec!["CLIENT", "TRACKING", "off"],
        vec!["CLIENT", "TRACKING", "maybe"],
        vec!["ECHO", "after pause"],
        vec!["CLIENT"],
        vec!["HELLO", "4"],
        vec!["HELLO", "x"],
        vec!["HELLO", "2", "AUTH", "default"],
        vec!["COMMAND", "COUNT"],
        vec!["COMMAND", "INFO", "get", "set", "nosuch"],
        vec!["COMMAND", "GETKEYS", "SET", "a", "b"],
        vec!["COMMAND", "GETKEYS", "GET"],
        vec!["COMMAND", "GETKEYS", "PING"],
        vec!["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"],
        vec!["COMMAND", "NOSUCH"],
        vec!["GET"],
        vec!["SET", "a"],
        vec!["MULTI"],
        vec!["PING"],
        vec!["SELECT", "0"],
        vec!["COMMAND", "COUNT"],
        vec!["ECHO", "in tx"],
        vec!["EXEC"],
        vec!["WATCH"],
        vec!["UNWATCH"],
        vec!["DISCARD"],
        vec!["SET", &format!("{k}x"), "1"],
        vec!["DEBUG", "OBJECT", &format!("{k}nokey")],
        vec!["OBJECT", "ENCODING", &format!("{k}x")],
        vec!["SLOWLOG", "RESET"],
        vec!["SAVE"],
        vec!["RESET"],
        vec!["CLIENT", "GETNAME"],
        vec!["DEL", &format!("{k}x")],
    ]
    .iter()
    .map(|c| c.iter().map(|a| a.to_string()).collect())
    .collect();
    for resp3 in [false, true] {
        let mut via = RawConn::connect(proxy.local_addr()).await;
        let mut direct = RawConn::connect(standalone.addr).await;
        if resp3 {
            via.command(&["HELLO", "3"]).await;
            direct.command(&["HELLO", "3"]).await;
        }
        for args in &script {
            let a = via.command(args).await;
            let b = direct.command(args).await;
            assert_eq!(show(&a), show(&b), "`{}` (RESP3: {resp3})", args.join(" "));
        }
        // Texts whose content differs (ids, addresses, sizes): the same reply type
        // (a verbatim `txt` string over RESP3) and the same first field.
        for args in [
            vec!["CLIENT", "INFO"],
            vec!["CLIENT", "LIST"],
            vec!["INFO", "server"],
        ] {
            let a = via.command(&args).await;
            let b = direct.command(&args).await;
            let head = |r: &[u8]| {
                let text = String::from_utf8_lossy(r).into_owned();
                let (header, body) = text.split_once("\r\n").unwrap_or_default();
                (
                    header.chars().next(),
                    body.split([' ', '=', '\r'])
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                )
            };
            assert_eq!(head(&a), head(&b), "`{}` (RESP3: {resp3})", args.join(" "));
        }
    }
    proxy.shutdown().await;
}

/// Pub/sub: a subscriber's confirmations, messages and subscribed-mode replies, and the
/// publisher's receiver counts, as a standalone Redis gives them.
///
/// RESP2 first, then RESP3 (confirmations and messages are pushes), one after the other:
/// PUBSUB NUMPAT counts every pattern in the cluster.
#[tokio::test]
async fn pubsub_matches_a_standalone_redis() {
    pubsub_matches(false).await;
    pubsub_matches(true).await;
}

async fn pubsub_matches(resp3: bool) {
    let standalone = Standalone::start();
    let proxy = support::proxy_for_shared().await;
    // Each variant its own names: both run at once against the same cluster.
    let id = format!("{}-{}", std::process::id(), u8::from(resp3));
    let (a, b, pat, pz) = (
        format!("dch-a-{id}"),
        format!("dch-b-{id}"),
        format!("dpat-{id}-*"),
        format!("dpat-{id}-z"),
    );
    // (who, command, replies to read): 0 = subscriber, 1 = publisher.
    let steps: Vec<(usize, Vec<&str>, usize)> = vec![
        (0, vec!["SUBSCRIBE", &a, &b], 2),
        (0, vec!["PSUBSCRIBE", &pat], 1),
        (0, vec!["PING"], 1),
        (0, vec!["PING", "hi"], 1),
        (0, vec!["GET", "x"], 1),
        (0, vec!["SUBSCRIBE", &a], 1),
        (1, vec!["PUBLISH", &a, "hello"], 1),
        (0, vec![], 1),
        (1, vec!["PUBLISH", &pz, "by pattern"], 1),
        (0, vec![], 1),
        (1, vec!["PUBLISH", "nobody-listens", "x"], 1),
        (1, vec!["PUBSUB", "NUMSUB", &a, &b, "nobody-listens"], 1),
        (1, vec!["PUBSUB", "NUMPAT"], 1),
        (0, vec!["UNSUBSCRIBE", &a], 1),
        (1, vec!["PUBLISH", &a, "gone"], 1),
        (1, vec!["PUBLISH", &b, "still"], 1),
        (0, vec![], 1),
        (0, vec!["UNSUBSCRIBE"], 1),
        (0, vec!["PUNSUBSCRIBE", &pat], 1),
        (0, vec!["PUNSUBSCRIBE"], 1),
        (0, vec!["UNSUBSCRIBE"], 1),
        (0, vec!["PING"], 1),
        (0, vec!["SSUBSCRIBE", &a], 1),
        (1, vec!["SPUBLISH", &a, "sharded"], 1),
        (0, vec![], 1),
        (0, vec!["SUNSUBSCRIBE"], 1),
    ];
    let mut via = [
        RawConn::connect(proxy.local_addr()).await,
        RawConn::connect(proxy.local_addr()).await,
    ];
    let mut direct = [
        RawConn::connect(standalone.addr).await,
        RawConn::connect(standalone.addr).await,
    ];
    if resp3 {
        for conn in via.iter_mut().chain(direct.iter_mut()) {
            conn.command(&["HELLO", "3"]).await;
        }
    }
    for (who, args, n) in &steps {
        if !args.is_empty() {
            via[*who].send(&support::encode_command(args)).await;
            direct[*who].send(&support::encode_command(args)).await;
        }
        let got = via[*who].read_replies(*n).await;
        let want = direct[*who].read_replies(*n).await;
        assert_eq!(
            got.iter().map(|r| show(r)).collect::<Vec<_>>(),
            want.iter().map(|r| show(r)).collect::<Vec<_>>(),
            "{} `{}`",
            if *who == 0 { "subscriber" } else { "publisher" },
            args.join(" ")
        );
    }
    proxy.shutdown().await;
}

/// ACLs: respgate with `[auth] mode = "users"` and a standalone Redis given the same
/// users with `ACL SETUSER` (and the default user off) answer the same random commands
/// over keys inside and outside each user's patterns with the same bytes: NOAUTH,
/// WRONGPASS, NOPERM for commands, keys and channels, and everything allowed.
#[tokio::test]
async fn acl_users_get_the_replies_redis_acls_give() {
    use respgate::config::{AuthConfig, AuthMode, UserConfig};
    let users: [(&str, &str); 6] = [
        (
            "auth-service",
            "on ~refresh:* ~rl:* ~session:* +@all -@dangerous",
        ),
        (
            "inventory-service",
            "on ~lock:product:* +@read +@write +@scripting +@connection +@transaction -@dangerous",
        ),
        ("order-service", "on ~saga:* &orders.* +@all -@dangerous"),
        (
            "search-service",
            "on ~cache:search:* +@read +@connection +set +setex +expire +del",
        ),
        ("reader", "on %R~ro:* ~rw:* +@all -@dangerous"),
        ("narrow", "on ~rw:* +get +set +mget -@dangerous +ping"),
    ];
    let standalone = Standalone::start();
    let mut admin = RawConn::connect(standalone.addr).await;
    for (name, rules) in users {
        let mut args: Vec<String> =
            vec!["ACL".into(), "SETUSER".into(), name.into(), "reset".into()];
        args.extend(rules.split(' ').map(String::from));
        args.push(format!(">{name}-pw"));
        assert_eq!(show(&admin.command(&args).await), "+OK\\r\\n", "{name}");
    }
    let mut config = support::test_config(&support::shared_cluster_seeds());
    config.auth = AuthConfig {
        mode: Some(AuthMode::Users),
        max_failures: 1000,
        failure_window_secs: 60,
        lockout_secs: 60,
        max_unknown_user_failures: 1000,
        lockout_max_entries: 100_000,
        login_timeout_secs: 10,
        users: users
            .iter()
            .map(|(name, rules)| UserConfig {
                max_dedicated_connections: None,
                cross_slot: None,
                name: name.to_string(),
                rules: format!(
                    "{rules} #{}",
                    respgate::acl::hash_password(format!("{name}-pw").as_bytes())
                ),
            })
            .collect(),
    };
    let proxy = support::start_proxy(config).await;
    // From here on Redis's unauthenticated connections get NOAUTH, as respgate's do.
    assert_eq!(
        show(&admin.command(&["ACL", "SETUSER", "default", "off"]).await),
        "+OK\\r\\n"
    );

    let prefixes = vec![
        "refresh:",
        "rl:",
        "session:",
        "lock:product:",
        "saga:",
        "cache:search:",
        "ro:",
        "rw:",
        "other:",
    ];
    for (seed, (name, _)) in users.iter().enumerate() {
        let mut via = RawConn::connect(proxy.local_addr()).await;
        let mut direct = RawConn::connect(standalone.addr).await;
        let before = [
            vec!["GET".to_string(), "rw:x".into()],
            vec!["AUTH".into(), name.to_string(), "wrong".into()],
            vec!["AUTH".into(), "nobody".into(), "x".into()],
            vec!["AUTH".into(), name.to_string(), format!("{name}-pw")],
            vec!["ACL".into(), "WHOAMI".into()],
        ];
        for args in &before {
            same(&mut via, &mut direct, args, &format!("{name}: ")).await;
        }
        let mut gen = Gen::new(
            100 + seed as u64,
            format!("acl{seed}-{}", std::process::id()),
        );
        gen.prefixes = prefixes.clone();
        let mut history: Vec<String> = Vec::new();
        for _ in 0..1500 {
            for args in gen.commands() {
                let line = args.join(" ");
                let (a, b) = (via.command(&args).await, direct.command(&args).await);
                history.push(format!("{line}  ->  {}", show(&b)));
                if a != b {
                    let tail = history.len().saturating_sub(8);
                    panic!(
                        "user {name}: `{line}`\n  respgate: {}\n  redis:    {}\nbefore:\n  {}",
                        show(&a),
                        show(&b),
                        history[tail..].join("\n  ")
                    );
                }
            }
        }
        // Channels: `&orders.*` for order-service; the others have none (resetchannels
        // is the default in Redis 7).
        for args in [
            vec!["PUBLISH", "orders.created", "1"],
            vec!["PUBLISH", "billing", "1"],
            vec!["SUBSCRIBE", "billing"],
        ] {
            same(&mut via, &mut direct, &args, &format!("{name}: ")).await;
        }
    }
    proxy.shutdown().await;
}

/// The elements of a flat RESP array of bulk strings, as strings.
fn bulk_items(reply: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(reply).into_owned();
    let mut lines = text.split("\r\n");
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with('*'), "not an array: {:?}", show(reply));
    let mut out = Vec::new();
    while let Some(l) = lines.next() {
        if l.starts_with('$') {
            out.push(lines.next().unwrap_or_default().to_string());
        }
    }
    out
}

/// All keys a full SCAN iteration with `extra` options returns (cursor values differ
/// between respgate and Redis, the set of keys must not).
async fn scan_all(conn: &mut RawConn, extra: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut keys = std::collections::BTreeSet::new();
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let reply = conn.command(&args).await;
        let text = String::from_utf8_lossy(&reply).into_owned();
        // *2 $n cursor *m ...
        let mut parts = text.splitn(4, "\r\n");
        let (_, _, next, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
        let next = next.unwrap_or_default().to_string();
        keys.extend(bulk_items(rest.unwrap_or_default().as_bytes()));
        if next == "0" {
            return keys.into_iter().collect();
        }
        cursor = next;
    }
}

/// Commands over the whole keyspace, on a cluster no other test touches: KEYS, SCAN
/// (MATCH, COUNT, TYPE), DBSIZE, RANDOMKEY, EXISTS over many slots, FLUSHDB/FLUSHALL
/// give what a standalone Redis holding the same keys gives (KEYS and SCAN as sets: the
/// order of keys is each server's own).
#[tokio::test]
async fn keyspace_commands_match_a_standalone_redis() {
    keyspace_commands_match(false).await;
    keyspace_commands_match(true).await;
}

async fn keyspace_commands_match(resp3: bool) {
    let quiet = support::quiet_cluster().await;
    quiet.flush();
    let standalone = Standalone::start();
    let proxy = quiet.proxy().await;
    let mut via = RawConn::connect(proxy.local_addr()).await;
    let mut direct = RawConn::connect(standalone.addr).await;
    if resp3 {
        via.command(&["HELLO", "3"]).await;
        direct.command(&["HELLO", "3"]).await;
    }
    // Empty first.
    for args in [vec!["DBSIZE"], vec!["RANDOMKEY"], vec!["KEYS", "*"]] {
        same(&mut via, &mut direct, &args, "").await;
    }
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..300 {
        let key = format!("ks:{}:{i}", ["user", "cart", "order"][i % 3]);
        let args: Vec<String> = match rng.random_range(0..3) {
            0 => vec!["SET".into(), key, "v".into()],
            1 => vec!["RPUSH".into(), key, "a".into()],
            _ => vec!["HSET".into(), key, "f".into(), "v".into()],
        };
        same(&mut via, &mut direct, &args, "").await;
    }
    let (a, b) = (
        via.command(&["DBSIZE"]).await,
        direct.command(&["DBSIZE"]).await,
    );
    assert_eq!(show(&a), show(&b), "DBSIZE");
    for pattern in ["*", "ks:user:*", "ks:*:1?", "nothing*", "ks:[co]*:2"] {
        let mut a = bulk_items(&via.command(&["KEYS", pattern]).await);
        let mut b = bulk_items(&direct.command(&["KEYS", pattern]).await);
        a.sort();
        b.sort();
        assert_eq!(a, b, "KEYS {pattern}");
    }
    for extra in [
        vec![],
        vec!["MATCH", "ks:cart:*"],
        vec!["COUNT", "7"],
        vec!["TYPE", "list"],
        vec!["MATCH", "ks:order:1*", "TYPE", "hash", "COUNT", "50"],
    ] {
        assert_eq!(
            scan_all(&mut via, &extra).await,
            scan_all(&mut direct, &extra).await,
            "SCAN {}",
            extra.join(" ")
        );
    }
    // RANDOMKEY: some key, of those that exist.
    let r = via.command(&["RANDOMKEY"]).await;
    let key = bulk_items(&[b"*1\r\n".as_slice(), &r].concat());
    assert!(key[0].starts_with("ks:"), "RANDOMKEY gave {:?}", show(&r));
    let many: Vec<String> = (0..40).map(|i| format!("ks:user:{i}")).collect();
    let mut args = vec!["EXISTS".to_string()];
    args.extend(many.iter().cloned());
    same(&mut via, &mut direct, &args, "over many slots: ").await;
    for args in [
        vec!["FLUSHDB"],
        vec!["DBSIZE"],
        vec!["RANDOMKEY"],
        vec!["SET", "ks:after", "1"],
        vec!["FLUSHALL", "SYNC"],
        vec!["DBSIZE"],
        vec!["FLUSHALL", "BAD"],
        vec!["SCAN", "abc"],
        vec!["SCAN", "0", "COUNT", "0"],
        vec!["KEYS"],
    ] {
        same(&mut via, &mut direct, &args, "").await;
    }
    proxy.shutdown().await;
}
