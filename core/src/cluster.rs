//! Redis Cluster arithmetic: which slot a key hashes to, and which slots a node serves.

/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The slot of `key`: CRC16 (XMODEM) of its hash tag (the text between the first `{`
/// and the next `}`, if not empty) or of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |crc, _| {
            if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            }
        })
    })
}

/// The slot ranges (inclusive) this node serves, from `CLUSTER NODES` output: the slots
/// on the line flagged `myself` (importing/migrating markers in brackets are skipped).
pub fn my_slots(cluster_nodes: &str) -> Vec<(u16, u16)> {
    let Some(line) = cluster_nodes.lines().find(|line| {
        line.split(' ')
            .nth(2)
            .is_some_and(|flags| flags.split(',').any(|f| f == "myself"))
    }) else {
        return Vec::new();
    };
    line.split(' ')
        .skip(8)
        .filter(|token| !token.starts_with('['))
        .filter_map(|token| {
            let (first, last) = token.split_once('-').unwrap_or((token, token));
            Some((first.parse().ok()?, last.parse().ok()?))
        })
        .collect()
}

/// Whether `slot` is in one of `ranges`.
pub fn serves(ranges: &[(u16, u16)], slot: u16) -> bool {
    ranges
        .iter()
        .any(|&(first, last)| (first..=last).contains(&slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // CRC16/XMODEM check value, and slots as CLUSTER KEYSLOT reports them.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"user:{1000}:name"), key_slot(b"1000"));
        assert_eq!(
            key_slot(b"{}x"),
            key_slot(b"{}x"),
            "an empty tag hashes the whole key"
        );
        assert_ne!(key_slot(b"{}x"), key_slot(b""));
        assert_eq!(key_slot(b"a{b}{c}"), key_slot(b"b"));
        assert_eq!(key_slot(b"{open"), crc16(b"{open") % SLOTS);
    }

    #[test]
    fn my_slots_from_cluster_nodes() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 10923 [10924->-abc]
";
        let mine = my_slots(nodes);
        assert_eq!(mine, vec![(0, 5460), (10923, 10923)]);
        assert!(serves(&mine, 0) && serves(&mine, 5460) && serves(&mine, 10923));
        assert!(!serves(&mine, 5461) && !serves(&mine, 10924));
        assert!(my_slots("").is_empty());
    }
}
