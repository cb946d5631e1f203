//! A workload file: weighted operations, each a short sequence of commands whose
//! arguments are templates (`session:{user}`, `{value}`, `{token}`, ...).
//!
//! An operation is what one client of the shop does at once: a session read is one GET; a
//! rate-limit hit is INCR then EXPIRE of the same key; a product lock is `SET NX EX` then
//! the compare-and-delete EVAL with the same token. Its commands are sent back to back
//! (pipelined) and each is timed and counted on its own, under the kind `op:COMMAND`.
//!
//! Templates are parsed once; expanding one writes RESP straight into the caller's buffer
//! so that generating load costs little of the CPU it competes with.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::resp;
use crate::rng::Rng;

/// How a variable's random value is drawn and written.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VarFile {
    /// `user = 100000`: uniform in `0..100000`, written in decimal.
    Range(u64),
    /// `ip = { range = 65536, format = "ip" }`.
    Spec { range: u64, format: Option<String> },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpFile {
    pub name: String,
    pub weight: u32,
    #[serde(default)]
    pub vars: HashMap<String, VarFile>,
    /// Bytes of `{value}` in this operation (default: the file's `value_size`).
    pub value_size: Option<usize>,
    pub commands: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    pub name: Option<String>,
    #[serde(default = "default_value_size")]
    pub value_size: usize,
    pub op: Vec<OpFile>,
}

fn default_value_size() -> usize {
    64
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("operation {op:?}: {msg}")]
    Op { op: String, msg: String },
    #[error("the workload has no operation with a weight above 0")]
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VarFormat {
    Int,
    Ip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Vec<u8>),
    Var(usize),
    Value,
    Token,
    Minute,
}

#[derive(Debug, Clone)]
struct Template(Vec<Seg>);

#[derive(Debug, Clone)]
struct CommandTpl {
    args: Vec<Template>,
    /// Which argument is the key (routes the command in cluster mode).
    key_arg: Option<usize>,
    kind: usize,
}

#[derive(Debug, Clone)]
pub struct Op {
    #[allow(dead_code)] // for Debug and the tests; kinds carry the name on the hot path
    pub name: String,
    vars: Vec<(u64, VarFormat)>,
    value: Vec<u8>,
    commands: Vec<CommandTpl>,
}

/// A parsed workload, ready to generate requests.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    pub ops: Vec<Op>,
    /// `op:COMMAND` per kind index.
    pub kinds: Vec<String>,
    cumulative: Vec<u64>,
}

/// One client's state while generating: its random numbers and its token counter.
pub struct Gen {
    pub rng: Rng,
    client: u64,
    next_token: u64,
    vals: Vec<u64>,
    arg: Vec<u8>,
    key: Vec<u8>,
    cmd: Vec<u8>,
}

impl Gen {
    pub fn new(client: u64, seed: u64) -> Gen {
        Gen {
            rng: Rng::new(seed ^ client.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            client,
            next_token: 0,
            vals: Vec::new(),
            arg: Vec::new(),
            key: Vec::new(),
            cmd: Vec::new(),
        }
    }
}

impl Workload {
    pub fn load(path: &Path) -> Result<Workload, WorkloadError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| WorkloadError::Read(path.display().to_string(), e))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        Workload::parse(&text, name.as_deref().unwrap_or("workload"))
    }

    pub fn parse(text: &str, default_name: &str) -> Result<Workload, WorkloadError> {
        let file: WorkloadFile = toml::from_str(text)?;
        let mut kinds: Vec<String> = Vec::new();
        let mut ops = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        for of in &file.op {
            if of.weight == 0 {
                continue;
            }
            ops.push(parse_op(of, file.value_size, &mut kinds)?);
            total += u64::from(of.weight);
            cumulative.push(total);
        }
        if ops.is_empty() {
            return Err(WorkloadError::Empty);
        }
        let name = file.name.unwrap_or_else(|| default_name.to_string());
        Ok(Workload {
            name,
            ops,
            kinds,
            cumulative,
        })
    }

    /// Requests per operation on average, weights considered.
    pub fn mean_commands(&self) -> f64 {
        let mut prev = 0u64;
        let mut sum = 0.0;
        for (op, &c) in self.ops.iter().zip(&self.cumulative) {
            sum += (c - prev) as f64 * op.commands.len() as f64;
            prev = c;
        }
        sum / prev.max(1) as f64
    }

    /// Picks an operation by weight.
    pub fn pick(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().expect("non-empty");
        let r = rng.below(total);
        self.cumulative.partition_point(|&c| c <= r)
    }

    /// Expands operation `op`: for each command, `emit(kind, key, request_bytes)`.
    /// The key is empty for a command without one.
    pub fn expand(&self, op: usize, g: &mut Gen, mut emit: impl FnMut(usize, &[u8], &[u8])) {
        let op = &self.ops[op];
        g.vals.clear();
        for &(range, _) in &op.vars {
            let v = g.rng.below(range);
            g.vals.push(v);
        }
        g.next_token += 1;
        let token = (g.client << 40) | g.next_token;
        let minute = unix_minute();
        for c in &op.commands {
            g.cmd.clear();
            g.key.clear();
            resp::array_header(&mut g.cmd, c.args.len());
            for (i, t) in c.args.iter().enumerate() {
                g.arg.clear();
                render(t, op, &g.vals, token, minute, &mut g.arg);
                resp::bulk(&mut g.cmd, &g.arg);
                if c.key_arg == Some(i) {
                    g.key.extend_from_slice(&g.arg);
                }
            }
            emit(c.kind, &g.key, &g.cmd);
        }
    }
}

fn unix_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0)
}

fn render(t: &Template, op: &Op, vals: &[u64], token: u64, minute: u64, out: &mut Vec<u8>) {
    for s in &t.0 {
        match s {
            Seg::Lit(b) => out.extend_from_slice(b),
            Seg::Var(i) => {
                let v = vals[*i];
                match op.vars[*i].1 {
                    VarFormat::Int => resp::push_int(out, v as i64),
                    VarFormat::Ip => {
                        let octets = [10, (v >> 16) as u8, (v >> 8) as u8, v as u8];
                        for (j, o) in octets.iter().enumerate() {
                            if j > 0 {
                                out.push(b'.');
                            }
                            resp::push_int(out, i64::from(*o));
                        }
                    }
                }
            }
            Seg::Value => out.extend_from_slice(&op.value),
            Seg::Token => out.extend_from_slice(format_token(token).as_bytes()),
            Seg::Minute => resp::push_int(out, minute as i64),
        }
    }
}

fn format_token(t: u64) -> String {
    format!("{t:016x}")
}

fn parse_op(of: &OpFile, value_size: usize, kinds: &mut Vec<String>) -> Result<Op, WorkloadError> {
    let err = |msg: String| WorkloadError::Op {
        op: of.name.clone(),
        msg,
    };
    let mut names: Vec<&String> = of.vars.keys().collect();
    names.sort();
    let mut vars = Vec::new();
    for n in &names {
        let (range, format) = match &of.vars[*n] {
            VarFile::Range(r) => (*r, None),
            VarFile::Spec { range, format } => (*range, format.as_deref()),
        };
        let format = match format {
            None | Some("int") => VarFormat::Int,
            Some("ip") => VarFormat::Ip,
            Some(f) => {
                return Err(err(format!(
                    "variable {n}: unknown format {f:?} (int or ip)"
                )))
            }
        };
        if range == 0 || (format == VarFormat::Ip && range > 1 << 24) {
            return Err(err(format!(
                "variable {n}: range must be 1..=2^24 for ip, >= 1 otherwise"
            )));
        }
        vars.push((range, format));
    }
    if of.commands.is_empty() {
        return Err(err("no commands".into()));
    }
    let mut commands = Vec::new();
    for c in &of.commands {
        let Some(first) = c.first() else {
            return Err(err("an empty command".into()));
        };
        let name = first.to_ascii_uppercase();
        let args = c
            .iter()
            .map(|a| parse_template(a, &names).map_err(|m| err(format!("{a:?}: {m}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let kind_name = format!("{}:{}", of.name, name);
        let kind = match kinds.iter().position(|k| *k == kind_name) {
            Some(k) => k,
            None => {
                kinds.push(kind_name);
                kinds.len() - 1
            }
        };
        commands.push(CommandTpl {
            key_arg: key_arg(&name, c.len()),
            args,
            kind,
        });
    }
    let size = of.value_size.unwrap_or(value_size);
    Ok(Op {
        name: of.name.clone(),
        vars,
        value: vec![b'v'; size],
        commands,
    })
}

/// The key's position: the first key of EVAL/EVALSHA/FCALL (after the script and
/// numkeys), the first argument otherwise.
fn key_arg(name: &str, argc: usize) -> Option<usize> {
    match name {
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => {
            (argc > 3).then_some(3)
        }
        "PING" | "ECHO" | "INFO" | "TIME" | "DBSIZE" => None,
        _ => (argc > 1).then_some(1),
    }
}

fn parse_template(s: &str, vars: &[&String]) -> Result<Template, String> {
    let mut segs = Vec::new();
    let mut lit = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' if b.get(i + 1) == Some(&b'{') => {
                lit.push(b'{');
                i += 2;
            }
            b'}' if b.get(i + 1) == Some(&b'}') => {
                lit.push(b'}');
                i += 2;
            }
            b'{' => {
                let close = s[i..].find('}').ok_or("unclosed {")? + i;
                let name = &s[i + 1..close];
                let seg = match name {
                    "value" => Seg::Value,
                    "token" => Seg::Token,
                    "minute" => Seg::Minute,
                    _ => match vars.iter().position(|v| v.as_str() == name) {
                        Some(idx) => Seg::Var(idx),
                        None => {
                            return Err(format!(
                                "unknown placeholder {{{name}}} (declare it in vars)"
                            ))
                        }
                    },
                };
                if !lit.is_empty() {
                    segs.push(Seg::Lit(std::mem::take(&mut lit)));
                }
                segs.push(seg);
                i = close + 1;
            }
            b'}' => return Err("a lone } (write }} for a literal one)".into()),
            c => {
                lit.push(c);
                i += 1;
            }
        }
    }
    if !lit.is_empty() {
        segs.push(Seg::Lit(lit));
    }
    Ok(Template(segs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = include_str!("../../workloads/shop.toml");

    fn expand_all(w: &Workload, op: usize, g: &mut Gen) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        w.expand(op, g, |k, key, cmd| {
            out.push((w.kinds[k].clone(), key.to_vec(), cmd.to_vec()))
        });
        out
    }

    #[test]
    fn shipped_workloads_parse() {
        for f in ["get.toml", "set.toml", "shop.toml"] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../workloads")
                .join(f);
            let w = Workload::load(&p).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(!w.kinds.is_empty());
        }
    }

    #[test]
    fn lock_uses_one_key_and_one_token_for_acquire_and_release() {
        let w = Workload::parse(SHOP, "shop").unwrap();
        let lock = w.ops.iter().position(|o| o.name == "lock").unwrap();
        let mut g = Gen::new(3, 1);
        let cmds = expand_all(&w, lock, &mut g);
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].0, "lock:SET");
        assert_eq!(cmds[1].0, "lock:EVAL");
        assert!(cmds[0].1.starts_with(b"lock:product:"));
        assert_eq!(cmds[0].1, cmds[1].1, "same key");
        let text = |c: &[u8]| String::from_utf8(c.to_vec()).unwrap();
        let token = format_token((3 << 40) | 1);
        assert!(text(&cmds[0].2).contains(&token) && text(&cmds[1].2).contains(&token));
        assert!(text(&cmds[0].2).ends_with("$2\r\nNX\r\n$2\r\nEX\r\n$2\r\n10\r\n"));
        // The next operation gets a new token.
        let again = expand_all(&w, lock, &mut g);
        assert!(!text(&again[0].2).contains(&token));
    }

    #[test]
    fn templates_expand_to_valid_resp() {
        let w = Workload::parse(
            r#"
            value_size = 3
            [[op]]
            name = "rl"
            weight = 1
            vars = { ip = { range = 65536, format = "ip" }, n = 1 }
            commands = [["incr", "rl:{ip}:{minute}{{x}}{n}"], ["SET", "k{n}", "{value}"]]
            "#,
            "t",
        )
        .unwrap();
        let mut g = Gen::new(0, 7);
        let cmds = expand_all(&w, 0, &mut g);
        assert_eq!(w.kinds, ["rl:INCR", "rl:SET"]);
        let key = String::from_utf8(cmds[0].1.clone()).unwrap();
        assert!(key.starts_with("rl:10.0."), "{key}");
        assert!(key.ends_with("{x}0"), "{key}");
        assert_eq!(cmds[1].2, b"*3\r\n$3\r\nSET\r\n$2\r\nk0\r\n$3\r\nvvv\r\n");
        let (v, len) = resp::parse(&cmds[0].2).unwrap().unwrap();
        assert_eq!(len, cmds[0].2.len());
        assert!(matches!(v, resp::Value::Array(Some(ref a)) if a.len() == 2));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let bad = [
            (
                "[[op]]\nname='a'\nweight=1\ncommands=[['GET','{nope}']]",
                "unknown placeholder",
            ),
            (
                "[[op]]\nname='a'\nweight=1\ncommands=[['GET','{x']]",
                "unclosed",
            ),
            (
                "[[op]]\nname='a'\nweight=0\ncommands=[['GET','k']]",
                "no operation",
            ),
            ("[[op]]\nname='a'\nweight=1\ncommands=[[]]", "empty command"),
            (
                "[[op]]\nname='a'\nweight=1\nvars={x=0}\ncommands=[['GET','{x}']]",
                "range",
            ),
            (
                "[[op]]\nname='a'\nwieght=1\ncommands=[['GET','k']]",
                "unknown field",
            ),
        ];
        for (text, want) in bad {
            let e = Workload::parse(text, "t").unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn weights_pick_in_proportion() {
        let w = Workload::parse(
            "[[op]]\nname='a'\nweight=1\ncommands=[['GET','a']]\n[[op]]\nname='b'\nweight=3\ncommands=[['GET','b']]",
            "t",
        )
        .unwrap();
        let mut rng = Rng::new(42);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[w.pick(&mut rng)] += 1;
        }
        let share = f64::from(counts[1]) / 40_000.0;
        assert_eq!(w.mean_commands(), 1.0);
        let shop = Workload::parse(SHOP, "shop").unwrap();
        // 100 weight: 15 operations of two requests (rate limit, lock, saga; 20+5+5 = 30).
        assert!(
            (shop.mean_commands() - 1.3).abs() < 1e-9,
            "{}",
            shop.mean_commands()
        );
        assert!((share - 0.75).abs() < 0.02, "{counts:?}");
    }
}
