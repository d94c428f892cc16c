//! What the history format promises, judged through the public API: a
//! malformed file is refused with an error naming its line and the
//! problem (never read with an event dropped or guessed at), invokes are
//! paired with their own completions whatever the ids, and versions cover
//! what `docs/history-format.md` says they cover.
use quorumlog_history::{
    cas_value, Actor, Clock, Dot, Event, History, ObservedVersion, OpKind, Operation, Outcome,
};
use serde::de::value::{Error as ValueError, MapDeserializer};
use serde::Deserialize;

/// The error reading `text` gives; panics if it is read.
fn refusal(text: &str) -> String {
    match History::read_jsonl(text.as_bytes()) {
        Ok(history) => panic!("read, not refused: {history:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_refused(text: &str, line: usize, problem: &str) {
    let err = refusal(text);
    assert!(
        err.starts_with(&format!("line {line}: ")) && err.contains(problem),
        "expected line {line}: …{problem}…, got {err}"
    );
}

const READ_0: &str = r#"{"type":"invoke","id":0,"client":1,"time_us":1,"key":"k","op":"read"}"#;
const READ_0_DONE: &str = r#"{"type":"complete","id":0,"client":1,"time_us":2,"outcome":"ok"}"#;

#[test]
fn blank_lines_are_skipped_but_still_counted_in_line_numbers() {
    let text = format!("{{\"type\":\"header\",\"format\":2}}\n\n{READ_0}\n   \n{READ_0_DONE}\n\n");
    let history = History::read_jsonl(text.as_bytes()).expect("blank lines are ignored");
    assert_eq!(history.events.len(), 3);
    assert_eq!(history.operations()[0].outcome, Some(Outcome::Ok));
    // Line 5 of the file, though only the third that is not blank.
    assert_refused(
        &format!("{READ_0}\n\n{READ_0_DONE}\n \n{READ_0_DONE}\n"),
        5,
        "operation 0 completes twice",
    );
}

#[test]
fn only_formats_one_and_two_are_read() {
    for format in [0, 3, u32::MAX] {
        assert_refused(
            &format!("{{\"type\":\"header\",\"format\":{format}}}\n{READ_0}\n"),
            1,
            &format!("history format {format} is not supported"),
        );
    }
}

#[test]
fn an_operation_id_invoked_twice_is_refused() {
    let again = r#"{"type":"invoke","id":0,"client":2,"time_us":3,"key":"j","op":"read"}"#;
    assert_refused(
        &format!("{READ_0}\n{again}\n"),
        2,
        "operation id 0 is invoked twice",
    );
    // Completed, the id is still taken: a reused id would pair a later
    // completion with either invoke.
    assert_refused(
        &format!("{READ_0}\n{READ_0_DONE}\n{again}\n"),
        3,
        "operation id 0 is invoked twice",
    );
}

#[test]
fn a_write_append_or_cas_without_a_value_is_refused() {
    for op in ["write", "append", "cas"] {
        let line = format!(
            "{{\"type\":\"invoke\",\"id\":4,\"client\":1,\"time_us\":1,\"key\":\"k\",\"op\":\"{op}\"}}\n"
        );
        assert_refused(&line, 1, &format!("{op} 4 has no value"));
    }
    assert!(OpKind::Write.is_mutation());
    assert!(OpKind::Append.is_mutation());
    assert!(OpKind::Cas.is_mutation());
    assert!(!OpKind::Read.is_mutation());
}

#[test]
fn an_operation_completed_twice_is_refused_as_such() {
    let late = r#"{"type":"complete","id":0,"client":1,"time_us":9,"outcome":"timeout"}"#;
    assert_refused(
        &format!("{READ_0}\n{READ_0_DONE}\n{late}\n"),
        3,
        "operation 0 completes twice",
    );
}

#[test]
fn an_operation_completed_by_another_client_is_refused() {
    let other = r#"{"type":"complete","id":0,"client":2,"time_us":2,"outcome":"ok"}"#;
    assert_refused(
        &format!("{READ_0}\n{other}\n"),
        2,
        "operation 0 was invoked by client 1 but completed by client 2",
    );
}

#[test]
fn only_a_cas_may_complete_with_a_mismatch() {
    let mismatch = r#"{"type":"complete","id":0,"client":1,"time_us":2,"outcome":"mismatch"}"#;
    for (op, value) in [
        ("read", None),
        ("write", Some("\"a\"")),
        ("append", Some("\"a\"")),
    ] {
        let value = value.map_or(String::new(), |v| format!(",\"value\":{v}"));
        let invoke = format!(
            "{{\"type\":\"invoke\",\"id\":0,\"client\":1,\"time_us\":1,\"key\":\"k\",\"op\":\"{op}\"{value}}}"
        );
        assert_refused(
            &format!("{invoke}\n{mismatch}\n"),
            2,
            &format!("operation 0 is a {op}: only a cas can complete with outcome \"mismatch\""),
        );
    }
    let cas = r#"{"type":"invoke","id":0,"client":1,"time_us":1,"key":"k","op":"cas","value":"[\"a\",\"b\"]"}"#;
    let history = History::read_jsonl(format!("{cas}\n{mismatch}\n").as_bytes())
        .expect("a cas may observe a mismatch");
    assert!(history.operation_refs()[0].is_mismatch());
}

#[test]
fn a_numeric_clock_key_past_a_node_id_is_refused_not_wrapped() {
    // JSON object keys are strings; other encoders may give numbers.
    let clock = |key: u64| {
        Clock::deserialize(MapDeserializer::<_, ValueError>::new(
            [(key, 3u64)].into_iter(),
        ))
    };
    assert_eq!(
        clock(4).expect("a node id"),
        Clock::from_entries([(Actor::node(4), 3)])
    );
    let past = u64::from(u32::MAX) + 5;
    let err = clock(past).expect_err("past u32").to_string();
    assert!(err.contains(&format!("clock key \"{past}\"")), "{err}");
}

/// A version `value` with, when given, dot `node:counter` and a context.
fn version(
    value: &str,
    dot: Option<(u32, u64)>,
    context: Option<&[(u32, u64)]>,
) -> ObservedVersion {
    ObservedVersion {
        value: value.to_string(),
        dot: dot.map(|(node, counter)| Dot::new(Actor::node(node), counter)),
        context: context.map(|c| c.iter().map(|&(n, k)| (Actor::node(n), k)).collect()),
    }
}

#[test]
fn a_version_covers_its_own_dot_and_what_its_context_covers_only() {
    let seen = version("b", Some((1, 2)), Some(&[(2, 1)]));
    assert!(seen.covers(&version("b", Some((1, 2)), None)));
    assert!(seen.covers(&version("a", Some((2, 1)), None)));
    assert!(!seen.covers(&version("a", Some((2, 2)), None)));
    assert!(!seen.covers(&version("a", Some((1, 3)), None)));
    // Without a context a version has seen nothing but itself, not
    // everything: it covers no earlier write of its own coordinator.
    let blind = version("b", Some((1, 2)), None);
    assert!(blind.covers(&version("b", Some((1, 2)), None)));
    assert!(!blind.covers(&version("a", Some((1, 1)), None)));
    assert!(!blind.covers(&version("a", Some((3, 1)), Some(&[]))));
}

#[test]
fn without_dots_a_version_covers_only_a_write_of_its_own_value() {
    let undotted = version("a", None, None);
    assert!(undotted.covers(&version("a", None, None)));
    assert!(!undotted.covers(&version("b", None, None)));
    assert!(undotted.covers(&version("a", Some((1, 1)), None)));
    assert!(!undotted.covers(&version("b", Some((1, 1)), None)));
    // A dotted version against an undotted write: by value too.
    let dotted = version("a", Some((1, 1)), Some(&[(2, 5)]));
    assert!(dotted.covers(&version("a", None, None)));
    assert!(!dotted.covers(&version("b", None, None)));
}

fn invoke(id: u64, client: u32, time_us: u64, op: OpKind, value: Option<&str>) -> Event {
    Event::Invoke {
        id,
        client,
        time_us,
        key: format!("k{}", id % 2),
        op,
        value: value.map(str::to_string),
        context: None,
        level: None,
        r#final: false,
        overwrite: false,
        context_from: None,
    }
}

fn complete(
    id: u64,
    client: u32,
    time_us: u64,
    outcome: Outcome,
    read_context: Option<Clock>,
    error: Option<&str>,
) -> Event {
    Event::Complete {
        id,
        client,
        time_us,
        outcome,
        values: Vec::new(),
        version: None,
        context: read_context,
        error: error.map(str::to_string),
        invalid: error.is_some(),
    }
}

#[test]
fn each_invoke_is_paired_with_its_own_completion_whatever_the_ids() {
    // Ids past the number of events (nine: one equal to it, one far
    // past), completions in another order than the invokes, one never
    // completed.
    let events = vec![
        invoke(7, 1, 10, OpKind::Read, None),
        invoke(0, 2, 20, OpKind::Write, Some("a")),
        invoke(u64::MAX, 3, 30, OpKind::Read, None),
        invoke(9, 4, 40, OpKind::Write, Some("b")),
        complete(0, 2, 25, Outcome::Fail, None, Some("400 bad_request")),
        invoke(3, 5, 50, OpKind::Append, Some("c")),
        complete(u64::MAX, 3, 90, Outcome::Ok, None, None),
        complete(
            7,
            1,
            70,
            Outcome::Ok,
            Some(Clock::from_entries([(Actor::node(2), 4)])),
            None,
        ),
        complete(3, 5, 55, Outcome::Timeout, None, None),
    ];
    let history = History {
        events: events.clone(),
    };
    let ops = history.operations();
    let expected: [(u64, Option<u64>, Option<Outcome>); 5] = [
        (7, Some(70), Some(Outcome::Ok)),
        (0, Some(25), Some(Outcome::Fail)),
        (u64::MAX, Some(90), Some(Outcome::Ok)),
        (9, None, None),
        (3, Some(55), Some(Outcome::Timeout)),
    ];
    let paired: Vec<_> = ops
        .iter()
        .map(|op| (op.id, op.complete_us, op.outcome))
        .collect();
    assert_eq!(paired, expected);
    assert_eq!(
        ops[0].read_context.as_ref().map(|c| c.get(Actor::node(2))),
        Some(4)
    );
    assert!(ops[2].read_context.is_none());
    assert_eq!(ops[1].error.as_deref(), Some("400 bad_request"));
    assert!(ops[1].invalid && !ops[0].invalid);
    // The borrowed pairing agrees with the owned one field for field.
    let refs: Vec<Operation> = history
        .operation_refs()
        .iter()
        .map(|op| op.to_operation())
        .collect();
    assert_eq!(refs, ops);
    // Written out and read back, the history pairs the same.
    let text = history.to_jsonl();
    let read = History::read_jsonl(text.as_bytes()).expect("a valid history");
    assert_eq!(read.events, events);
}

/// An append, a write, a read and a cas, each by its own client, none
/// completed yet.
fn one_of_each_kind() -> History {
    History {
        events: vec![
            invoke(0, 1, 1, OpKind::Append, Some("x")),
            invoke(1, 2, 2, OpKind::Write, Some("y")),
            invoke(2, 3, 3, OpKind::Read, None),
            invoke(3, 4, 4, OpKind::Cas, Some(&cas_value("y", "z"))),
        ],
    }
}

#[test]
fn an_operation_never_completed_is_indeterminate_and_a_mismatch_had_no_effect() {
    let mut history = one_of_each_kind();
    history.push(complete(1, 2, 5, Outcome::Unavailable, None, None));
    history.push(complete(3, 4, 6, Outcome::Mismatch, None, None));
    let ops = history.operations();
    let refs = history.operation_refs();
    assert!(ops[0].is_indeterminate() && refs[0].is_indeterminate());
    assert!(!ops[0].is_failed() && !refs[0].is_failed());
    assert!(!ops[1].is_indeterminate() && !refs[1].is_indeterminate());
    assert!(ops[1].is_failed() && refs[1].is_failed());
    // A cas whose compare failed certainly wrote nothing.
    assert!(ops[3].is_mismatch() && refs[3].is_mismatch());
    assert!(ops[3].is_failed() && refs[3].is_failed());
    assert!(!ops[3].is_indeterminate() && !refs[3].is_indeterminate());
}

#[test]
fn a_write_or_an_append_writes_its_value_and_nothing_else_does() {
    let history = one_of_each_kind();
    let written: Vec<Option<String>> = history
        .operations()
        .iter()
        .map(|op| op.written().map(|v| v.value))
        .collect();
    assert_eq!(written, [Some("x".into()), Some("y".into()), None, None]);
}

#[test]
fn the_header_is_the_first_header_event_of_a_history() {
    let header = |format| Event::Header {
        format,
        scenario: None,
        seed: None,
        n: None,
    };
    let history = History {
        events: vec![header(2), invoke(0, 1, 1, OpKind::Read, None), header(1)],
    };
    assert_eq!(history.header(), Some(&header(2)));
    assert_eq!(History::new().header(), None);
}

/// Two histories joined into one file: the second header is refused where
/// it stands, rather than the runs being judged as one.
#[test]
fn a_header_anywhere_but_the_first_event_is_refused() {
    let header = r#"{"type":"header","format":2,"seed":1}"#;
    assert!(History::read_jsonl(format!("\n{header}\n{READ_0}\n").as_bytes()).is_ok());
    assert_refused(
        &format!("{header}\n{READ_0}\n{READ_0_DONE}\n{header}\n"),
        4,
        "a header may only be the first event",
    );
    assert_refused(
        &format!("{header}\n{header}\n"),
        2,
        "a header may only be the first event",
    );
}

/// A context handed out for one key cannot be what a write of another key
/// sends "unchanged".
#[test]
fn context_from_must_name_an_operation_of_the_same_key() {
    let write = |key: &str| {
        format!(
            r#"{{"type":"invoke","id":1,"client":1,"time_us":3,"key":"{key}","op":"write","value":"v","context_from":0}}"#
        )
    };
    let same = format!("{READ_0}\n{READ_0_DONE}\n{}\n", write("k"));
    let history = History::read_jsonl(same.as_bytes()).expect("same key");
    assert_eq!(history.operations()[1].context_from, Some(0));
    assert_refused(
        &format!("{READ_0}\n{READ_0_DONE}\n{}\n", write("j")),
        3,
        r#"write 1 of key "j": context_from 0 names an operation of key "k""#,
    );
}
