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

/// What a `MIGRATE` moves, from its arguments (the command's name first): the
/// destination's host and port and the keys; `None` for a `MIGRATE … COPY` (which keeps
/// the keys here) or arguments that are no MIGRATE. `MIGRATE host port key|"" db timeout
/// [COPY] [REPLACE] [AUTH password] [AUTH2 username password] [KEYS key …]`.
pub fn migrated_keys<'a>(args: &[&'a [u8]]) -> Option<(String, u16, Vec<&'a [u8]>)> {
    let [name, host, port, key, _db, _timeout, options @ ..] = args else {
        return None;
    };
    if !name.eq_ignore_ascii_case(b"MIGRATE") {
        return None;
    }
    let host = std::str::from_utf8(host).ok()?.to_owned();
    let port = std::str::from_utf8(port).ok()?.parse().ok()?;
    let mut keys = Vec::new();
    if !key.is_empty() {
        keys.push(*key);
    }
    let mut at = 0;
    while let Some(option) = options.get(at) {
        let skip = match option.to_ascii_uppercase().as_slice() {
            b"COPY" => return None,
            b"REPLACE" => 1,
            b"AUTH" => 2,
            b"AUTH2" => 3,
            b"KEYS" => {
                keys.extend_from_slice(&options[at + 1..]);
                break;
            }
            _ => return None,
        };
        at += skip;
    }
    (!keys.is_empty()).then_some((host, port, keys))
}

/// The slot a `CLUSTER SETSLOT <slot> NODE <node-id>` gives to a node (or `… MIGRATING
/// <node-id>` starts moving to it), and that node's id, from its arguments (the command's
/// name first); `None` for anything else.
pub fn slot_given<'a>(args: &[&'a [u8]]) -> Option<(u16, &'a [u8])> {
    let [name, subcommand, slot, how, id] = args else {
        return None;
    };
    let is = |arg: &[u8], word: &[u8]| arg.eq_ignore_ascii_case(word);
    if !is(name, b"CLUSTER")
        || !is(subcommand, b"SETSLOT")
        || !(is(how, b"NODE") || is(how, b"MIGRATING"))
    {
        return None;
    }
    let slot: u16 = std::str::from_utf8(slot).ok()?.parse().ok()?;
    (slot < SLOTS).then_some((slot, *id))
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
    fn migrate_arguments_name_what_moves_where() {
        let args = |line: &str| -> Vec<Vec<u8>> {
            line.split(' ')
                .map(|word| word.replace("''", "").into_bytes())
                .collect()
        };
        let parsed = |line: &str| {
            let owned = args(line);
            let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            migrated_keys(&refs).map(|(host, port, keys)| {
                (
                    host,
                    port,
                    keys.iter()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect::<Vec<_>>(),
                )
            })
        };
        assert_eq!(
            parsed("MIGRATE 10.0.0.2 7001 user:1 0 5000"),
            Some(("10.0.0.2".into(), 7001, vec!["user:1".to_owned()]))
        );
        assert_eq!(
            parsed("migrate 127.0.0.1 7002 '' 0 5000 REPLACE AUTH2 u p KEYS a b"),
            Some((
                "127.0.0.1".into(),
                7002,
                vec!["a".to_owned(), "b".to_owned()]
            ))
        );
        assert_eq!(
            parsed("MIGRATE 127.0.0.1 7002 '' 0 5000 AUTH KEYS KEYS k"),
            Some(("127.0.0.1".into(), 7002, vec!["k".to_owned()]))
        );
        for kept in [
            "MIGRATE h 1 k 0 5000 COPY",
            "MIGRATE h 1 '' 0 5000",
            "MIGRATE h port k 0 5000",
            "MIGRATE h 1 k 0 5000 BOGUS",
            "GET k",
            "MIGRATE h 1 k",
        ] {
            assert_eq!(parsed(kept), None, "{kept}");
        }
    }

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

    #[test]
    fn slots_given_to_a_node() {
        let id: &[u8] = b"67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1";
        let words = |line: &'static str| -> Vec<&'static [u8]> {
            line.split(' ').map(str::as_bytes).collect()
        };
        let mut args = words("cluster setslot 15495 node");
        args.push(id);
        assert_eq!(slot_given(&args), Some((15495, id)));
        assert_eq!(
            slot_given(&words("CLUSTER SETSLOT 7 MIGRATING abc")),
            Some((7, &b"abc"[..]))
        );
        for other in [
            "CLUSTER SETSLOT 15495 IMPORTING x",
            "CLUSTER SETSLOT 15495 STABLE",
            "CLUSTER SETSLOT 16384 NODE x",
            "CLUSTER SETSLOT -1 NODE x",
            "CLUSTER SLOTS",
            "SET SETSLOT 1 NODE x",
        ] {
            assert_eq!(slot_given(&words(other)), None, "{other}");
        }
    }
}
