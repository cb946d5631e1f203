//! Redis Cluster's hash slot of a key: CRC16/XMODEM of the key (or of its `{hash tag}`)
//! modulo 16384. The tool's own, through the `crc` crate, independent of respgate's.

use crc::{Crc, CRC_16_XMODEM};

pub const SLOTS: u16 = 16384;
const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// The hash slot of `key`, honouring the first non-empty `{...}` hash tag.
pub fn key_slot(key: &[u8]) -> u16 {
    CRC16.checksum(hashed_part(key)) % SLOTS
}

fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values answered by `CLUSTER KEYSLOT` of redis-server 7.0.15.
    #[test]
    fn matches_cluster_keyslot() {
        let known: &[(&str, u16)] = &[
            ("foo", 12182),
            ("bar", 5061),
            ("123456789", 12739),
            ("session:42", 2126),
            ("{user1000}.following", 3443),
            ("{user1000}.followers", 3443),
            ("foo{}{bar}", 8363),
            ("foo{{bar}}zap", 4015),
            ("lock:product:7", 3436),
            ("", 0),
        ];
        for (key, slot) in known {
            assert_eq!(key_slot(key.as_bytes()), *slot, "{key}");
        }
    }
}
