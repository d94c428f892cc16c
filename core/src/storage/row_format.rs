//! How a key's sibling set is stored in a row: a format marker, then the
//! sibling set in the project's codec ([`crate::codec`]). Rows of every
//! earlier format are still read. One copy, used by every row backend and
//! by the simulator's checks that read a node's committed rows.
//!
//! | format | marker | layout |
//! | --- | --- | --- |
//! | 4 (written) | `qlrow4\0\xff` | postcard of [`Siblings`] (versions with timestamps) |
//! | 3 | `qlrow3\0\xff` | postcard of the sibling set, versions without timestamps |
//! | 2 | `qlrow2\0\xff` | bincode 1 (fixint) of the sibling set: versions with incarnations, and `seen` |
//! | 1 | none | bincode 1 (fixint) of the versions, before incarnations |
use crate::codec::{self, legacy::Reader};
use crate::store::StoreError;
use crate::version::{Actor, Dot, Siblings, Version, VersionVector};

/// Marks a row in the current format, followed by the codec of
/// [`Siblings`]. Rows of format 1 have no marker: they start with their
/// version count as a little-endian u64, whose last byte is 0xFF only for
/// a count above 2^56 — so a row whose eighth byte is 0xFF is never one.
pub const ROW_FORMAT_4: [u8; 8] = *b"qlrow4\x00\xff";
/// The marker of format 3 rows (the codec, versions without timestamps),
/// still read.
pub const ROW_FORMAT_3: [u8; 8] = *b"qlrow3\x00\xff";
/// The marker of format 2 rows (bincode, with incarnations), still read.
pub const ROW_FORMAT_2: [u8; 8] = *b"qlrow2\x00\xff";
/// Length of a format marker; the marker's last byte is always 0xFF.
pub const MARKER_LEN: usize = ROW_FORMAT_4.len();

/// Stored form of a sibling set: the format marker, then its encoding.
pub fn encode(siblings: &Siblings) -> Result<Vec<u8>, StoreError> {
    let mut row = Vec::with_capacity(MARKER_LEN + codec::encoded_size(siblings));
    row.extend_from_slice(&ROW_FORMAT_4);
    codec::encode_into(siblings, row)
        .map_err(|e| StoreError::Backend(format!("cannot encode siblings: {e}")))
}

/// Decode a stored row, in the current format or an earlier one.
pub fn decode(key: &str, data: &[u8]) -> Result<Siblings, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    match data.get(..MARKER_LEN) {
        Some(marker) if marker == ROW_FORMAT_4 => {
            codec::decode(&data[MARKER_LEN..]).map_err(|e| corrupt(e.to_string()))
        }
        Some(marker) if marker == ROW_FORMAT_3 => {
            format3(&data[MARKER_LEN..]).map_err(|e| corrupt(format!("format 3 row: {e}")))
        }
        Some(marker) if marker == ROW_FORMAT_2 => {
            format2(&data[MARKER_LEN..]).map_err(|e| corrupt(format!("format 2 row: {e}")))
        }
        Some(marker) if marker[MARKER_LEN - 1] == 0xFF => Err(corrupt(format!(
            "unknown row format {:?} (written by a newer quorumd?)",
            String::from_utf8_lossy(marker)
        ))),
        _ => format1(data).map_err(|e| corrupt(format!("legacy row (no format marker): {e}"))),
    }
}

/// Format 3 as it was written: the codec of the sibling set, versions
/// without timestamps. Mirrored here, privately, so those rows stay
/// readable whatever the core's types become.
mod format3_layout {
    use crate::version::{Dot, VersionVector};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub(super) struct Version3 {
        pub dot: Dot,
        pub context: VersionVector,
        pub value: String,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Siblings3 {
        pub versions: Vec<Version3>,
        pub seen: VersionVector,
    }
}

fn format3(data: &[u8]) -> Result<Siblings, String> {
    let format3_layout::Siblings3 { versions, seen } =
        codec::decode(data).map_err(|e| e.to_string())?;
    let versions = versions.into_iter().map(|v| Version {
        dot: v.dot,
        context: v.context,
        value: v.value,
        timestamp_ms: 0,
    });
    Siblings::from_parts(versions, seen).map_err(|e| e.to_string())
}

/// Smallest encodings, to bound length prefixes by what a row can hold.
const MIN_VERSION_2: usize = 16 + 8 + 8;
const MIN_ENTRY_2: usize = 16;
const MIN_VERSION_1: usize = 12 + 8 + 8;
const MIN_ENTRY_1: usize = 12;

fn vector2(reader: &mut Reader<'_>) -> Result<VersionVector, String> {
    let len = reader.len(MIN_ENTRY_2).map_err(|e| e.to_string())?;
    let mut entries = Vec::with_capacity(len);
    for _ in 0..len {
        let node = reader.u32().map_err(|e| e.to_string())?;
        let incarnation = reader.u32().map_err(|e| e.to_string())?;
        let counter = reader.u64().map_err(|e| e.to_string())?;
        entries.push((Actor::new(node, incarnation), counter));
    }
    Ok(VersionVector::from_entries(entries))
}

/// Format 2: `Siblings { versions: Vec<Version { dot: Dot { node: u32,
/// incarnation: u32, counter: u64 }, context: map Actor → u64, value:
/// String }>, seen: map Actor → u64 }`, bincode 1 fixint.
fn format2(data: &[u8]) -> Result<Siblings, String> {
    let mut reader = Reader::new(data);
    let count = reader.len(MIN_VERSION_2).map_err(|e| e.to_string())?;
    let mut versions = Vec::with_capacity(count);
    for _ in 0..count {
        let node = reader.u32().map_err(|e| e.to_string())?;
        let incarnation = reader.u32().map_err(|e| e.to_string())?;
        let counter = reader.u64().map_err(|e| e.to_string())?;
        let context = vector2(&mut reader)?;
        let value = reader.string().map_err(|e| e.to_string())?;
        versions.push(Version {
            dot: Dot::new(Actor::new(node, incarnation), counter),
            context,
            value,
            timestamp_ms: 0,
        });
    }
    let seen = vector2(&mut reader)?;
    reader.finish().map_err(|e| e.to_string())?;
    Siblings::from_parts(versions, seen).map_err(|e| e.to_string())
}

/// Format 1, before incarnations: `Vec<Version { dot: { node: u32,
/// counter: u64 }, context: map u32 → u64, value: String }>`; every actor
/// is incarnation 0.
fn format1(data: &[u8]) -> Result<Siblings, String> {
    let mut reader = Reader::new(data);
    let count = reader.len(MIN_VERSION_1).map_err(|e| e.to_string())?;
    let mut versions = Vec::with_capacity(count);
    for _ in 0..count {
        let node = reader.u32().map_err(|e| e.to_string())?;
        let counter = reader.u64().map_err(|e| e.to_string())?;
        let len = reader.len(MIN_ENTRY_1).map_err(|e| e.to_string())?;
        let mut entries = Vec::with_capacity(len);
        for _ in 0..len {
            let node = reader.u32().map_err(|e| e.to_string())?;
            let counter = reader.u64().map_err(|e| e.to_string())?;
            entries.push((Actor::new(node, 0), counter));
        }
        let value = reader.string().map_err(|e| e.to_string())?;
        versions.push(Version {
            dot: Dot::new(Actor::new(node, 0), counter),
            context: VersionVector::from_entries(entries),
            value,
            timestamp_ms: 0,
        });
    }
    reader.finish().map_err(|e| e.to_string())?;
    // The legacy set was a valid sibling set; rebuilding it checks that
    // again (two versions under one dot are corruption, not a choice).
    Siblings::from_versions(versions).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_rows_are_reported_not_panicked_on() {
        assert!(matches!(
            decode("k", &[0xff; 3]),
            Err(StoreError::Corrupt { .. })
        ));
        let mut huge = Vec::new();
        huge.extend(u64::MAX.to_le_bytes());
        assert!(matches!(
            decode("k", &huge),
            Err(StoreError::Corrupt { .. })
        ));
        // Rows whose sibling count is absurd allocate nothing.
        for marker in [ROW_FORMAT_4, ROW_FORMAT_3, ROW_FORMAT_2] {
            let mut huge = marker.to_vec();
            huge.extend([0xff; 9]);
            huge.push(0x01);
            assert!(matches!(
                decode("k", &huge),
                Err(StoreError::Corrupt { .. })
            ));
        }
    }

    fn sample() -> Siblings {
        Siblings::from_versions([
            Version {
                dot: Dot::new(Actor::new(3, 7), 2),
                context: VersionVector::from_entries([(Actor::new(1, 0), 4)]),
                value: "a".into(),
                timestamp_ms: 0,
            },
            Version {
                dot: Dot::new(Actor::new(2, 9), 1),
                context: VersionVector::new(),
                value: "b".into(),
                timestamp_ms: 0,
            },
        ])
        .expect("a sibling set")
    }

    #[test]
    fn rows_carry_a_format_marker_and_round_trip() {
        let set = sample();
        let row = encode(&set).expect("encode");
        assert_eq!(&row[..MARKER_LEN], &ROW_FORMAT_4);
        assert_eq!(decode("k", &row), Ok(set));
        assert_eq!(
            decode("k", &encode(&Siblings::new()).expect("encode")),
            Ok(Siblings::new())
        );
        // Trailing bytes are not a row we wrote.
        let mut longer = encode(&sample()).expect("encode");
        longer.push(0);
        assert!(matches!(
            decode("k", &longer),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// No format 1 row can look like a marked one: its first eight bytes
    /// are its version count, and no count has a top byte of 0xFF.
    #[test]
    fn the_markers_are_never_a_legacy_prefix() {
        for marker in [ROW_FORMAT_4, ROW_FORMAT_3, ROW_FORMAT_2] {
            assert_eq!(marker[MARKER_LEN - 1], 0xFF);
            assert!(u64::from_le_bytes(marker) >= 0xFF << 56);
        }
    }

    /// A format 2 row as the previous release wrote it, byte for byte (from
    /// a node's SQLite database): versions n1.349444580:1 "left" and :2
    /// "right", no contexts, nothing seen.
    const FORMAT_2_ROW: &str = "716C726F773200FF020000000000000001000000E419D4140100000000000000000000000000000004000000000000006C65667401000000E419D41402000000000000000000000000000000050000000000000072696768740000000000000000";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Format 3 rows, the codec without timestamps: read, every version
    /// with timestamp 0 (unknown).
    #[test]
    fn format_3_rows_still_read() {
        let actor = Actor::new(4, 2);
        let mut row = ROW_FORMAT_3.to_vec();
        row = codec::encode_into(
            &format3_layout::Siblings3 {
                versions: vec![format3_layout::Version3 {
                    dot: Dot::new(actor, 3),
                    context: VersionVector::from_entries([(actor, 2)]),
                    value: "v".into(),
                }],
                seen: VersionVector::from_entries([(actor, 2)]),
            },
            row,
        )
        .expect("encode");
        let set = decode("k", &row).expect("a format 3 row");
        assert_eq!(set.versions().len(), 1);
        let v = &set.versions()[0];
        assert_eq!(
            (v.dot, v.value.as_str(), v.timestamp_ms),
            (Dot::new(actor, 3), "v", 0)
        );
        assert!(set.seen().covers(Dot::new(actor, 2)));
        assert!(matches!(
            decode("k", &row[..row.len() - 1]),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// What a format 3 row had seen can cover more than its versions'
    /// contexts (the dots of versions merged and superseded since): read,
    /// it is kept, so those dots stay superseded.
    #[test]
    fn a_format_3_row_keeps_what_it_had_seen() {
        let (actor, gone) = (Actor::new(4, 2), Actor::new(5, 1));
        let seen = VersionVector::from_entries([(actor, 2), (gone, 6)]);
        let row = codec::encode_into(
            &format3_layout::Siblings3 {
                versions: vec![format3_layout::Version3 {
                    dot: Dot::new(actor, 3),
                    context: VersionVector::from_entries([(actor, 2)]),
                    value: "v".into(),
                }],
                seen: seen.clone(),
            },
            ROW_FORMAT_3.to_vec(),
        )
        .expect("encode");
        let set = decode("k", &row).expect("a format 3 row");
        assert!(set.seen().covers(Dot::new(gone, 6)), "{:?}", set.seen());
        assert_eq!(set.versions().len(), 1);
    }

    #[test]
    fn format_2_rows_still_read() {
        let row = unhex(FORMAT_2_ROW);
        let set = decode("fixture-b", &row).expect("a format 2 row");
        let actor = Actor::new(1, 349_444_580);
        let found: Vec<(Dot, &str)> = set
            .versions()
            .iter()
            .map(|v| (v.dot, v.value.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![(Dot::new(actor, 1), "left"), (Dot::new(actor, 2), "right")]
        );
        // Rewritten, it is a format 4 row of the same siblings.
        let rewritten = encode(&set).expect("encode");
        assert_eq!(&rewritten[..MARKER_LEN], &ROW_FORMAT_4);
        assert_eq!(decode("k", &rewritten), Ok(set));
        // Cut short, it is corrupt, not a panic.
        assert!(matches!(
            decode("k", &row[..row.len() - 3]),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// A row as the release before incarnations wrote it, byte for byte:
    /// one version with dot n3:2, context {n1: 4}, value "v".
    const LEGACY_ROW: &[u8] = &[
        1, 0, 0, 0, 0, 0, 0, 0, // one version
        3, 0, 0, 0, // dot.node
        2, 0, 0, 0, 0, 0, 0, 0, // dot.counter
        1, 0, 0, 0, 0, 0, 0, 0, // one context entry
        1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, // n1 → 4
        1, 0, 0, 0, 0, 0, 0, 0, b'v', // value
    ];

    #[test]
    fn legacy_rows_decode_to_incarnation_zero() {
        let expected = Siblings::from_versions([Version {
            dot: Dot::new(Actor::new(3, 0), 2),
            context: VersionVector::from_entries([(Actor::new(1, 0), 4)]),
            value: "v".into(),
            timestamp_ms: 0,
        }])
        .expect("a sibling set");
        assert_eq!(decode("k", LEGACY_ROW), Ok(expected.clone()));
        let rewritten = encode(&expected).expect("encode");
        assert_eq!(&rewritten[..MARKER_LEN], &ROW_FORMAT_4);
        assert_eq!(decode("k", &rewritten), Ok(expected));
    }

    #[test]
    fn bad_legacy_rows_and_unknown_formats_are_corrupt() {
        // Two versions under one dot with different values.
        let mut conflicting = Vec::new();
        conflicting.extend(2u64.to_le_bytes());
        for value in [b'x', b'y'] {
            conflicting.extend(1u32.to_le_bytes());
            conflicting.extend(1u64.to_le_bytes());
            conflicting.extend(0u64.to_le_bytes());
            conflicting.extend(1u64.to_le_bytes());
            conflicting.push(value);
        }
        match decode("k", &conflicting) {
            Err(StoreError::Corrupt { key, reason }) => {
                assert_eq!(key, "k");
                assert!(reason.contains("legacy row"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let future = *b"qlrow5\x00\xff";
        match decode("k", &future) {
            Err(StoreError::Corrupt { reason, .. }) => {
                assert!(reason.contains("unknown row format"), "{reason}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_format_2_or_legacy_row_with_a_byte_after_it_is_corrupt() {
        for valid in [unhex(FORMAT_2_ROW), LEGACY_ROW.to_vec()] {
            assert!(decode("k", &valid).is_ok());
            let mut longer = valid;
            longer.push(0);
            assert!(matches!(
                decode("k", &longer),
                Err(StoreError::Corrupt { .. })
            ));
        }
    }

    /// A legacy row of two versions with no context and one-byte values:
    /// each version is 29 bytes, near the smallest a version can be (28),
    /// so a bound on the count that assumed larger versions refuses it.
    #[test]
    fn a_legacy_row_of_small_versions_reads() {
        let mut row = 2u64.to_le_bytes().to_vec();
        for (node, value) in [(1u32, b'x'), (2, b'y')] {
            row.extend(node.to_le_bytes());
            row.extend(1u64.to_le_bytes()); // dot counter
            row.extend(0u64.to_le_bytes()); // no context entries
            row.extend(1u64.to_le_bytes()); // value length
            row.push(value);
        }
        let set = decode("k", &row).expect("a legacy row");
        let values: Vec<&str> = set.versions().iter().map(|v| v.value.as_str()).collect();
        assert_eq!(values.len(), 2);
        assert!(values.contains(&"x") && values.contains(&"y"), "{values:?}");
    }
}
