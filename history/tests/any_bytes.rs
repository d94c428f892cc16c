//! History files are read from outside (`quorumd check FILE`, seed files
//! from other systems): any bytes, and valid histories with bytes flipped,
//! cut or added, are read or refused with an error, never a panic. The
//! suite's slice of what `scripts/fuzz.sh` fuzzes at length
//! (`history_parser`).
use proptest::prelude::*;
use quorumlog_history::{Actor, Clock, Dot, Event, History, ObservedVersion, OpKind, Outcome};

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048)
}

/// A history of writes and reads of a few keys, each completed.
fn history(values: &[(u8, String, bool)]) -> History {
    let mut history = History::new();
    for (id, (key, value, read)) in values.iter().enumerate() {
        let id = id as u64;
        let key = format!("k{}", key % 3);
        let version = ObservedVersion {
            value: value.clone(),
            dot: Some(Dot::new(Actor::node(1), id + 1)),
            context: Some(Clock::from_entries([(Actor::node(2), id)])),
        };
        history.push(Event::Invoke {
            id,
            client: 1,
            time_us: id * 10,
            key,
            op: if *read { OpKind::Read } else { OpKind::Write },
            value: (!read).then(|| value.clone()),
            context: None,
            level: None,
            r#final: false,
            overwrite: false,
            context_from: None,
        });
        history.push(Event::Complete {
            id,
            client: 1,
            time_us: id * 10 + 5,
            outcome: Outcome::Ok,
            values: if *read {
                vec![version.clone()]
            } else {
                Vec::new()
            },
            version: (!read).then_some(version),
            context: None,
            error: None,
            invalid: false,
        });
    }
    history
}

fn read(bytes: &[u8]) {
    if let Ok(history) = History::read_jsonl(bytes) {
        let _ = history.operations();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn history_files_of_any_bytes_are_read_or_refused(bytes in any_bytes()) {
        read(&bytes);
    }

    #[test]
    fn damaged_history_files_are_read_or_refused(
        values in prop::collection::vec((any::<u8>(), "[ -~]{0,20}", any::<bool>()), 1..8),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let valid = history(&values);
        let text = valid.to_jsonl();
        prop_assert_eq!(&History::read_jsonl(text.as_bytes()).expect("a valid history"), &valid);
        let mut bytes = text.into_bytes();
        for (at, byte) in &edits {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        read(&bytes);
        bytes.truncate(cut.index(bytes.len() + 1));
        read(&bytes);
    }
}
