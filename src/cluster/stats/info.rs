//! `INFO ALL` text to the values respgate exports, named as redis_exporter names them.
//!
//! Pure: text in, values out, no I/O, so it is tested on INFO replies captured from a
//! real redis-server 7.0.15 (`tests/fixtures/info-all-7.0-*.txt`). The table
//! [`FIELDS`] is the whole mapping: one row per exported INFO field, its metric name, its
//! help text and how its value reads (a number, or a `_status` field that is `1` when
//! `ok`, as redis_exporter reads them).

/// How an INFO field's value becomes a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The value is a number (integer or decimal).
    Number,
    /// `ok` is 1, anything else (`err`) 0.
    Status,
}

/// One exported INFO field: `(field, metric, how it reads, help)`.
pub type Field = (&'static str, &'static str, Read, &'static str);

/// Every INFO field respgate exports, with redis_exporter's metric name.
#[rustfmt::skip]
pub const FIELDS: &[Field] = &[
    ("uptime_in_seconds", "redis_uptime_in_seconds", Read::Number, "Seconds since the node started."),
    ("connected_clients", "redis_connected_clients", Read::Number, "Client connections (replicas excluded)."),
    ("blocked_clients", "redis_blocked_clients", Read::Number, "Clients waiting in a blocking command."),
    ("used_memory", "redis_memory_used_bytes", Read::Number, "Bytes allocated by the node (used_memory)."),
    ("maxmemory", "redis_memory_max_bytes", Read::Number, "The maxmemory setting (0: no limit)."),
    ("rdb_changes_since_last_save", "redis_rdb_changes_since_last_save", Read::Number, "Writes since the last RDB save."),
    ("rdb_last_bgsave_status", "redis_rdb_last_bgsave_status", Read::Status, "1 when the last BGSAVE succeeded."),
    ("aof_enabled", "redis_aof_enabled", Read::Number, "1 when AOF is on."),
    ("aof_rewrite_in_progress", "redis_aof_rewrite_in_progress", Read::Number, "1 while an AOF rewrite runs."),
    ("aof_last_bgrewrite_status", "redis_aof_last_bgrewrite_status", Read::Status, "1 when the last AOF rewrite succeeded."),
    ("aof_last_write_status", "redis_aof_last_write_status", Read::Status, "1 when the last AOF write succeeded."),
    ("total_commands_processed", "redis_commands_processed_total", Read::Number, "Commands processed since start."),
    ("instantaneous_ops_per_sec", "redis_instantaneous_ops_per_sec", Read::Number, "Commands per second, as the node samples it."),
    ("evicted_keys", "redis_evicted_keys_total", Read::Number, "Keys evicted for maxmemory since start."),
    ("keyspace_hits", "redis_keyspace_hits_total", Read::Number, "Successful key lookups since start."),
    ("keyspace_misses", "redis_keyspace_misses_total", Read::Number, "Failed key lookups since start."),
    ("connected_slaves", "redis_connected_slaves", Read::Number, "Replicas connected to this node."),
    ("master_repl_offset", "redis_master_repl_offset", Read::Number, "The node's replication offset."),
    ("used_cpu_sys", "redis_cpu_sys_seconds_total", Read::Number, "System CPU seconds used by the node."),
    ("used_cpu_user", "redis_cpu_user_seconds_total", Read::Number, "User CPU seconds used by the node."),
];

/// One `slaveN:` line of a master's replication section.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaLine {
    pub ip: String,
    pub port: String,
    pub state: String,
    /// The replica's acknowledged replication offset.
    pub offset: f64,
    /// Seconds since the replica's last acknowledgement.
    pub lag: f64,
}

/// What respgate exports of one node's `INFO ALL`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    /// `role:` as the node says (`master` or `slave`).
    pub role: Option<String>,
    /// `(metric, value)` for each row of [`FIELDS`] the reply has, in table order.
    pub values: Vec<(&'static str, f64)>,
    /// The replicas a master reports.
    pub replicas: Vec<ReplicaLine>,
}

impl NodeInfo {
    /// The value of `metric`, if the reply had its field.
    #[cfg(test)]
    pub fn value(&self, metric: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| *v)
    }
}

/// Parses an INFO reply's text (any sections; `\r\n` or `\n` line ends). Lines it does not
/// know, section headers and values that do not read as numbers are skipped.
pub fn parse(text: &str) -> NodeInfo {
    let mut info = NodeInfo::default();
    let mut found: Vec<Option<f64>> = vec![None; FIELDS.len()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        if field == "role" {
            info.role = Some(value.to_string());
        } else if let Some(replica) = field
            .strip_prefix("slave")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|_| replica_line(value))
        {
            info.replicas.push(replica);
        } else if let Some(i) = FIELDS.iter().position(|(f, ..)| *f == field) {
            found[i] = read(FIELDS[i].2, value);
        }
    }
    info.values = FIELDS
        .iter()
        .zip(found)
        .filter_map(|((_, metric, ..), v)| Some((*metric, v?)))
        .collect();
    info
}

fn read(how: Read, value: &str) -> Option<f64> {
    match how {
        Read::Number => value.trim().parse::<f64>().ok().filter(|v| v.is_finite()),
        Read::Status => Some(if value.trim() == "ok" { 1.0 } else { 0.0 }),
    }
}

/// `ip=127.0.0.1,port=7004,state=online,offset=1234,lag=0`.
fn replica_line(value: &str) -> Option<ReplicaLine> {
    let mut line = ReplicaLine {
        ip: String::new(),
        port: String::new(),
        state: String::new(),
        offset: 0.0,
        lag: 0.0,
    };
    for pair in value.split(',') {
        let (k, v) = pair.split_once('=')?;
        match k {
            "ip" => line.ip = v.to_string(),
            "port" => line.port = v.to_string(),
            "state" => line.state = v.to_string(),
            "offset" => line.offset = v.parse().ok()?,
            "lag" => line.lag = v.parse().ok()?,
            _ => {}
        }
    }
    (!line.ip.is_empty() && !line.port.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = include_str!("../../../tests/fixtures/info-all-7.0-master.txt");
    const REPLICA: &str = include_str!("../../../tests/fixtures/info-all-7.0-replica.txt");

    #[test]
    fn a_real_masters_info_all_gives_every_field() {
        let info = parse(MASTER);
        assert_eq!(info.role.as_deref(), Some("master"));
        assert_eq!(info.values.len(), FIELDS.len(), "{:?}", info.values);
        assert_eq!(info.value("redis_memory_used_bytes"), Some(1921408.0));
        assert_eq!(info.value("redis_memory_max_bytes"), Some(104857600.0));
        assert_eq!(info.value("redis_aof_enabled"), Some(1.0));
        assert_eq!(info.value("redis_aof_last_write_status"), Some(1.0));
        assert_eq!(info.value("redis_rdb_last_bgsave_status"), Some(1.0));
        assert_eq!(info.value("redis_connected_slaves"), Some(1.0));
        let cpu = info.value("redis_cpu_sys_seconds_total").unwrap();
        assert!(cpu > 0.0 && cpu.fract() != 0.0, "a decimal: {cpu}");
        assert!(info.value("redis_commands_processed_total").unwrap() > 50.0);
        assert!(info.value("redis_keyspace_hits_total").unwrap() >= 1.0);
        assert!(info.value("redis_keyspace_misses_total").unwrap() >= 1.0);
        assert_eq!(
            info.replicas,
            vec![ReplicaLine {
                ip: "127.0.0.1".into(),
                port: "7992".into(),
                state: "online".into(),
                offset: 1569.0,
                lag: 1.0,
            }]
        );
    }

    #[test]
    fn a_real_replicas_info_all_says_slave_and_lists_no_replica() {
        let info = parse(REPLICA);
        assert_eq!(info.role.as_deref(), Some("slave"));
        assert!(info.replicas.is_empty());
        assert_eq!(info.value("redis_memory_used_bytes"), Some(1752680.0));
        assert_eq!(info.value("redis_connected_slaves"), Some(0.0));
        assert!(info.value("redis_master_repl_offset").unwrap() > 0.0);
    }

    #[test]
    fn statuses_read_ok_as_one_and_anything_else_as_zero() {
        let info =
            parse("# Persistence\r\naof_last_write_status:err\r\nrdb_last_bgsave_status:ok\r\n");
        assert_eq!(info.value("redis_aof_last_write_status"), Some(0.0));
        assert_eq!(info.value("redis_rdb_last_bgsave_status"), Some(1.0));
        assert_eq!(info.value("redis_memory_used_bytes"), None);
    }

    #[test]
    fn odd_lines_are_skipped() {
        let info = parse(
            "used_memory:abc\nmaxmemory:nan\nslave:ip=x\nslave0:garbage\n\
             slave1:ip=10.0.0.1,port=6380,state=wait_bgsave,offset=0,lag=0\nno colon\n",
        );
        assert!(info.values.is_empty(), "{:?}", info.values);
        assert_eq!(info.replicas.len(), 1);
        assert_eq!(info.replicas[0].state, "wait_bgsave");
    }
}
