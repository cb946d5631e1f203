//! Redis Cluster hash slots: CRC16 (XMODEM) of the key, or of its `{hash tag}`, mod 16384.

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// Slice-by-16 tables (8 KiB): a typical 10-30 byte key is hashed 16 bytes per step
/// instead of one; the per-byte table made slot hashing ~4% of respgate's CPU at `-P 16`.
const CRC16: crc::Crc<u16, crc::Table<16>> =
    crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_XMODEM);

/// The hash slot of `key`, honouring hash tags exactly as Redis does: the first `{`
/// followed by a non-empty run up to the next `}` selects what is hashed.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    CRC16.checksum(hashed) & (SLOTS as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_reference_values() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn hash_tags_select_the_hashed_part() {
        assert_eq!(key_slot(b"{user1}:a"), key_slot(b"{user1}:b"));
        assert_eq!(key_slot(b"{user1}:a"), key_slot(b"user1"));
        // Empty tag: the whole key is hashed.
        assert_eq!(key_slot(b"{}foo"), CRC16.checksum(b"{}foo") & 16383);
        // Only the first `{` counts.
        assert_eq!(key_slot(b"foo{{bar}}"), key_slot(b"{bar"));
        // No closing brace.
        assert_eq!(key_slot(b"foo{bar"), CRC16.checksum(b"foo{bar") & 16383);
    }
}
