//! The digest of one key's state: 16 bytes of SHA-256 over a canonical
//! encoding of its sibling set, so that two replicas holding equal sets get
//! equal digests whatever order they merged their versions in.
use crate::version::{Siblings, Version, VersionVector};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::cmp::Ordering;
use std::fmt;

/// Bytes of a [`KeyDigest`]. 128 bits: an accidental collision between two
/// different sets of one key is out of reach (2^-128), and the index keeps
/// one per key, so every byte counts a million times.
pub const KEY_DIGEST_BYTES: usize = 16;

/// Fingerprint of one key's sibling set (see [`digest`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyDigest([u8; KEY_DIGEST_BYTES]);

impl KeyDigest {
    pub const fn from_bytes(bytes: [u8; KEY_DIGEST_BYTES]) -> Self {
        KeyDigest(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; KEY_DIGEST_BYTES] {
        &self.0
    }
}

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({self})")
    }
}

/// Separates this hash from every other SHA-256 in the system (context
/// tokens, the index's entry and key hashes), and names the encoding's
/// version: a change of encoding must change this tag, or replicas running
/// two releases would see every key as different.
const DOMAIN: &[u8] = b"quorumlog/anti-entropy/siblings/v1\0";

/// Whether a sibling set is "absent": nothing was ever merged into it. The
/// index holds no entry for such a key, exactly like a replica that never
/// heard of the key, so the two compare equal.
///
/// A set with no versions but a non-empty `seen` is *not* absent: it knows
/// superseded dots, and a replica without that knowledge differs from it.
pub fn is_absent(siblings: &Siblings) -> bool {
    siblings.is_empty() && siblings.seen().is_empty()
}

/// What the index holds for a key in this state: its digest, or `None`
/// for an absent set, which has no entry.
pub fn entry_digest(siblings: &Siblings) -> Option<KeyDigest> {
    (!is_absent(siblings)).then(|| digest(siblings))
}

/// The digest of a key's sibling set.
///
/// SHA-256 (truncated to [`KEY_DIGEST_BYTES`]) over a canonical, injective
/// encoding, written out field by field rather than through the codec or
/// serde so that nothing (map encoding, field order, a serde attribute)
/// can change it by accident:
///
/// ```text
/// DOMAIN
/// u64 number of versions
/// per version, sorted by dot (node, incarnation, counter):
///     u32 node, u32 incarnation, u64 counter
///     u64 value length, value bytes
///     u64 context length, per entry (sorted by actor): u32 node, u32 incarnation, u64 counter
/// u64 seen length, per entry (sorted by actor): u32 node, u32 incarnation, u64 counter
/// ```
///
/// (all integers little-endian). Every variable-length part is
/// length-prefixed, so two different sets never share an encoding.
/// Versions are sorted here, not assumed sorted: a set decoded from a peer
/// need not keep [`Siblings`]' own order. Version vectors are `BTreeMap`s,
/// whose iteration is in actor order by construction.
///
/// An empty set has a digest too, but the index treats an [`is_absent`]
/// set as no entry at all (see `Index::record`).
pub fn digest(siblings: &Siblings) -> KeyDigest {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    let mut versions: Vec<&Version> = siblings.versions().iter().collect();
    versions.sort_by(|a, b| canonical_order(a, b));
    put_len(&mut hasher, versions.len());
    for version in versions {
        let dot = version.dot;
        hasher.update(dot.node.to_le_bytes());
        hasher.update(dot.incarnation.to_le_bytes());
        hasher.update(dot.counter.to_le_bytes());
        put_len(&mut hasher, version.value.len());
        hasher.update(version.value.as_bytes());
        put_vector(&mut hasher, &version.context);
    }
    put_vector(&mut hasher, siblings.seen());
    let full = hasher.finalize();
    let mut bytes = [0u8; KEY_DIGEST_BYTES];
    bytes.copy_from_slice(&full[..KEY_DIGEST_BYTES]);
    KeyDigest(bytes)
}

/// Total order on versions: by dot, which is unique in a valid set; then
/// by value and context, so that even an invalid set holding one dot twice
/// (a corrupt copy from a peer) digests the same however it is ordered.
fn canonical_order(a: &Version, b: &Version) -> Ordering {
    a.dot
        .cmp(&b.dot)
        .then_with(|| a.value.cmp(&b.value))
        .then_with(|| a.context.entries().cmp(b.context.entries()))
}

fn put_len(hasher: &mut Sha256, len: usize) {
    // usize → u64 is lossless on every platform Rust supports.
    hasher.update((len as u64).to_le_bytes());
}

fn put_vector(hasher: &mut Sha256, vector: &VersionVector) {
    put_len(hasher, vector.len());
    let mut previous = None;
    for (actor, counter) in vector.entries() {
        debug_assert!(previous < Some(actor), "version vectors iterate in order");
        previous = Some(actor);
        hasher.update(actor.node.to_le_bytes());
        hasher.update(actor.incarnation.to_le_bytes());
        hasher.update(counter.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{Actor, Dot};
    use proptest::prelude::*;

    /// A write in a causal history: which actor coordinated it, and which
    /// earlier writes its client had read (indexes into the history).
    #[derive(Debug, Clone)]
    struct Write {
        actor: u32,
        read: Vec<prop::sample::Index>,
        value: u8,
    }

    fn writes() -> impl Strategy<Value = Vec<Write>> {
        prop::collection::vec(
            (
                0u32..4,
                prop::collection::vec(any::<prop::sample::Index>(), 0..3),
                0u8..4,
            )
                .prop_map(|(actor, read, value)| Write { actor, read, value }),
            0..12,
        )
    }

    /// Versions of a causally consistent history: each write's context is
    /// the join of the clocks of the writes its client read, its dot the
    /// actor's next counter, and each actor's writes are chained (its
    /// client read its previous one). In such a history a context covering
    /// `a:c` has seen everything `a:c` had seen, so merge order cannot
    /// matter. (It can when a dot's counter runs ahead of what its writer
    /// saw: then a version dropped on arrival brings no `seen` with it —
    /// sets that legitimately differ, and so do their digests.)
    fn history(writes: &[Write]) -> Vec<Version> {
        let mut versions: Vec<Version> = Vec::new();
        let mut counters = [0u64; 4];
        let mut last: [Option<usize>; 4] = [None; 4];
        for write in writes {
            let mut context = VersionVector::new();
            if !versions.is_empty() {
                for pick in &write.read {
                    context.join_in_place(&versions[pick.index(versions.len())].clock());
                }
            }
            let actor = write.actor as usize;
            if let Some(previous) = last[actor] {
                context.join_in_place(&versions[previous].clock());
            }
            last[actor] = Some(versions.len());
            counters[actor] += 1;
            versions.push(Version {
                dot: Dot::new(Actor::new(write.actor, 1), counters[actor]),
                context,
                value: format!("v{}", write.value),
                timestamp_ms: 0,
            });
        }
        versions
    }

    /// The same fields as `Siblings`, so a set can be decoded with its
    /// versions in any order: what a peer could send.
    #[derive(Serialize)]
    struct RawSiblings<'a> {
        versions: Vec<&'a Version>,
        seen: &'a VersionVector,
    }

    proptest! {
        /// Replicas that merged the same versions in different orders (one
        /// by one, or as whole sets) hold equal sets and equal digests.
        #[test]
        fn merge_order_does_not_change_the_digest(
            writes in writes(),
            order in any::<u64>(),
            split in any::<prop::sample::Index>(),
        ) {
            let versions = history(&writes);
            let mut shuffled = versions.clone();
            // a deterministic permutation drawn from `order`
            let mut state = order;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let one = Siblings::from_versions(versions.clone()).unwrap();
            let two = Siblings::from_versions(shuffled.clone()).unwrap();
            // a third replica got two halves from two peers
            let cut = if shuffled.is_empty() { 0 } else { split.index(shuffled.len() + 1) };
            let mut three = Siblings::from_versions(shuffled[cut..].iter().cloned()).unwrap();
            three.sync(&Siblings::from_versions(shuffled[..cut].iter().cloned()).unwrap()).unwrap();
            prop_assert_eq!(&one, &two);
            prop_assert_eq!(&one, &three);
            prop_assert_eq!(digest(&one), digest(&two));
            prop_assert_eq!(digest(&one), digest(&three));
        }

        /// Different sets get different digests, equal sets equal ones.
        #[test]
        fn digests_differ_exactly_when_sets_differ(
            writes in writes(),
            a in prop::collection::vec(any::<bool>(), 12),
            b in prop::collection::vec(any::<bool>(), 12),
        ) {
            let versions = history(&writes);
            let pick = |mask: &[bool]| {
                Siblings::from_versions(
                    versions.iter().zip(mask).filter(|(_, keep)| **keep).map(|(v, _)| v.clone()),
                )
                .unwrap()
            };
            let (one, two) = (pick(&a), pick(&b));
            prop_assert_eq!(one == two, digest(&one) == digest(&two));
        }

        /// A set whose versions arrive unsorted (decoded from a peer)
        /// digests like the sorted one.
        #[test]
        fn the_digest_sorts_versions_itself(writes in writes(), reverse in any::<bool>()) {
            let set = Siblings::from_versions(history(&writes)).unwrap();
            let mut versions: Vec<&Version> = set.versions().iter().collect();
            if reverse {
                versions.reverse();
            } else {
                let half = versions.len() / 2;
                versions.rotate_left(half);
            }
            let bytes = crate::codec::encode(&RawSiblings { versions, seen: set.seen() }).unwrap();
            let decoded: Siblings = crate::codec::decode(&bytes).unwrap();
            prop_assert_eq!(digest(&decoded), digest(&set));
        }
    }

    #[test]
    fn every_part_of_the_state_is_in_the_digest() {
        let base = Version {
            dot: Dot::new(Actor::new(1, 2), 3),
            context: VersionVector::from_entries([(Actor::new(4, 0), 5)]),
            value: "x".into(),
            timestamp_ms: 0,
        };
        let set = |v: Version| Siblings::from_versions([v]).unwrap();
        let d = digest(&set(base.clone()));
        let mut changed = Vec::new();
        for change in 0..5 {
            let mut v = base.clone();
            match change {
                0 => v.dot.node = 9,
                1 => v.dot.incarnation = 9,
                2 => v.dot.counter = 9,
                3 => v.value = "y".into(),
                _ => v.context = VersionVector::from_entries([(Actor::new(4, 0), 6)]),
            }
            changed.push(digest(&set(v)));
        }
        for other in &changed {
            assert_ne!(*other, d);
        }
        // `seen` alone: the same version, after a merge that superseded
        // another dot, is a different state
        let mut with_seen = set(base.clone());
        with_seen
            .sync_one(Version {
                dot: Dot::new(7, 1),
                context: VersionVector::from_entries([(Actor::new(8, 0), 1)]),
                value: "z".into(),
                timestamp_ms: 0,
            })
            .unwrap();
        assert_ne!(digest(&with_seen), d);
        assert!(is_absent(&Siblings::new()));
        assert!(!is_absent(&set(base)));
        assert_eq!(d.to_string().len(), 2 * KEY_DIGEST_BYTES);
    }

    #[test]
    fn a_value_cannot_spill_into_the_context() {
        // injectivity: moving bytes between a value and what follows it
        // must change the digest
        let a = Version {
            dot: Dot::new(1, 1),
            context: VersionVector::new(),
            value: "ab".into(),
            timestamp_ms: 0,
        };
        let mut b = a.clone();
        b.value = "a".into();
        let one = Siblings::from_versions([a]).unwrap();
        let two = Siblings::from_versions([b]).unwrap();
        assert_ne!(digest(&one), digest(&two));
    }

    #[test]
    fn an_actors_incarnation_in_a_vector_is_in_the_digest() {
        let version = |incarnation| Version {
            dot: Dot::new(1, 1),
            context: VersionVector::from_entries([(Actor::new(4, incarnation), 5)]),
            value: "x".into(),
            timestamp_ms: 0,
        };
        let set = |v: Version| Siblings::from_versions([v]).unwrap();
        assert_ne!(digest(&set(version(0))), digest(&set(version(1))));
    }

    /// A corrupt set from a peer, holding one dot twice with two values,
    /// digests the same whichever order its versions come in.
    #[test]
    fn a_set_holding_one_dot_twice_digests_the_same_in_either_order() {
        let one = Version {
            dot: Dot::new(1, 1),
            context: VersionVector::new(),
            value: "a".into(),
            timestamp_ms: 0,
        };
        let mut two = one.clone();
        two.value = "b".into();
        let seen = VersionVector::new();
        let decode = |versions: Vec<&Version>| -> Siblings {
            let bytes = crate::codec::encode(&RawSiblings {
                versions,
                seen: &seen,
            })
            .unwrap();
            crate::codec::decode(&bytes).unwrap()
        };
        assert_eq!(
            digest(&decode(vec![&one, &two])),
            digest(&decode(vec![&two, &one]))
        );
    }

    /// Without the value's length, these two sets would encode to the
    /// same bytes: the first value's tail reads as the second set's empty
    /// context and the first entry of its `seen`.
    #[test]
    fn a_value_cannot_spill_into_what_follows_it() {
        let version = |value: &str| Version {
            dot: Dot::new(5, 1),
            context: VersionVector::new(),
            value: value.into(),
            timestamp_ms: 0,
        };
        let long = format!("a{}\u{2}{}", "\0".repeat(8), "\0".repeat(7));
        let one = Siblings::from_parts(
            [version(&long)],
            VersionVector::from_entries([(Actor::new(6, 0), 1)]),
        )
        .unwrap();
        let two = Siblings::from_parts(
            [version("a")],
            VersionVector::from_entries([(Actor::new(0, 0), 1), (Actor::new(6, 0), 1)]),
        )
        .unwrap();
        assert_ne!(one, two);
        assert_ne!(digest(&one), digest(&two));
    }
}
