//! How a key's sibling set is stored in a row: a format marker, then the
//! bincode of [`Siblings`]; rows from before incarnations (no marker) are
//! still read. One copy, used by every row backend and by the simulator's
//! checks that read a node's committed rows.
use crate::store::StoreError;
use crate::version::Siblings;

/// Marks a row in the current format (sibling sets with incarnations),
/// followed by the bincode of [`Siblings`]. Rows written before it have no
/// marker: they start with their sibling count as a little-endian u64,
/// whose last byte is 0xFF only for a count above 2^56 — so a row whose
/// eighth byte is 0xFF is never a legacy row.
pub const ROW_FORMAT_2: [u8; 8] = *b"qlrow2\x00\xff";
/// Length of a format marker; the marker's last byte is always 0xFF.
pub const MARKER_LEN: usize = ROW_FORMAT_2.len();

/// Stored form of a sibling set: the format marker, then its bincode.
pub fn encode(siblings: &Siblings) -> Result<Vec<u8>, StoreError> {
    let size = bincode::serialized_size(siblings)
        .map_err(|e| StoreError::Backend(format!("cannot encode siblings: {e}")))?;
    let mut row = Vec::with_capacity(MARKER_LEN.saturating_add(size as usize));
    row.extend_from_slice(&ROW_FORMAT_2);
    bincode::serialize_into(&mut row, siblings)
        .map_err(|e| StoreError::Backend(format!("cannot encode siblings: {e}")))?;
    Ok(row)
}

/// Decode a stored row, in the current format or the legacy one (before
/// incarnations: every dot and context entry then is incarnation 0).
pub fn decode(key: &str, data: &[u8]) -> Result<Siblings, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    match data.get(..MARKER_LEN) {
        Some(marker) if marker == ROW_FORMAT_2 => {
            bounded_bincode(&data[MARKER_LEN..]).map_err(|e| corrupt(e.to_string()))
        }
        Some(marker) if marker[MARKER_LEN - 1] == 0xFF => Err(corrupt(format!(
            "unknown row format {:?} (written by a newer quorumd?)",
            String::from_utf8_lossy(marker)
        ))),
        _ => legacy::decode(data).map_err(corrupt),
    }
}

/// bincode as `bincode::serialize` writes it (fixint), bounded by the
/// row's own length so a corrupt length prefix cannot allocate more, and
/// refusing trailing bytes.
fn bounded_bincode<T: serde::de::DeserializeOwned>(data: &[u8]) -> bincode::Result<T> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(data.len() as u64)
        .deserialize(data)
}

/// Rows as written before incarnations existed: a dot was `(node,
/// counter)` and a context a map from node id to counter. Mirrored here,
/// privately, so those rows stay readable whatever the core's types become.
mod legacy {
    use crate::version::{Dot, Siblings, Version, VersionVector};
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    pub(super) struct Dot1 {
        pub node: u32,
        pub counter: u64,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Version1 {
        pub dot: Dot1,
        pub context: BTreeMap<u32, u64>,
        pub value: String,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Siblings1(pub Vec<Version1>);

    /// The legacy row as today's siblings, every actor in incarnation 0.
    pub(super) fn decode(data: &[u8]) -> Result<Siblings, String> {
        let Siblings1(versions) = super::bounded_bincode(data)
            .map_err(|e| format!("legacy row (no format marker): {e}"))?;
        let versions = versions.into_iter().map(|v| Version {
            dot: Dot::new(v.dot.node, v.dot.counter),
            context: VersionVector::from_entries(v.context),
            value: v.value,
        });
        // The legacy set was a valid sibling set; rebuilding it checks that
        // again (two versions under one dot are corruption, not a choice).
        Siblings::from_versions(versions).map_err(|e| format!("legacy row: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{Actor, Dot, Version, VersionVector};

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
        // A current row whose sibling count is absurd allocates nothing.
        let mut huge = ROW_FORMAT_2.to_vec();
        huge.extend(u64::MAX.to_le_bytes());
        assert!(matches!(
            decode("k", &huge),
            Err(StoreError::Corrupt { .. })
        ));
    }

    fn sample() -> Siblings {
        Siblings::from_versions([
            Version {
                dot: Dot::new(Actor::new(3, 7), 2),
                context: VersionVector::from_entries([(Actor::new(1, 0), 4)]),
                value: "a".into(),
            },
            Version {
                dot: Dot::new(Actor::new(2, 9), 1),
                context: VersionVector::new(),
                value: "b".into(),
            },
        ])
        .expect("a sibling set")
    }

    #[test]
    fn rows_carry_a_format_marker_and_round_trip() {
        let set = sample();
        let row = encode(&set).expect("encode");
        assert_eq!(&row[..MARKER_LEN], &ROW_FORMAT_2);
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

    /// No legacy row can look like a marked one: its first eight bytes are
    /// its sibling count, and no count decodes with a top byte of 0xFF.
    #[test]
    fn the_marker_is_never_a_legacy_prefix() {
        assert_eq!(ROW_FORMAT_2[MARKER_LEN - 1], 0xFF);
        let count = u64::from_le_bytes(ROW_FORMAT_2);
        assert!(count >= 0xFF << 56, "{count}");
        let legacy = bincode::serialize(&legacy::Siblings1(Vec::new())).expect("encode");
        assert_eq!(legacy, 0u64.to_le_bytes());
    }

    /// A row as the previous release wrote it, byte for byte: one version
    /// with dot n3:2, context {n1: 4}, value "v".
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
        }])
        .expect("a sibling set");
        assert_eq!(decode("k", LEGACY_ROW), Ok(expected.clone()));
        // The mirror encodes exactly that layout.
        let mirrored = bincode::serialize(&legacy::Siblings1(vec![legacy::Version1 {
            dot: legacy::Dot1 {
                node: 3,
                counter: 2,
            },
            context: [(1, 4)].into_iter().collect(),
            value: "v".into(),
        }]))
        .expect("encode");
        assert_eq!(mirrored, LEGACY_ROW);
        // Rewritten, it carries the marker and the same siblings.
        let rewritten = encode(&expected).expect("encode");
        assert_eq!(&rewritten[..MARKER_LEN], &ROW_FORMAT_2);
        assert_eq!(decode("k", &rewritten), Ok(expected));
    }

    #[test]
    fn bad_legacy_rows_and_unknown_formats_are_corrupt() {
        // Two versions under one dot with different values.
        let conflicting = bincode::serialize(&legacy::Siblings1(
            ["x", "y"]
                .into_iter()
                .map(|value| legacy::Version1 {
                    dot: legacy::Dot1 {
                        node: 1,
                        counter: 1,
                    },
                    context: Default::default(),
                    value: value.into(),
                })
                .collect(),
        ))
        .expect("encode");
        match decode("k", &conflicting) {
            Err(StoreError::Corrupt { key, reason }) => {
                assert_eq!(key, "k");
                assert!(reason.contains("legacy row"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let future = *b"qlrow3\x00\xff";
        match decode("k", &future) {
            Err(StoreError::Corrupt { reason, .. }) => {
                assert!(reason.contains("unknown row format"), "{reason}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
