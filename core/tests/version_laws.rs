//! Algebraic laws of dotted version vectors, checked by proptest.
use proptest::prelude::*;
use quorumlog_core::{Causality, Dot, Siblings, Version, VersionVector};

fn vv() -> impl Strategy<Value = VersionVector> {
    prop::collection::vec((1u32..5, 0u64..6), 0..5).prop_map(VersionVector::from_entries)
}

/// A sibling set grown the way a replica grows one: a sequence of writes
/// minted at random nodes, each with a context taken from what it saw (the
/// whole set, nothing, or an earlier snapshot), synced in.
fn history() -> impl Strategy<Value = Vec<Version>> {
    prop::collection::vec((1u32..4, 0usize..3, 0usize..8), 1..12).prop_map(|steps| {
        let mut set = Siblings::new();
        let mut snapshots = vec![VersionVector::new()];
        let mut written = Vec::new();
        for (i, (node, how, pick)) in steps.into_iter().enumerate() {
            let context = match how {
                0 => VersionVector::new(),
                1 => set.context(),
                _ => snapshots[pick % snapshots.len()].clone(),
            };
            let v = set
                .mint(node, &context, format!("v{i}"), 0)
                .expect("small counters");
            set.sync_one(v.clone())
                .expect("a freshly minted dot is new");
            snapshots.push(set.context());
            written.push(v);
        }
        written
    })
}

proptest! {
    #[test]
    fn compare_is_a_partial_order(a in vv(), b in vv(), c in vv()) {
        // reflexive
        prop_assert_eq!(a.compare(&a), Causality::Equal);
        // antisymmetric
        if a.descends_from(&b) && b.descends_from(&a) {
            prop_assert_eq!(&a, &b);
        }
        // transitive
        if c.descends_from(&b) && b.descends_from(&a) {
            prop_assert!(c.descends_from(&a));
        }
        // compare is consistent with its mirror
        let mirrored = match b.compare(&a) {
            Causality::Before => Causality::After,
            Causality::After => Causality::Before,
            other => other,
        };
        prop_assert_eq!(a.compare(&b), mirrored);
    }

    #[test]
    fn join_is_a_semilattice(a in vv(), b in vv(), c in vv()) {
        prop_assert_eq!(a.join(&b), b.join(&a));
        prop_assert_eq!(a.join(&b).join(&c), a.join(&b.join(&c)));
        prop_assert_eq!(a.join(&a), a.clone());
        // the join is an upper bound
        prop_assert!(a.join(&b).descends_from(&a));
        prop_assert!(a.join(&b).descends_from(&b));
    }

    #[test]
    fn sync_is_idempotent_and_order_insensitive(versions in history(), seed in any::<u64>()) {
        let forward = Siblings::from_versions(versions.clone()).unwrap();
        let mut again = forward.clone();
        prop_assert!(!again.sync(&forward).unwrap(), "syncing a set into itself changed it");
        prop_assert_eq!(&again, &forward);
        // any delivery order converges to the same set
        let mut shuffled = versions.clone();
        let len = shuffled.len();
        for i in 0..len {
            let j = (seed.rotate_left(i as u32) as usize) % len;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(Siblings::from_versions(shuffled).unwrap(), forward);
    }

    #[test]
    fn sync_never_drops_what_the_incoming_context_does_not_cover(
        versions in history(),
        mask in prop::collection::vec(0u8..3, 12),
    ) {
        // Two replicas that each received part of the same writes (dots are
        // unique cluster-wide, so both sides draw from one history).
        let side = |keep: u8| versions.iter().zip(&mask).filter(move |(_, m)| **m != keep).map(|(v, _)| v.clone());
        let mut set = Siblings::from_versions(side(0)).unwrap();
        let before = set.clone();
        let incoming = Siblings::from_versions(side(1)).unwrap();
        set.sync(&incoming).unwrap();
        for v in before.versions() {
            // every old sibling is still there, or some incoming version covers it
            let kept = set.versions().contains(v);
            let superseded = incoming.versions().iter().any(|i| i.covers(v.dot))
                || incoming.seen().covers(v.dot);
            prop_assert!(kept || superseded, "{} dropped without a covering version", v.dot);
        }
        // and every member of the result is from one side, with no sibling covering another
        for a in set.versions() {
            for b in set.versions() {
                if a.dot != b.dot {
                    prop_assert!(!a.covers(b.dot), "{} covers {} inside one sibling set", a.dot, b.dot);
                }
            }
        }
        // the merged context covers every version of both sides
        let context = set.context();
        for v in before.versions().iter().chain(incoming.versions()) {
            prop_assert!(context.covers(v.dot));
        }
    }

    #[test]
    fn minted_dots_are_fresh(versions in history(), node in 1u32..4) {
        let set = Siblings::from_versions(versions.clone()).unwrap();
        let v = set.mint(node, &set.context(), "new".into(), 0).unwrap();
        prop_assert!(versions.iter().all(|w| w.dot != v.dot));
        prop_assert!(!set.covers(v.dot));
    }
}

#[test]
fn context_token_round_trips_any_vector() {
    let vv = VersionVector::from_entries([(1, 7), (2, 1), (5, 1 << 40)]);
    let secret = quorumlog_core::context::ContextSecret::from_bytes([1; 32]);
    let token = quorumlog_core::context::encode(&secret, "k", &vv);
    assert_eq!(
        quorumlog_core::context::decode(&secret, "k", &token),
        Ok(vv)
    );
}

proptest! {
    /// A dot names one write: merging a version whose dot is held with
    /// other contents is refused and leaves the set as it was.
    #[test]
    fn a_conflicting_dot_is_never_merged(versions in history(), pick in any::<prop::sample::Index>()) {
        let set = Siblings::from_versions(versions.clone()).unwrap();
        let held = pick.get(set.versions()).clone();
        let mut forged = held.clone();
        forged.value.push_str("-other");
        let mut target = set.clone();
        prop_assert!(target.sync_one(forged.clone()).is_err());
        prop_assert_eq!(&target, &set);
        let incoming = Siblings::from_versions([forged]).unwrap();
        prop_assert!(target.sync(&incoming).is_err());
        prop_assert_eq!(&target, &set);
        let _ = Dot::new(held.dot.actor(), held.dot.counter);
    }
}
