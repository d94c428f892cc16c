//! The checkers judged: valid histories pass, broken ones are caught.
#![allow(clippy::too_many_arguments)] // the hand-written-history builder
use proptest::prelude::*;
use quorumlog_check::generate::{generate, GenConfig};
use quorumlog_check::{
    check_durability, check_history, check_linearizability, check_staleness, check_with_model,
    Budget, CasRegister, Interner, KeyValue, LinVerdict, Model, ModelKind, MultiValueRegister,
    PhantomKind, Register,
};
use quorumlog_history::{
    cas_value, Actor, Clock, Dot, Event, History, ObservedVersion, OpKind, Outcome,
};

// ---------------------------------------------------------------- builder

/// A clock over incarnation-0 actors: `[(node, counter)]`.
fn vv(entries: &[(u32, u64)]) -> Clock {
    entries.iter().map(|&(n, c)| (Actor::node(n), c)).collect()
}

/// A clock over any actors: `[(node, incarnation, counter)]`.
fn clock(entries: &[(u32, u32, u64)]) -> Clock {
    entries
        .iter()
        .map(|&(n, i, c)| (Actor::new(n, i), c))
        .collect()
}

/// A version `value@node:counter` with context `ctx`.
fn ver(value: &str, dot: (u32, u64), ctx: &[(u32, u64)]) -> ObservedVersion {
    ObservedVersion {
        value: value.to_string(),
        dot: Some(Dot::new(Actor::node(dot.0), dot.1)),
        context: Some(vv(ctx)),
    }
}

/// Hand-written histories, one operation at a time.
#[derive(Default)]
struct Builder {
    history: History,
    next: u64,
}

impl Builder {
    fn invoke(
        &mut self,
        client: u32,
        key: &str,
        op: OpKind,
        value: Option<String>,
        ctx: Option<Clock>,
        at: u64,
        fin: bool,
    ) -> u64 {
        let id = self.next;
        self.next += 1;
        self.history.push(Event::Invoke {
            id,
            client,
            time_us: at,
            key: key.to_string(),
            op,
            value,
            context: ctx,
            level: None,
            r#final: fin,
            overwrite: false,
            context_from: None,
        });
        id
    }

    fn complete(
        &mut self,
        id: u64,
        client: u32,
        at: u64,
        outcome: Outcome,
        values: Vec<ObservedVersion>,
        version: Option<ObservedVersion>,
    ) {
        self.history.push(Event::Complete {
            id,
            client,
            time_us: at,
            outcome,
            values,
            version,
            context: None,
            error: None,
            invalid: false,
        });
    }

    /// A write of `v` (its version when acknowledged: `v@dot` with `ctx`).
    /// `end: None`: never completes.
    fn write(
        &mut self,
        client: u32,
        key: &str,
        v: &str,
        ctx: &[(u32, u64)],
        dot: (u32, u64),
        start: u64,
        end: Option<u64>,
        outcome: Outcome,
    ) -> &mut Self {
        let id = self.invoke(
            client,
            key,
            OpKind::Write,
            Some(v.to_string()),
            Some(vv(ctx)),
            start,
            false,
        );
        if let Some(end) = end {
            let version = (outcome == Outcome::Ok).then(|| ver(v, dot, ctx));
            self.complete(id, client, end, outcome, Vec::new(), version);
        }
        self
    }

    /// A write whose client sent `sent` and whose acknowledgement (when
    /// `outcome` is ok) reported `version`: for systems that report
    /// something other than what the client did.
    fn write_reporting(
        &mut self,
        client: u32,
        key: &str,
        v: &str,
        sent: Clock,
        version: ObservedVersion,
        start: u64,
        end: u64,
        outcome: Outcome,
    ) -> &mut Self {
        let id = self.invoke(
            client,
            key,
            OpKind::Write,
            Some(v.to_string()),
            Some(sent),
            start,
            false,
        );
        let version = (outcome == Outcome::Ok).then_some(version);
        self.complete(id, client, end, outcome, Vec::new(), version);
        self
    }

    /// A blind overwrite of `v`, acknowledged as `v@dot` with `ctx` and an
    /// answer that lists `listed` as the key's siblings afterwards.
    fn overwrite(
        &mut self,
        client: u32,
        key: &str,
        v: &str,
        (dot, ctx): ((u32, u64), &[(u32, u64)]),
        listed: Vec<ObservedVersion>,
        start: u64,
        end: u64,
    ) -> &mut Self {
        let id = self.next;
        self.next += 1;
        self.history.push(Event::Invoke {
            id,
            client,
            time_us: start,
            key: key.to_string(),
            op: OpKind::Write,
            value: Some(v.to_string()),
            context: Some(Clock::new()),
            level: None,
            r#final: false,
            overwrite: true,
            context_from: None,
        });
        let version = ver(v, dot, ctx);
        self.complete(id, client, end, Outcome::Ok, listed, Some(version));
        self
    }

    fn read(
        &mut self,
        client: u32,
        key: &str,
        start: u64,
        end: u64,
        values: Vec<ObservedVersion>,
    ) -> &mut Self {
        let id = self.invoke(client, key, OpKind::Read, None, None, start, false);
        self.complete(id, client, end, Outcome::Ok, values, None);
        self
    }

    /// A read that returned `values` and handed out `context`.
    fn read_handing_out(
        &mut self,
        client: u32,
        key: &str,
        (start, end): (u64, u64),
        values: Vec<ObservedVersion>,
        context: Clock,
    ) -> &mut Self {
        let id = self.invoke(client, key, OpKind::Read, None, None, start, false);
        self.history.push(Event::Complete {
            id,
            client,
            time_us: end,
            outcome: Outcome::Ok,
            values,
            version: None,
            context: Some(context),
            error: None,
            invalid: false,
        });
        self
    }

    fn final_read(&mut self, key: &str, start: u64, values: Vec<ObservedVersion>) -> &mut Self {
        let id = self.invoke(0, key, OpKind::Read, None, None, start, true);
        self.complete(id, 0, start + 5, Outcome::Ok, values, None);
        self
    }

    /// An operation of another kind (cas/append), with a single-value read
    /// represented as `read1`.
    fn op(
        &mut self,
        client: u32,
        kind: OpKind,
        value: Option<String>,
        start: u64,
        end: Option<u64>,
        outcome: Outcome,
    ) -> &mut Self {
        let id = self.invoke(client, "x", kind, value, None, start, false);
        if let Some(end) = end {
            self.complete(id, client, end, outcome, Vec::new(), None);
        }
        self
    }

    fn read1(&mut self, client: u32, value: Option<&str>, start: u64, end: u64) -> &mut Self {
        let values = value
            .map(|v| {
                vec![ObservedVersion {
                    value: v.to_string(),
                    dot: None,
                    context: None,
                }]
            })
            .unwrap_or_default();
        self.read(client, "x", start, end, values)
    }

    fn build(&mut self) -> History {
        std::mem::take(&mut self.history)
    }
}

// ---------------------------------------------------------- hand-written

#[test]
fn new_old_inversion_is_not_linearizable_but_regular() {
    // w1 acknowledged; w2 (covering w1) in flight; a read sees w2, a later
    // read sees w1 again: allowed by a regular register, not linearizable.
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(1, "k", "b", &[(1, 1)], (2, 1), 20, None, Outcome::Timeout)
        .read(3, "k", 30, 40, vec![ver("b", (2, 1), &[(1, 1)])])
        .read(4, "k", 50, 60, vec![ver("a", (1, 1), &[])])
        .final_read("k", 1_000, vec![ver("b", (2, 1), &[(1, 1)])])
        .build();
    let summary = check_history(&history);
    println!("{summary}");
    assert!(summary.staleness.is_ok(), "{}", summary.staleness);
    assert!(summary.durability.is_ok(), "{}", summary.durability);
    assert_eq!(summary.linearizable, LinVerdict::NotLinearizable);
    let text = summary.linearizability.to_string();
    assert!(text.contains("key \"k\""), "{text}");
    assert!(text.contains("longest linearizable prefix"), "{text}");
    assert!(
        text.contains("op 3 client 4 key \"k\" read -> [a@n1:1]"),
        "{text}"
    );
    let v = &summary.linearizability.violations[0];
    assert_eq!(v.prefix_len, 3, "{text}");
    assert!(
        v.stuck.iter().any(|s| s.op.id == 3 && !s.allowed_by_model),
        "{text}"
    );
}

#[test]
fn write_lost_under_crash_is_caught() {
    // b superseded a and was acknowledged; after a crash the cluster only
    // has a.
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(1, "k", "b", &[(1, 1)], (2, 1), 20, Some(30), Outcome::Ok)
        .read(2, "k", 40, 50, vec![ver("a", (1, 1), &[])])
        .final_read("k", 1_000, vec![ver("a", (1, 1), &[])])
        .build();
    let durability = check_durability(&history);
    assert_eq!(durability.lost_updates, 1, "{durability}");
    assert_eq!(durability.lost[0].write.value.as_deref(), Some("b"));
    let text = durability.to_string();
    assert!(
        text.contains("lost write 1: op 1 client 1 key \"k\" write \"b\" as n2:1, 20..30 us, ok"),
        "{text}"
    );
    let staleness = check_staleness(&history);
    assert_eq!(staleness.stale_reads, 2, "{staleness}");
    assert_eq!(staleness.stale_examples[0].k, 1);
    assert_eq!(staleness.stale_examples[0].t_visibility_us, 10);
    assert_eq!(staleness.k_staleness.max, 1);
    let summary = check_history(&history);
    println!("{summary}");
    assert_eq!((summary.stale_reads, summary.lost_updates), (2, 1));
    assert_eq!(summary.linearizable, LinVerdict::NotLinearizable);
    assert!(!summary.is_ok());
}

#[test]
fn superseded_writes_are_not_lost() {
    // a is acknowledged, then superseded by b, which timed out but applied.
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(
            1,
            "k",
            "b",
            &[(1, 1)],
            (3, 1),
            20,
            Some(900),
            Outcome::Timeout,
        )
        .final_read("k", 1_000, vec![ver("b", (3, 1), &[(1, 1)])])
        .build();
    let summary = check_history(&history);
    assert!(summary.is_strictly_ok(), "{summary}");
}

#[test]
fn blind_writes_become_siblings() {
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(2, "k", "b", &[], (2, 1), 5, Some(15), Outcome::Ok)
        .read(
            3,
            "k",
            20,
            30,
            vec![ver("a", (1, 1), &[]), ver("b", (2, 1), &[])],
        )
        .write(
            3,
            "k",
            "c",
            &[(1, 1), (2, 1)],
            (1, 2),
            40,
            Some(50),
            Outcome::Ok,
        )
        .read(3, "k", 60, 70, vec![ver("c", (1, 2), &[(1, 1), (2, 1)])])
        .final_read("k", 1_000, vec![ver("c", (1, 2), &[(1, 1), (2, 1)])])
        .build();
    let summary = check_history(&history);
    assert!(summary.is_strictly_ok(), "{summary}");
    // A register cannot return two values.
    let register = check_linearizability(&history, &Register, Budget::default());
    assert_eq!(register.verdict, LinVerdict::NotLinearizable, "{register}");
}

#[test]
fn a_blind_write_must_not_drop_a_sibling() {
    // a acknowledged, then blind b: a read must return both.
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(2, "k", "b", &[], (2, 1), 20, Some(30), Outcome::Ok)
        .read(3, "k", 40, 50, vec![ver("b", (2, 1), &[])])
        .final_read("k", 1_000, vec![ver("b", (2, 1), &[])])
        .build();
    let summary = check_history(&history);
    assert_eq!(summary.stale_reads, 2, "{summary}");
    assert_eq!(summary.lost_updates, 1, "{summary}");
    assert_eq!(summary.linearizable, LinVerdict::NotLinearizable);
}

#[test]
fn phantoms_and_covered_siblings_are_reported() {
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(1, "k", "f", &[], (1, 2), 12, Some(14), Outcome::Fail)
        // Siblings where one covers the other.
        .read(
            2,
            "k",
            20,
            30,
            vec![ver("a", (1, 1), &[]), ver("b", (2, 1), &[(1, 1)])],
        )
        // A value nobody wrote, one a failed write wrote, one written later.
        .read(2, "k", 40, 50, vec![ver("zzz", (4, 4), &[(1, 1)])])
        .read(2, "k", 60, 70, vec![ver("f", (1, 2), &[(1, 1)])])
        .read(2, "k", 80, 90, vec![ver("late", (3, 1), &[(1, 1)])])
        .write(
            3,
            "k",
            "late",
            &[(1, 1)],
            (3, 1),
            100,
            Some(110),
            Outcome::Ok,
        )
        .build();
    let report = check_staleness(&history);
    assert_eq!(report.sibling_violations, 1, "{report}");
    // "b" at 20..30 was never written either.
    let kinds: Vec<PhantomKind> = report.phantom_examples.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            PhantomKind::NeverWritten,
            PhantomKind::NeverWritten,
            PhantomKind::WrittenByFailedWrite,
            PhantomKind::WrittenAfterReadReturned
        ],
        "{report}"
    );
    assert!(!report.is_ok());
    assert!(
        report
            .to_string()
            .contains("returned zzz@n4:4 which was never written to this key"),
        "{report}"
    );
}

#[test]
fn keys_without_final_read_are_unverified_not_lost() {
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .build();
    let report = check_durability(&history);
    assert!(report.is_ok());
    assert_eq!((report.unverified_keys, report.unverified_writes), (1, 1));
}

#[test]
fn undotted_histories_use_register_order() {
    // A history from a system without dots: values only.
    let mut b = Builder::default();
    b.op(1, OpKind::Write, Some("a".into()), 0, Some(10), Outcome::Ok)
        .op(
            1,
            OpKind::Write,
            Some("b".into()),
            20,
            Some(30),
            Outcome::Ok,
        )
        .read1(2, Some("b"), 40, 50);
    let ok = b.build();
    assert!(check_staleness(&ok).is_ok(), "{}", check_staleness(&ok));
    b.op(1, OpKind::Write, Some("a".into()), 0, Some(10), Outcome::Ok)
        .op(
            1,
            OpKind::Write,
            Some("b".into()),
            20,
            Some(30),
            Outcome::Ok,
        )
        .read1(2, Some("a"), 40, 50);
    let stale = b.build();
    let report = check_staleness(&stale);
    assert_eq!(report.stale_reads, 1, "{report}");
}

#[test]
fn register_models() {
    let mut b = Builder::default();
    b.op(1, OpKind::Write, Some("1".into()), 0, Some(10), Outcome::Ok)
        .op(2, OpKind::Write, Some("2".into()), 5, Some(15), Outcome::Ok)
        .read1(3, Some("1"), 20, 30)
        .read1(3, Some("1"), 31, 40);
    let good = b.build();
    assert_eq!(
        check_linearizability(&good, &Register, Budget::default()).verdict,
        LinVerdict::Linearizable
    );
    b.op(1, OpKind::Write, Some("1".into()), 0, Some(10), Outcome::Ok)
        .op(2, OpKind::Write, Some("2".into()), 5, Some(15), Outcome::Ok)
        .read1(3, Some("1"), 20, 30)
        .read1(3, Some("2"), 31, 40)
        .read1(3, Some("1"), 41, 50);
    let bad = b.build();
    assert_eq!(
        check_linearizability(&bad, &Register, Budget::default()).verdict,
        LinVerdict::NotLinearizable
    );
    // The register model has no cas.
    b.op(
        1,
        OpKind::Cas,
        Some(cas_value("1", "2")),
        0,
        Some(10),
        Outcome::Ok,
    );
    let cas = b.build();
    let report = check_linearizability(&cas, &Register, Budget::default());
    assert_eq!(report.verdict, LinVerdict::Unknown);
    assert!(report.to_string().contains("no cas operation"), "{report}");
}

#[test]
fn cas_register_model() {
    let mut b = Builder::default();
    b.op(1, OpKind::Write, Some("0".into()), 0, Some(10), Outcome::Ok)
        .op(
            1,
            OpKind::Cas,
            Some(cas_value("0", "1")),
            20,
            Some(30),
            Outcome::Ok,
        )
        .op(
            2,
            OpKind::Cas,
            Some(cas_value("0", "2")),
            25,
            Some(35),
            Outcome::Fail,
        )
        .read1(3, Some("1"), 40, 50);
    let good = b.build();
    assert_eq!(
        check_linearizability(&good, &CasRegister, Budget::default()).verdict,
        LinVerdict::Linearizable
    );
    // Two acknowledged cas from the same expected value: one must fail.
    b.op(1, OpKind::Write, Some("0".into()), 0, Some(10), Outcome::Ok)
        .op(
            1,
            OpKind::Cas,
            Some(cas_value("0", "1")),
            20,
            Some(30),
            Outcome::Ok,
        )
        .op(
            2,
            OpKind::Cas,
            Some(cas_value("0", "2")),
            25,
            Some(35),
            Outcome::Ok,
        );
    let bad = b.build();
    assert_eq!(
        check_linearizability(&bad, &CasRegister, Budget::default()).verdict,
        LinVerdict::NotLinearizable
    );
    // A timed-out cas may or may not have applied.
    for seen in ["0", "1"] {
        b.op(1, OpKind::Write, Some("0".into()), 0, Some(10), Outcome::Ok)
            .op(
                1,
                OpKind::Cas,
                Some(cas_value("0", "1")),
                20,
                Some(30),
                Outcome::Timeout,
            )
            .read1(3, Some(seen), 40, 50);
        let maybe = b.build();
        assert_eq!(
            check_linearizability(&maybe, &CasRegister, Budget::default()).verdict,
            LinVerdict::Linearizable
        );
    }
}

#[test]
fn key_value_model_with_append() {
    let mut b = Builder::default();
    b.op(
        1,
        OpKind::Append,
        Some("a".into()),
        0,
        Some(10),
        Outcome::Ok,
    )
    .op(
        2,
        OpKind::Append,
        Some("b".into()),
        5,
        Some(15),
        Outcome::Ok,
    )
    .read1(3, Some("ba"), 20, 30)
    .op(
        1,
        OpKind::Write,
        Some("x".into()),
        40,
        Some(50),
        Outcome::Ok,
    )
    .op(
        1,
        OpKind::Append,
        Some("y".into()),
        60,
        None,
        Outcome::Timeout,
    )
    .read1(3, Some("x"), 70, 80)
    .read1(3, Some("xy"), 90, 100);
    let good = b.build();
    let report = check_with_model(&good, ModelKind::KeyValue).linearizability;
    assert_eq!(report.verdict, LinVerdict::Linearizable, "{report}");
    b.op(
        1,
        OpKind::Append,
        Some("a".into()),
        0,
        Some(10),
        Outcome::Ok,
    )
    .op(
        2,
        OpKind::Append,
        Some("b".into()),
        20,
        Some(30),
        Outcome::Ok,
    )
    .read1(3, Some("ba"), 40, 50);
    let bad = b.build();
    assert_eq!(
        check_linearizability(&bad, &KeyValue, Budget::default()).verdict,
        LinVerdict::NotLinearizable
    );
}

#[test]
fn an_exhausted_budget_is_unknown() {
    // Many concurrent timed-out writes, all seen together, then a read no
    // order explains: the search must try every subset before giving up.
    let mut b = Builder::default();
    for i in 0..12 {
        b.write(
            i,
            "k",
            &format!("v{i}"),
            &[],
            (1, i as u64 + 1),
            i as u64,
            None,
            Outcome::Timeout,
        );
    }
    let all = (0..12)
        .map(|i| ver(&format!("v{i}"), (1, i as u64 + 1), &[]))
        .collect();
    b.read(99, "k", 100, 110, all);
    b.read(99, "k", 120, 130, vec![ver("nope", (9, 9), &[])]);
    let history = b.build();
    let report = check_linearizability(&history, &MultiValueRegister, Budget::steps_per_key(50));
    assert_eq!(report.verdict, LinVerdict::Unknown, "{report}");
    assert!(report.to_string().contains("budget"), "{report}");
    let decided = check_linearizability(&history, &MultiValueRegister, Budget::default());
    assert_eq!(decided.verdict, LinVerdict::NotLinearizable, "{decided}");
    // The same search in too little memory is undecided too, and says why.
    let small = Budget {
        cache_bytes_per_key: 4096,
        ..Budget::default()
    };
    let report = check_linearizability(&history, &MultiValueRegister, small);
    assert_eq!(report.verdict, LinVerdict::Unknown, "{report}");
    assert!(
        report.to_string().contains("memory bound of 4096 bytes"),
        "{report}"
    );
}

#[test]
fn reports_serialize_to_json() {
    let history = generate(&GenConfig::new(5, 200, 3, 3));
    let summary = check_history(&history);
    let json = serde_json::to_value(&summary).expect("serializes");
    assert_eq!(json["linearizable"], "linearizable");
    assert_eq!(json["stale_reads"], 0);
}

#[test]
fn format_one_files_still_parse_and_cas_values_are_checked() {
    let old = "{\"type\":\"header\",\"format\":1}\n{\"type\":\"invoke\",\"id\":0,\"client\":1,\"time_us\":1,\"key\":\"k\",\"op\":\"write\",\"value\":\"a\"}\n";
    assert!(History::read_jsonl(old.as_bytes()).is_ok());
    let bad = "{\"type\":\"invoke\",\"id\":0,\"client\":1,\"time_us\":1,\"key\":\"k\",\"op\":\"cas\",\"value\":\"a\"}\n";
    let err = History::read_jsonl(bad.as_bytes()).unwrap_err().to_string();
    assert!(err.starts_with("line 1:") && err.contains("cas 0"), "{err}");
}

// ------------------------------------------ rules on what clients did

/// The durability checker fails `history`, and its report says each of
/// `in_report`; the whole summary fails too and says `in_summary`.
fn assert_durability_fails_saying(history: &History, in_report: &[&str], in_summary: &str) {
    let report = check_durability(history);
    assert!(!report.is_ok(), "{report}");
    let text = report.to_string();
    for said in in_report {
        assert!(text.contains(said), "not {said:?} in {text}");
    }
    let summary = check_history(history);
    assert!(!summary.is_ok());
    assert!(summary.to_string().contains(in_summary), "{summary}");
}

#[test]
fn reused_dots_are_reported() {
    // Two different acknowledged writes under one dot (a coordinator that
    // restarted empty and counted from 1 again). Both values survive, so
    // only the reuse itself is wrong.
    let reused = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(2, "k", "b", &[], (1, 1), 20, Some(30), Outcome::Ok)
        .final_read(
            "k",
            1_000,
            vec![ver("a", (1, 1), &[]), ver("b", (1, 1), &[])],
        )
        .build();
    let report = check_durability(&reused);
    assert_eq!(
        (report.reused_dots, report.lost_updates),
        (1, 0),
        "{report}"
    );
    assert_eq!(report.reused_examples[0].first.id, 0);
    assert_eq!(report.reused_examples[0].again.id, 1);
    assert_durability_fails_saying(
        &reused,
        &[
            "1 acknowledged writes reuse the dot of another",
            "reused dot 1: n1:1 acknowledged for two different writes",
        ],
        "1 reused dots",
    );
    assert_eq!(check_history(&reused).reused_dots, 1);
    // The same dot on two keys is two dots; another incarnation is another
    // actor; judged without a final read too.
    let distinct = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(2, "j", "b", &[], (1, 1), 20, Some(30), Outcome::Ok)
        .write_reporting(
            2,
            "k",
            "c",
            Clock::new(),
            ObservedVersion {
                value: "c".into(),
                dot: Some(Dot::new(Actor::new(1, 1), 1)),
                context: Some(Clock::new()),
            },
            40,
            50,
            Outcome::Ok,
        )
        .build();
    let report = check_durability(&distinct);
    assert!(report.is_ok(), "{report}");
    let unjudged = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(2, "k", "b", &[], (1, 1), 20, Some(30), Outcome::Ok)
        .build();
    assert_eq!(check_durability(&unjudged).reused_dots, 1);
}

#[test]
fn a_write_acknowledged_as_another_write_is_reported() {
    // The client sent "a"; the acknowledgement reports "x" under the
    // write's own dot. No read ever returns it (the key has no final
    // read), so only the acknowledgement can tell.
    let other_value = Builder::default()
        .write_reporting(
            1,
            "k",
            "a",
            Clock::new(),
            ver("x", (1, 1), &[]),
            0,
            10,
            Outcome::Ok,
        )
        .build();
    let report = check_durability(&other_value);
    assert_eq!(report.misreported_writes, 1, "{report}");
    assert_eq!(report.misreported_examples[0].write.id, 0);
    assert_durability_fails_saying(
        &other_value,
        &[
            "1 acknowledged writes reported as another write than the one sent",
            "the acknowledgement reports the value \"x\", not the value sent",
        ],
        "1 misreported writes",
    );
    assert_eq!(check_history(&other_value).misreported_writes, 1);

    // The client read {n1:1} and sent it; the acknowledgement's version
    // has seen nothing, so it would not supersede the version read.
    let forgot_context = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write_reporting(
            2,
            "k",
            "b",
            vv(&[(1, 1)]),
            ver("b", (2, 1), &[]),
            20,
            30,
            Outcome::Ok,
        )
        .build();
    let report = check_durability(&forgot_context);
    assert_eq!(report.misreported_writes, 1, "{report}");
    assert_eq!(report.misreported_examples[0].write.id, 1);
    let text = report.to_string();
    assert!(
        text.contains("reports the context {}, which leaves out part of the context sent, {n1:1}"),
        "{text}"
    );

    // Not misreported: the same value and the context sent; a context
    // that covers more than was sent (an overwrite joins the replica's
    // own); a timed-out write (nothing acknowledged); an acknowledgement
    // the history recorded without a context.
    let honest = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(2, "k", "b", &[(1, 1)], (2, 1), 20, Some(30), Outcome::Ok)
        .write_reporting(
            1,
            "k",
            "c",
            vv(&[(1, 1)]),
            ver("c", (1, 2), &[(1, 1), (2, 1)]),
            40,
            50,
            Outcome::Ok,
        )
        .write_reporting(
            3,
            "k",
            "d",
            vv(&[(1, 2)]),
            ver("e", (3, 1), &[]),
            60,
            70,
            Outcome::Timeout,
        )
        .write_reporting(
            3,
            "k",
            "f",
            vv(&[(1, 2)]),
            ObservedVersion {
                value: "f".into(),
                dot: Some(Dot::new(Actor::node(3), 2)),
                context: None,
            },
            80,
            90,
            Outcome::Ok,
        )
        .build();
    let report = check_durability(&honest);
    assert_eq!(report.misreported_writes, 0, "{report}");
}

/// An overwrite supersedes every sibling its coordinator holds: its
/// answer lists its own version alone. One that lists another sibling
/// beside it superseded nothing, and is misreported.
#[test]
fn an_overwrite_acknowledged_beside_other_siblings_is_reported() {
    let kept_old = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .overwrite(
            2,
            "k",
            "b",
            ((2, 1), &[]),
            vec![ver("a", (1, 1), &[]), ver("b", (2, 1), &[])],
            20,
            30,
        )
        .build();
    let report = check_durability(&kept_old);
    assert_eq!(report.misreported_writes, 1, "{report}");
    assert_eq!(report.misreported_examples[0].write.id, 1);
    assert_durability_fails_saying(
        &kept_old,
        &["an overwrite acknowledged beside 1 other sibling(s)"],
        "1 misreported writes",
    );
    // The overwrite flag survives the history's JSON lines.
    let back = History::read_jsonl(kept_old.to_jsonl().as_bytes()).expect("parses");
    assert_eq!(check_durability(&back).misreported_writes, 1);

    // Honest: the answer lists the overwrite alone (its context joined the
    // coordinator's), or lists nothing (not recorded); and a write that is
    // not an overwrite may list siblings beside its own.
    let honest = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .overwrite(
            2,
            "k",
            "b",
            ((2, 1), &[(1, 1)]),
            vec![ver("b", (2, 1), &[(1, 1)])],
            20,
            30,
        )
        .overwrite(3, "k", "c", ((3, 1), &[(2, 1)]), Vec::new(), 40, 50)
        .build();
    let report = check_durability(&honest);
    assert_eq!(report.misreported_writes, 0, "{report}");
}

#[test]
fn a_read_whose_context_leaves_out_what_it_returned_is_reported() {
    // Two concurrent writes; a read returns both siblings. Its context is
    // what the client's next write sends: it must cover both versions.
    let siblings = || {
        let mut b = Builder::default();
        b.write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write(2, "k", "b", &[(3, 1)], (2, 1), 0, Some(10), Outcome::Ok);
        b
    };
    let returned = || vec![ver("a", (1, 1), &[]), ver("b", (2, 1), &[(3, 1)])];
    // Leaves out the dot of b: a write sent with it keeps b alive.
    let without_dot = siblings()
        .read_handing_out(3, "k", (20, 30), returned(), vv(&[(1, 1), (3, 1)]))
        .build();
    let report = check_staleness(&without_dot);
    assert_eq!(report.outside_context, 1, "{report}");
    assert!(!report.reads_are_well_formed());
    assert_eq!(report.outside_context_examples[0].version, "b@n2:1");
    let text = report.to_string();
    assert!(
        text.contains("1 returned versions outside the context handed out with them"),
        "{text}"
    );
    assert!(
        text.contains("handed out the context {n1:1, n3:1}, which leaves it out"),
        "{text}"
    );
    assert!(!check_history(&without_dot).is_ok());
    // Covers both dots but not what b had seen.
    let without_past = siblings()
        .read_handing_out(3, "k", (20, 30), returned(), vv(&[(1, 1), (2, 1)]))
        .build();
    assert_eq!(check_staleness(&without_past).outside_context, 1);
    // The join of both clocks: nothing left out; nor is a read the
    // history recorded without a context judged.
    let covering = siblings()
        .read_handing_out(3, "k", (20, 30), returned(), vv(&[(1, 1), (2, 1), (3, 1)]))
        .read(4, "k", 40, 50, returned())
        .build();
    let report = check_staleness(&covering);
    assert_eq!(report.outside_context, 0, "{report}");
    assert!(report.is_ok(), "{report}");

    // A write's answer listing the siblings after it: its context is what
    // the client's next write sends, so it must cover them too.
    let answered = |context: Clock| {
        let mut b = siblings();
        let id = b.invoke(
            3,
            "k",
            OpKind::Write,
            Some("c".into()),
            Some(Clock::new()),
            20,
            false,
        );
        b.history.push(Event::Complete {
            id,
            client: 3,
            time_us: 30,
            outcome: Outcome::Ok,
            values: vec![
                ver("a", (1, 1), &[]),
                ver("b", (2, 1), &[(3, 1)]),
                ver("c", (4, 1), &[]),
            ],
            version: Some(ver("c", (4, 1), &[])),
            context: Some(context),
            error: None,
            invalid: false,
        });
        b.build()
    };
    let own_past_only = check_staleness(&answered(Clock::new()));
    assert_eq!(own_past_only.outside_context, 3, "{own_past_only}");
    assert_eq!(own_past_only.outside_context_examples[0].read.id, 2);
    let all = answered(vv(&[(1, 1), (2, 1), (3, 1), (4, 1)]));
    assert_eq!(check_staleness(&all).outside_context, 0);
}

#[test]
fn durability_is_judged_by_the_context_the_client_sent() {
    // a acknowledged; b is a blind write (its client sent {}), but the
    // system reports b's version with context {n1:1} and drops a. The
    // final read's own contexts "cover" a: only the client's context tells
    // that nobody superseded it.
    let claimed = |sent: Clock, outcome: Outcome| {
        Builder::default()
            .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write_reporting(
                1,
                "k",
                "b",
                sent,
                ver("b", (1, 2), &[(1, 1)]),
                20,
                30,
                outcome,
            )
            .final_read("k", 1_000, vec![ver("b", (1, 2), &[(1, 1)])])
            .build()
    };
    let lost = check_durability(&claimed(Clock::new(), Outcome::Ok));
    assert_eq!(lost.lost_updates, 1, "{lost}");
    assert_eq!(lost.lost[0].write.value.as_deref(), Some("a"));
    assert!(lost.to_string().contains("lost write 1: op 0"), "{lost}");
    assert!(!check_history(&claimed(Clock::new(), Outcome::Ok)).is_ok());
    // A context of another incarnation of node 1 does not vouch for n1:1.
    let other_life = check_durability(&claimed(clock(&[(1, 1, 1)]), Outcome::Ok));
    assert_eq!(other_life.lost_updates, 1, "{other_life}");
    // The client did send {n1:1}: a was superseded, not lost.
    let superseded = check_durability(&claimed(vv(&[(1, 1)]), Outcome::Ok));
    assert!(superseded.is_ok(), "{superseded}");
    // A superseder that timed out (or never completed) may have applied:
    // it vouches; one that certainly failed does not.
    for outcome in [Outcome::Timeout, Outcome::Ok] {
        let history = Builder::default()
            .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write(1, "k", "b", &[(1, 1)], (2, 1), 20, Some(30), outcome)
            .write(3, "k", "c", &[], (3, 1), 40, Some(50), Outcome::Ok)
            .final_read("k", 1_000, vec![ver("c", (3, 1), &[])])
            .build();
        let report = check_durability(&history);
        assert_eq!(
            report.lost_updates,
            usize::from(outcome == Outcome::Ok),
            "{outcome:?}: {report}"
        );
    }
    let never_completed = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(1, "k", "b", &[(1, 1)], (2, 1), 20, None, Outcome::Timeout)
        .final_read("k", 1_000, vec![])
        .build();
    assert!(check_durability(&never_completed).is_ok());
    for outcome in [Outcome::Unavailable, Outcome::Fail] {
        let history = Builder::default()
            .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write(1, "k", "b", &[(1, 1)], (2, 1), 20, Some(30), outcome)
            .final_read("k", 1_000, vec![])
            .build();
        let report = check_durability(&history);
        assert_eq!(report.lost_updates, 1, "{outcome:?}: {report}");
    }
    // The dot judged is the one a's acknowledgement reported (n1:1), not
    // one a final read claims for it.
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(1, "k", "b", &[(1, 7)], (2, 1), 20, Some(30), Outcome::Ok)
        .final_read("k", 1_000, vec![ver("b", (2, 1), &[(1, 7)])])
        .build();
    assert!(check_durability(&history).is_ok());
}

#[test]
fn a_superseded_version_must_not_come_back() {
    // a acknowledged; client 2 read it and wrote b with context {n1:1}; a
    // coordinator that ignored the context stored b with {} (the system
    // reports a and b as concurrent siblings) and keeps returning a.
    let ignored = |read_start: u64| {
        Builder::default()
            .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write_reporting(
                1,
                "k",
                "b",
                vv(&[(1, 1)]),
                ver("b", (2, 1), &[]),
                20,
                30,
                Outcome::Ok,
            )
            .read(
                3,
                "k",
                read_start,
                read_start + 10,
                vec![ver("a", (1, 1), &[]), ver("b", (2, 1), &[])],
            )
            .build()
    };
    let report = check_staleness(&ignored(40));
    assert_eq!(
        (report.stale_reads, report.superseded_returned),
        (1, 1),
        "{report}"
    );
    assert_eq!(report.sibling_violations, 0, "{report}");
    assert!(!report.is_ok());
    let example = &report.superseded_examples[0];
    assert_eq!((example.read.id, example.superseded_by.id), (2, 1));
    assert_eq!(example.version, "a@n1:1");
    let text = report.to_string();
    assert!(
        text.contains("1 stale reads (1 superseded versions returned)"),
        "{text}"
    );
    assert!(
        text.contains("read op 2 returned a@n1:1, superseded by op 1 (its client sent context {n1:1} covering n1:1) acknowledged at 30 us, before the read began at 40 us"),
        "{text}"
    );
    let summary = check_history(&ignored(40));
    assert_eq!((summary.stale_reads, summary.superseded_returned), (1, 1));
    assert!(!summary.is_ok());
    assert!(
        summary
            .to_string()
            .contains("(1 superseded versions returned)"),
        "{summary}"
    );
    // A read that began before b was acknowledged may still see a.
    assert!(check_staleness(&ignored(25)).is_ok());
    // A correct coordinator: b replaced a.
    let correct = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(1, "k", "b", &[(1, 1)], (2, 1), 20, Some(30), Outcome::Ok)
        .read(3, "k", 40, 50, vec![ver("b", (2, 1), &[(1, 1)])])
        .build();
    assert!(
        check_staleness(&correct).is_ok(),
        "{}",
        check_staleness(&correct)
    );
    // Writes of v's own value never supersede it, however high their
    // contexts; a lower one of another value still does.
    let repeated = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(2, "k", "a", &[(1, 9)], (2, 1), 12, Some(14), Outcome::Ok)
        .write(2, "k", "a", &[(1, 8)], (2, 2), 15, Some(18), Outcome::Ok)
        .write_reporting(
            1,
            "k",
            "b",
            vv(&[(1, 1)]),
            ver("b", (3, 1), &[]),
            20,
            30,
            Outcome::Ok,
        )
        .read(
            4,
            "k",
            40,
            50,
            vec![ver("a", (1, 1), &[]), ver("b", (3, 1), &[])],
        )
        .build();
    let report = check_staleness(&repeated);
    assert_eq!(report.superseded_returned, 1, "{report}");
    assert_eq!(
        report.superseded_examples[0].superseded_by.id, 3,
        "{report}"
    );
    // An unacknowledged superseder is not required.
    let timed_out = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(
            1,
            "k",
            "b",
            &[(1, 1)],
            (2, 1),
            20,
            Some(30),
            Outcome::Timeout,
        )
        .read(3, "k", 40, 50, vec![ver("a", (1, 1), &[])])
        .build();
    assert!(check_staleness(&timed_out).is_ok());
}

#[test]
fn supersession_chains_follow_the_contexts_clients_sent() {
    // b's client read a and superseded it; c's client sent a context
    // naming b's dot (without having read b's clock: an adversarial
    // client). The store rightly keeps only c, whose own context does not
    // mention a: the read covers a through b.
    let chain = |b_sent: Clock| {
        Builder::default()
            .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write_reporting(
                1,
                "k",
                "b",
                b_sent,
                ver("b", (2, 1), &[(1, 1)]),
                20,
                30,
                Outcome::Ok,
            )
            .write(1, "k", "c", &[(2, 1)], (3, 1), 40, Some(50), Outcome::Ok)
            .read(4, "k", 60, 70, vec![ver("c", (3, 1), &[(2, 1)])])
            .final_read("k", 1_000, vec![ver("c", (3, 1), &[(2, 1)])])
            .build()
    };
    let summary = check_history(&chain(vv(&[(1, 1)])));
    assert!(summary.is_strictly_ok(), "{summary}");
    // Had b's client sent nothing (the system invented b's {n1:1}), a
    // was dropped without any client superseding it: both reads are stale
    // and a is lost.
    let summary = check_history(&chain(Clock::new()));
    assert_eq!(
        (summary.stale_reads, summary.lost_updates),
        (2, 1),
        "{summary}"
    );
    assert_eq!(
        summary.staleness.stale_examples[0].missed[0]
            .value
            .as_deref(),
        Some("a")
    );
}

#[test]
fn a_read_stale_twice_over_counts_once() {
    // The read misses b and c and returns a, which b superseded. The read
    // reports a under another dot: for supersession, the one a's
    // acknowledgement reported (n1:1) is the one judged.
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(1, "k", "b", &[(1, 1)], (2, 1), 20, Some(30), Outcome::Ok)
        .write(3, "k", "c", &[], (3, 1), 20, Some(35), Outcome::Ok)
        .read(4, "k", 40, 50, vec![ver("a", (1, 7), &[])])
        .build();
    let report = check_staleness(&history);
    assert_eq!(
        (report.stale_reads, report.superseded_returned),
        (1, 1),
        "{report}"
    );
    let stale = &report.stale_examples[0];
    // a's value under another dot does not cover n1:1 either: missed too.
    assert_eq!((stale.k, stale.t_visibility_us), (3, 30), "{report}");
    assert_eq!(stale.superseded, ["a@n1:7"]);
    assert!(
        report
            .to_string()
            .contains("is behind 3 acknowledged write(s) (missed 3, returned superseded a@n1:7)"),
        "{report}"
    );
    assert_eq!(report.superseded_examples[0].dot, "n1:1");
}

#[test]
fn stores_are_checked_without_final_reads() {
    use quorumlog_check::{check_stores, StoreContents};
    // a superseded by b (its client sent {n1:1}); c a blind write; d a
    // blind write whose only superseder was refused.
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(1, "k", "b", &[(1, 1)], (2, 1), 20, Some(30), Outcome::Ok)
        .write(3, "k", "c", &[], (3, 1), 40, Some(50), Outcome::Ok)
        .write(1, "j", "d", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(
            1,
            "j",
            "e",
            &[(1, 1)],
            (2, 1),
            20,
            Some(30),
            Outcome::Unavailable,
        )
        .write(1, "j", "f", &[(1, 1)], (3, 1), 40, None, Outcome::Timeout)
        .build();
    let store = |node: u32, k: Vec<ObservedVersion>, j: Vec<ObservedVersion>| {
        let mut s = StoreContents::new(node);
        s.insert("k", k).insert("j", j);
        s
    };
    let b = || ver("b", (2, 1), &[(1, 1)]);
    let c = || ver("c", (3, 1), &[]);
    // Every replica lost c; d is superseded by the timed-out f (which may
    // have applied), though the stores hold neither.
    let lost = [store(1, vec![b()], vec![]), store(2, vec![b()], vec![])];
    let report = check_stores(&history, &lost);
    assert_eq!(
        (
            report.acknowledged_writes,
            report.held,
            report.superseded,
            report.missing_writes
        ),
        (4, 1, 2, 1),
        "{report}"
    );
    assert!(!report.is_ok());
    assert_eq!(report.missing[0].write.value.as_deref(), Some("c"));
    assert_eq!(report.missing[0].replicas_with_key, [1, 2]);
    let text = report.to_string();
    assert!(text.contains("1 missing from every store"), "{text}");
    assert!(
        text.contains("missing write 1: op 2 client 3 key \"k\" write \"c\" as n3:1"),
        "{text}"
    );
    assert!(text.contains("replicas n1, n2 hold [b@n2:1]"), "{text}");
    // One replica holding c is enough.
    let held = [
        store(1, vec![b()], vec![]),
        store(2, vec![b(), c()], vec![]),
    ];
    let report = check_stores(&history, &held);
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.held, report.superseded), (2, 2));
    // Without f, nothing vouches for d.
    let mut without_f = history.clone();
    without_f
        .events
        .retain(|e| !matches!(e, Event::Invoke { id: 5, .. }));
    let report = check_stores(&without_f, &held);
    assert_eq!(report.missing_writes, 1, "{report}");
    assert_eq!(report.missing[0].write.value.as_deref(), Some("d"));
    assert!(
        report.to_string().contains("no replica holds the key"),
        "{report}"
    );
}

#[test]
fn generated_histories_with_incarnations_pass() {
    for seed in 0..5 {
        let history = generate(&GenConfig {
            incarnations: 3,
            timeout_ratio: 0.05,
            ..GenConfig::new(seed, 400, 3, 4)
        });
        let text = history.to_jsonl();
        assert!(text.contains("\"incarnation\":2"), "seed {seed}");
        let parsed = History::read_jsonl(text.as_bytes()).expect("parses");
        assert_eq!(parsed, history);
        let summary = check_history(&history);
        assert!(summary.is_strictly_ok(), "seed {seed}:\n{summary}");
    }
}

// ------------------------------------------------------------- proptests

/// Events of operation `id`: (invoke index, complete index).
fn events_of(history: &History, id: u64) -> (usize, Option<usize>) {
    let mut invoke = usize::MAX;
    let mut complete = None;
    for (i, e) in history.events.iter().enumerate() {
        match e {
            Event::Invoke { id: x, .. } if *x == id => invoke = i,
            Event::Complete { id: x, .. } if *x == id => complete = Some(i),
            _ => {}
        }
    }
    (invoke, complete)
}

fn set_values(history: &mut History, id: u64, new: Vec<ObservedVersion>) {
    if let (_, Some(c)) = events_of(history, id) {
        if let Event::Complete {
            values, context, ..
        } = &mut history.events[c]
        {
            *values = new;
            *context = None;
        }
    }
}

fn config(seed: u64, ops: usize, keys: usize, clients: u32, timeouts: f64) -> GenConfig {
    GenConfig {
        timeout_ratio: timeouts,
        ..GenConfig::new(seed, ops, keys, clients)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sequential_histories_are_accepted(seed in any::<u64>(), ops in 1usize..300, keys in 1usize..5, timeouts in 0.0f64..0.2) {
        let history = generate(&config(seed, ops, keys, 1, timeouts));
        let summary = check_history(&history);
        prop_assert!(summary.is_strictly_ok(), "{}", summary);
    }

    #[test]
    fn concurrent_valid_histories_are_accepted(seed in any::<u64>(), ops in 1usize..400, keys in 1usize..5, clients in 2u32..8, timeouts in 0.0f64..0.2) {
        let history = generate(&config(seed, ops, keys, clients, timeouts));
        let summary = check_history(&history);
        prop_assert!(summary.is_strictly_ok(), "{}", summary);
    }

    #[test]
    fn an_injected_stale_read_is_rejected(seed in any::<u64>(), clients in 1u32..6, pick in any::<prop::sample::Index>()) {
        let mut history = generate(&config(seed, 200, 2, clients, 0.05));
        let ops = history.operations();
        // Reads that began after some acknowledged write of their key.
        let candidates: Vec<u64> = ops.iter().filter(|r| {
            r.kind == OpKind::Read && r.is_ok() && !r.is_final
                && ops.iter().any(|w| w.key == r.key && w.kind == OpKind::Write && w.is_ok() && w.complete_us < Some(r.invoke_us))
        }).map(|r| r.id).collect();
        prop_assume!(!candidates.is_empty());
        let victim = candidates[pick.index(candidates.len())];
        set_values(&mut history, victim, Vec::new());
        let summary = check_history(&history);
        prop_assert!(summary.stale_reads >= 1, "{}", summary);
        prop_assert!(summary.staleness.stale_examples.iter().any(|s| s.read.id == victim));
        prop_assert_eq!(summary.linearizable, LinVerdict::NotLinearizable);
        prop_assert!(!summary.is_ok());
    }

    #[test]
    fn an_injected_lost_write_is_rejected(seed in any::<u64>(), clients in 1u32..6, pick in any::<prop::sample::Index>(), rollback in any::<bool>()) {
        let mut history = generate(&config(seed, 200, 3, clients, 0.05));
        let ops = history.operations();
        // Acknowledged writes no other write (that did not certainly fail)
        // superseded by the context its client sent: nothing may vouch for
        // them, so removing them from the final read loses them.
        let unsuperseded = |key: &str| -> Vec<u64> {
            ops.iter().filter(|w| w.key == key && w.kind == OpKind::Write && w.is_ok()).filter(|w| {
                let dot = w.version.as_ref().and_then(|v| v.dot).expect("acknowledged writes have dots");
                !ops.iter().any(|x| x.id != w.id && x.key == key && x.kind == OpKind::Write && !x.is_failed()
                    && x.context.as_ref().is_some_and(|c| c.covers(dot)))
            }).map(|w| w.id).collect()
        };
        let finals: Vec<_> = ops.iter().filter(|f| f.is_final && !unsuperseded(&f.key).is_empty()).collect();
        prop_assume!(!finals.is_empty());
        let fin = finals[pick.index(finals.len())];
        let frontier = unsuperseded(&fin.key);
        // Lose everything, or roll back to the first acknowledged version
        // when another unsuperseded write exists.
        let acked: Vec<_> = ops.iter().filter(|w| w.key == fin.key && w.kind == OpKind::Write && w.is_ok()).collect();
        let first = acked[0];
        let keep_first = rollback && frontier.iter().any(|&id| id != first.id);
        let replacement = if keep_first {
            vec![first.version.clone().expect("acknowledged writes have versions")]
        } else {
            Vec::new()
        };
        let expected: Vec<u64> = frontier.iter().copied().filter(|&id| !keep_first || id != first.id).collect();
        let (fin_id, fin_key) = (fin.id, fin.key.clone());
        set_values(&mut history, fin_id, replacement);
        let summary = check_history(&history);
        prop_assert!(summary.lost_updates >= expected.len(), "{}", summary);
        prop_assert!(summary.durability.lost.iter().all(|l| l.write.key == fin_key));
        for id in expected {
            prop_assert!(summary.durability.lost.iter().any(|l| l.write.id == id), "op {} not lost:\n{}", id, summary);
        }
        prop_assert!(!summary.is_ok());
    }

    #[test]
    fn real_time_reordering_is_rejected(seed in any::<u64>(), clients in 1u32..6, pick in any::<prop::sample::Index>()) {
        let mut history = generate(&config(seed, 200, 2, clients, 0.0));
        let ops = history.operations();
        // A read that returned an acknowledged write's version, moved to
        // before that write was invoked.
        let pairs: Vec<(u64, u64)> = ops.iter().filter(|r| r.kind == OpKind::Read && r.is_ok() && !r.is_final).flat_map(|r| {
            ops.iter().filter(|w| w.kind == OpKind::Write && w.is_ok() && w.key == r.key && w.invoke_us >= 20
                && r.values.iter().any(|v| Some(v) == w.version.as_ref()))
                .map(|w| (r.id, w.invoke_us)).collect::<Vec<_>>()
        }).collect();
        prop_assume!(!pairs.is_empty());
        let (read, write_invoked) = pairs[pick.index(pairs.len())];
        let (i, c) = events_of(&history, read);
        if let Event::Invoke { time_us, .. } = &mut history.events[i] { *time_us = write_invoked - 20; }
        if let Some(c) = c { if let Event::Complete { time_us, .. } = &mut history.events[c] { *time_us = write_invoked - 10; } }
        let summary = check_history(&history);
        prop_assert!(summary.staleness.phantom_examples.iter().any(|p| p.read.id == read && p.kind == PhantomKind::WrittenAfterReadReturned), "{}", summary);
        prop_assert_eq!(summary.linearizable, LinVerdict::NotLinearizable);
    }
}

// ------------------------------------------- search against brute force

/// Brute force: is there an order of the kept operations (indeterminate
/// ones optional) respecting real time that the model accepts?
fn brute_force<M: Model>(model: &M, history: &History) -> bool {
    let ops = history.operation_refs();
    let mut names = Interner::new();
    let prepared = model
        .prepare(&ops, &mut names)
        .expect("model supports the ops");
    let kept: Vec<(usize, M::Op)> = prepared
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .collect();
    let end = |i: usize| {
        if ops[i].is_indeterminate() {
            u64::MAX
        } else {
            ops[i].complete_us.unwrap_or(u64::MAX)
        }
    };
    fn go<M: Model>(
        model: &M,
        kept: &[(usize, M::Op)],
        ops: &[quorumlog_history::OperationRef<'_>],
        end: &dyn Fn(usize) -> u64,
        used: &mut Vec<bool>,
        states: Vec<M::State>,
    ) -> bool {
        // Done when every determinate op is placed (the rest: never).
        if kept
            .iter()
            .enumerate()
            .all(|(k, (i, _))| used[k] || ops[*i].is_indeterminate())
        {
            return true;
        }
        for k in 0..kept.len() {
            if used[k] {
                continue;
            }
            let (i, op) = &kept[k];
            // Every unplaced op that returned before this one was invoked
            // must come first.
            let blocked = kept
                .iter()
                .enumerate()
                .any(|(j, (o, _))| !used[j] && j != k && end(*o) < ops[*i].invoke_us);
            if blocked {
                continue;
            }
            let mut next = Vec::new();
            for s in &states {
                model.step(s, op, &mut next);
            }
            next.sort();
            next.dedup();
            if next.is_empty() {
                continue;
            }
            used[k] = true;
            if go(model, kept, ops, end, used, next) {
                return true;
            }
            used[k] = false;
        }
        false
    }
    let mut used = vec![false; kept.len()];
    go(model, &kept, &ops, &end, &mut used, vec![model.init()])
}

/// A tiny random register history: (kind, value, start, length, outcome).
fn tiny_history(spec: &[(bool, u8, u64, u64, u8)]) -> History {
    let mut b = Builder::default();
    for (n, &(is_write, value, start, len, outcome)) in spec.iter().enumerate() {
        let outcome = match outcome % 6 {
            0 => Outcome::Timeout,
            1 => Outcome::Fail,
            _ => Outcome::Ok,
        };
        let end = if outcome == Outcome::Timeout && len % 2 == 0 {
            None
        } else {
            Some(start + len)
        };
        if is_write {
            b.op(
                n as u32,
                OpKind::Write,
                Some(format!("v{n}")),
                start,
                end,
                outcome,
            );
        } else {
            // Reads return one of the written values, or nothing.
            let seen = (value as usize) % (spec.len() + 1);
            let returned = (seen < spec.len()).then(|| format!("v{seen}"));
            b.read1(n as u32, returned.as_deref(), start, start + len);
        }
    }
    b.build()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_search_agrees_with_brute_force(spec in prop::collection::vec((any::<bool>(), any::<u8>(), 0u64..40, 1u64..20, any::<u8>()), 1..7)) {
        let history = tiny_history(&spec);
        let expected = brute_force(&Register, &history);
        let report = check_linearizability(&history, &Register, Budget::unlimited());
        let verdict = if expected { LinVerdict::Linearizable } else { LinVerdict::NotLinearizable };
        prop_assert_eq!(report.verdict, verdict, "{}\n{}", history.to_jsonl(), report);
    }
}

#[test]
fn a_long_single_key_history_is_decided() {
    for (timeouts, blind) in [(0.02, 0.1), (0.3, 0.1), (0.3, 0.8)] {
        let history = generate(&GenConfig {
            timeout_ratio: timeouts,
            blind_write_ratio: blind,
            ..GenConfig::new(11, 5_000, 1, 8)
        });
        let report = check_linearizability(&history, &MultiValueRegister, Budget::default());
        assert_eq!(
            report.verdict,
            LinVerdict::Linearizable,
            "timeouts {timeouts}, blind {blind}: {report}"
        );
    }
}

#[test]
fn a_context_cannot_vouch_for_writes_made_after_it() {
    // x's client sent {n1:500} (forged, or from another key) before n1 had
    // minted anything for this key; the system let x supersede n1:1 and
    // n1:2, written after x. x's client never saw them: they are lost. (The
    // staleness checker takes returned versions' clocks as reported, so
    // the read is judged by durability, not there.)
    let forged = |sent: &[(u32, u64)]| {
        Builder::default()
            .write(1, "k", "x", sent, (2, 1), 0, Some(10), Outcome::Ok)
            .write(2, "k", "a", &[], (1, 1), 20, Some(30), Outcome::Ok)
            .write(3, "k", "b", &[], (1, 2), 40, Some(50), Outcome::Ok)
            .read(4, "k", 60, 70, vec![ver("x", (2, 1), &[(1, 500)])])
            .final_read("k", 1_000, vec![ver("x", (2, 1), &[(1, 500)])])
            .build()
    };
    let history = forged(&[(1, 500)]);
    let durability = check_durability(&history);
    assert_eq!(durability.lost_updates, 2, "{durability}");
    use quorumlog_check::{check_stores, StoreContents};
    let mut store = StoreContents::new(1);
    store.insert("k", vec![ver("x", (2, 1), &[(1, 500)])]);
    let stores = check_stores(&history, &[store]);
    assert_eq!(stores.missing_writes, 2, "{stores}");
    // Had x's client read them first, they were superseded.
    let later = Builder::default()
        .write(2, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(3, "k", "b", &[], (1, 2), 20, Some(30), Outcome::Ok)
        .read(
            1,
            "k",
            32,
            38,
            vec![ver("a", (1, 1), &[]), ver("b", (1, 2), &[])],
        )
        .write(1, "k", "x", &[(1, 2)], (2, 1), 40, Some(50), Outcome::Ok)
        .read(4, "k", 60, 70, vec![ver("x", (2, 1), &[(1, 2)])])
        .final_read("k", 1_000, vec![ver("x", (2, 1), &[(1, 2)])])
        .build();
    assert!(check_history(&later).is_ok(), "{}", check_history(&later));
}

#[test]
fn a_context_vouches_only_for_what_its_own_client_was_answered() {
    // a is acknowledged and client 2 reads it. A write whose context names
    // a supersedes it only if its client had been answered with a: client
    // 3, which never was, sending {n1:1} (a forged context, or one passed
    // on out of band) does not vouch for a; client 2 does.
    let history = |writer: u32| {
        Builder::default()
            .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .read(2, "k", 20, 30, vec![ver("a", (1, 1), &[])])
            .write(
                writer,
                "k",
                "x",
                &[(1, 1)],
                (2, 1),
                40,
                Some(50),
                Outcome::Ok,
            )
            .final_read("k", 1_000, vec![ver("x", (2, 1), &[(1, 1)])])
            .build()
    };
    let forged = check_durability(&history(3));
    assert_eq!(forged.lost_updates, 1, "{forged}");
    assert_eq!(forged.lost[0].write.value.as_deref(), Some("a"));
    let read_first = check_durability(&history(2));
    assert!(read_first.is_ok(), "{read_first}");
}

#[test]
fn a_cas_that_observed_a_mismatch_is_checked_and_a_failed_one_is_not() {
    // The register holds "0" throughout the cas: a cas from "0" that says
    // its compare failed is impossible; recorded as `fail` (no effect, no
    // observation) it is dropped and proves nothing.
    let history = |outcome: Outcome| {
        let mut b = Builder::default();
        b.op(1, OpKind::Write, Some("0".into()), 0, Some(10), Outcome::Ok)
            .op(
                2,
                OpKind::Cas,
                Some(cas_value("0", "1")),
                20,
                Some(30),
                outcome,
            )
            .read1(3, Some("0"), 40, 50);
        b.build()
    };
    let verdict = |h: &History| check_linearizability(h, &CasRegister, Budget::default()).verdict;
    assert_eq!(
        verdict(&history(Outcome::Mismatch)),
        LinVerdict::NotLinearizable
    );
    assert_eq!(verdict(&history(Outcome::Fail)), LinVerdict::Linearizable);
    // A concurrent write of "2" explains the mismatch.
    let mut b = Builder::default();
    b.op(1, OpKind::Write, Some("0".into()), 0, Some(10), Outcome::Ok)
        .op(
            4,
            OpKind::Write,
            Some("2".into()),
            15,
            Some(35),
            Outcome::Ok,
        )
        .op(
            2,
            OpKind::Cas,
            Some(cas_value("0", "1")),
            20,
            Some(30),
            Outcome::Mismatch,
        )
        .read1(3, Some("2"), 40, 50);
    assert_eq!(verdict(&b.build()), LinVerdict::Linearizable);
    // Every other checker takes a mismatch as no effect.
    let summary = check_history(&history(Outcome::Mismatch));
    assert_eq!(summary.stale_reads, 0, "{summary}");
    // Only a cas may report one.
    let text = "{\"type\":\"header\",\"format\":1}\n\
        {\"type\":\"invoke\",\"id\":0,\"client\":1,\"time_us\":0,\"key\":\"k\",\"op\":\"write\",\"value\":\"a\"}\n\
        {\"type\":\"complete\",\"id\":0,\"client\":1,\"time_us\":5,\"outcome\":\"mismatch\"}\n";
    let err = History::read_jsonl(text.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("only a cas") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn a_history_with_a_handed_out_context_refused_as_malformed_fails_the_summary() {
    // As a real cluster's recorder writes it: a read hands out a context,
    // the next write sends it unchanged (`context_from`) and is refused as
    // malformed (`invalid`). No ground truth is needed to judge it.
    let text = concat!(
        "{\"type\":\"header\",\"format\":2,\"scenario\":\"bench\",\"n\":3}\n",
        "{\"type\":\"invoke\",\"id\":0,\"client\":1,\"time_us\":1,\"key\":\"k\",\"op\":\"write\",\"value\":\"a\",\"context\":{},\"level\":\"W=QUORUM\"}\n",
        "{\"type\":\"complete\",\"id\":0,\"client\":1,\"time_us\":10,\"outcome\":\"ok\",\"version\":{\"value\":\"a\",\"dot\":{\"node\":1,\"counter\":1},\"context\":{}},\"values\":[{\"value\":\"a\",\"dot\":{\"node\":1,\"counter\":1},\"context\":{}}],\"context\":{\"1\":1}}\n",
        "{\"type\":\"invoke\",\"id\":1,\"client\":1,\"time_us\":20,\"key\":\"k\",\"op\":\"write\",\"value\":\"b\",\"context\":{\"1\":1},\"level\":\"W=QUORUM\",\"context_from\":0}\n",
        "{\"type\":\"complete\",\"id\":1,\"client\":1,\"time_us\":30,\"outcome\":\"fail\",\"error\":\"400 bad_request: causal context was not issued by this cluster\",\"invalid\":true}\n",
    );
    let history = History::read_jsonl(text.as_bytes()).expect("parses");
    let summary = check_history(&history);
    assert!(!summary.is_ok(), "{summary}");
    assert_eq!(summary.refused_contexts.refused, 1);
    let shown = summary.to_string();
    assert!(shown.contains("1 handed-out contexts refused"), "{shown}");
    assert!(
        shown.contains("op 1 (client 1, key k") && shown.contains("op 0's answer handed out"),
        "{shown}"
    );
    // The same refusal for a context the client made up (no
    // `context_from`), or refused for a limit (not `invalid`): not judged.
    for (from, invalid) in [("", "true"), (",\"context_from\":0", "false")] {
        let text = text
            .replace(",\"context_from\":0", from)
            .replace("\"invalid\":true", &format!("\"invalid\":{invalid}"));
        let history = History::read_jsonl(text.as_bytes()).expect("parses");
        let summary = check_history(&history);
        assert!(summary.refused_contexts.is_ok(), "{summary}");
    }
}

// ------------------------------------------------ boundaries and corners

/// `report` found exactly one stale read, and the write it missed first
/// is the one of `value`.
fn assert_one_stale_read_missing(report: &quorumlog_check::StalenessReport, value: &str) {
    assert_eq!(report.stale_reads, 1, "{report}");
    assert_eq!(
        report.stale_examples[0].missed[0].value.as_deref(),
        Some(value),
        "{report}"
    );
}

/// A write acknowledged in the very microsecond a read began is
/// concurrent with it, so the read may miss it; acknowledged a
/// microsecond earlier, it must be seen.
#[test]
fn a_read_must_see_only_the_writes_acknowledged_before_it_began() {
    let history = |read_start: u64| {
        Builder::default()
            .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .read(2, "k", read_start, read_start + 10, vec![])
            .build()
    };
    let touching = check_history(&history(10));
    assert!(touching.is_strictly_ok(), "{touching}");
    let after = check_staleness(&history(11));
    assert_eq!(after.stale_reads, 1, "{after}");
}

/// A write invoked in the very microsecond a read returned is concurrent
/// with it, so the read may return its value; invoked a microsecond
/// later, the value is a phantom.
#[test]
fn a_read_may_return_a_write_invoked_as_it_returned() {
    let history = |write_start: u64| {
        Builder::default()
            .read(2, "k", 0, 10, vec![ver("a", (1, 1), &[])])
            .write(
                1,
                "k",
                "a",
                &[],
                (1, 1),
                write_start,
                Some(write_start + 10),
                Outcome::Ok,
            )
            .build()
    };
    let touching = check_history(&history(10));
    assert!(touching.is_strictly_ok(), "{touching}");
    let later = check_staleness(&history(11));
    assert_eq!(later.phantom_reads, 1, "{later}");
    assert_eq!(
        later.phantom_examples[0].kind,
        PhantomKind::WrittenAfterReadReturned
    );
}

/// Siblings are judged pairwise, whichever of the two a read lists first.
#[test]
fn a_covered_sibling_is_reported_in_either_order() {
    for covering_first in [false, true] {
        let mut values = vec![ver("a", (1, 1), &[]), ver("b", (2, 1), &[(1, 1)])];
        if covering_first {
            values.reverse();
        }
        let history = Builder::default()
            .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write(1, "k", "b", &[(1, 1)], (2, 1), 20, Some(30), Outcome::Ok)
            .read(2, "k", 40, 50, values)
            .build();
        let report = check_staleness(&history);
        assert_eq!(report.sibling_violations, 1, "{report}");
        let example = &report.sibling_examples[0];
        assert_eq!(
            (example.covered.as_str(), example.covering.as_str()),
            ("a@n1:1", "b@n2:1")
        );
    }
}

/// A write whose outcome is unknown and whose version no read returned
/// (`x`, whose client read `a` and sent {n1:1}) may have superseded `a`.
/// It excuses a read that missed `a` only when the read may have seen
/// `x`: the read covers a dot no known write has (`x`'s, perhaps), and
/// `x` was invoked before the read returned.
#[test]
fn a_hidden_write_excuses_a_missed_write_only_if_the_read_may_have_seen_it() {
    let history = |read_context: &[(u32, u64)], x_start: u64| {
        let mut b = Builder::default();
        b.write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write(2, "k", "c", &[], (2, 1), 0, Some(10), Outcome::Ok)
            .read(
                5,
                "k",
                11,
                12,
                vec![ver("a", (1, 1), &[]), ver("c", (2, 1), &[])],
            )
            .write(2, "k", "b", &[(2, 1)], (2, 2), 14, Some(16), Outcome::Ok)
            .write(
                5,
                "k",
                "x",
                &[(1, 1)],
                (3, 1),
                x_start,
                None,
                Outcome::Timeout,
            )
            .read(3, "k", 20, 30, vec![ver("b", (2, 2), read_context)]);
        b.build()
    };
    // n3:1 is no known write's dot: x may be behind it.
    let excused = check_staleness(&history(&[(2, 1), (3, 1)], 25));
    assert!(excused.is_ok(), "{excused}");
    // Invoked after the read returned: the read cannot have seen it.
    let too_late = check_staleness(&history(&[(2, 1), (3, 1)], 31));
    assert_one_stale_read_missing(&too_late, "a");
    // The read covers only known dots: nothing hidden behind them.
    let known_only = check_staleness(&history(&[(2, 1)], 25));
    assert_one_stale_read_missing(&known_only, "a");
}

/// A write that certainly failed supersedes nothing, even when its
/// failure reports a version and a later version's clock covers that
/// version's dot: a read that missed what the failed write's client had
/// read is stale.
#[test]
fn a_failed_write_does_not_carry_a_supersession_chain() {
    let mut b = Builder::default();
    b.write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(3, "k", "c", &[], (3, 1), 0, Some(10), Outcome::Ok)
        .read(
            2,
            "k",
            11,
            12,
            vec![ver("a", (1, 1), &[]), ver("c", (3, 1), &[])],
        );
    let x = b.invoke(
        2,
        "k",
        OpKind::Write,
        Some("x".into()),
        Some(vv(&[(1, 1)])),
        20,
        false,
    );
    b.complete(
        x,
        2,
        30,
        Outcome::Unavailable,
        Vec::new(),
        Some(ver("x", (2, 1), &[(1, 1)])),
    );
    let history = b
        .write_reporting(
            3,
            "k",
            "d",
            vv(&[(3, 1)]),
            ver("d", (4, 1), &[(2, 1), (3, 1)]),
            32,
            35,
            Outcome::Ok,
        )
        .read(4, "k", 40, 50, vec![ver("d", (4, 1), &[(2, 1), (3, 1)])])
        .build();
    let report = check_staleness(&history);
    assert_one_stale_read_missing(&report, "a");
}

/// A returned version covers, through its writer's context, only what
/// that writer's client had been answered with: x's client never saw a,
/// so x's {n1:1} does not excuse a read that returned x (recorded without
/// its clock) and missed a.
#[test]
fn a_returned_version_vouches_through_its_writer_only_for_what_that_client_saw() {
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(3, "k", "x", &[(1, 1)], (2, 1), 20, Some(30), Outcome::Ok)
        .read(
            4,
            "k",
            40,
            50,
            vec![ObservedVersion {
                value: "x".into(),
                dot: Some(Dot::new(Actor::node(2), 1)),
                context: None,
            }],
        )
        // a's own client supersedes a, after the read: a context a client
        // really sent, so the read is judged along the chains at all.
        .write(1, "k", "y", &[(1, 1)], (3, 1), 60, Some(70), Outcome::Ok)
        .build();
    let report = check_staleness(&history);
    assert_one_stale_read_missing(&report, "a");
}

/// Writes of a version's own value never supersede it, but a write of
/// another value whose client sent a context covering it does: whichever
/// order they were acknowledged in, and however many writes of the
/// version's own value sent higher contexts.
#[test]
fn a_version_is_superseded_by_another_value_whatever_writes_of_its_own_value_sent() {
    // Two writes of a's value, then b (whose coordinator ignored its
    // context {n1:1}), all with the same counter for n1.
    let two_of_its_own = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .read(2, "k", 11, 12, vec![ver("a", (1, 1), &[])])
        .write(2, "k", "a", &[(1, 1)], (2, 1), 13, Some(14), Outcome::Ok)
        .write(2, "k", "a", &[(1, 1)], (2, 2), 15, Some(16), Outcome::Ok)
        .write_reporting(
            1,
            "k",
            "b",
            vv(&[(1, 1)]),
            ver("b", (3, 1), &[]),
            20,
            30,
            Outcome::Ok,
        )
        .read(
            4,
            "k",
            40,
            50,
            vec![ver("a", (1, 1), &[]), ver("b", (3, 1), &[])],
        )
        .build();
    let report = check_staleness(&two_of_its_own);
    assert_eq!(report.superseded_returned, 1, "{report}");
    assert_eq!(report.superseded_examples[0].superseded_by.id, 4);
    // b first, then a write of a's value with a higher context.
    let own_later = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(4, "k", "c", &[], (1, 2), 0, Some(10), Outcome::Ok)
        .read(
            2,
            "k",
            11,
            12,
            vec![ver("a", (1, 1), &[]), ver("c", (1, 2), &[])],
        )
        .write_reporting(
            1,
            "k",
            "b",
            vv(&[(1, 1)]),
            ver("b", (3, 1), &[]),
            13,
            14,
            Outcome::Ok,
        )
        .write(2, "k", "a", &[(1, 2)], (2, 1), 15, Some(16), Outcome::Ok)
        .read(
            5,
            "k",
            40,
            50,
            vec![ver("a", (1, 1), &[]), ver("b", (3, 1), &[])],
        )
        .build();
    let report = check_staleness(&own_later);
    assert_eq!(report.superseded_returned, 1, "{report}");
    assert_eq!(report.superseded_examples[0].superseded_by.id, 3);
}

/// A read covers what any of its siblings' clocks covers, whichever
/// sibling it lists first. (No client sent a context here, so only the
/// clocks the read reports can cover a write.)
#[test]
fn a_read_covers_what_any_of_its_siblings_clocks_covers() {
    for order in [[0, 1], [1, 0]] {
        let siblings = [ver("c", (2, 1), &[(1, 2)]), ver("d", (3, 1), &[(1, 1)])];
        let history = Builder::default()
            .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write(1, "k", "b", &[], (1, 2), 12, Some(14), Outcome::Ok)
            .write_reporting(
                2,
                "k",
                "c",
                Clock::new(),
                siblings[0].clone(),
                16,
                18,
                Outcome::Ok,
            )
            .write_reporting(
                3,
                "k",
                "d",
                Clock::new(),
                siblings[1].clone(),
                16,
                18,
                Outcome::Ok,
            )
            .read(
                4,
                "k",
                20,
                30,
                order.iter().map(|&i| siblings[i].clone()).collect(),
            )
            .build();
        let report = check_staleness(&history);
        assert!(report.is_ok(), "{order:?}: {report}");
    }
}

/// A coordinator that restarted and counted from 1 again acknowledges b
/// under n1:1, the dot of the timed-out a that b's client had read: b's
/// own context covers b's own dot. That vouches for nothing: when b
/// disappears, it is lost. Another client's write sending {n1:1} does
/// vouch for it (dots are all the checker can go by), even when b was
/// invoked first.
#[test]
fn a_write_acknowledged_under_a_dot_its_client_had_seen_is_vouched_for_only_by_others() {
    let acknowledged_under_a_seen_dot = || {
        let mut b = Builder::default();
        b.write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Timeout)
            .read(2, "k", 20, 30, vec![ver("a", (1, 1), &[])])
            .read(3, "k", 20, 30, vec![ver("a", (1, 1), &[])])
            .write(2, "k", "b", &[(1, 1)], (1, 1), 40, Some(50), Outcome::Ok);
        b
    };
    let lost = acknowledged_under_a_seen_dot()
        .final_read("k", 1_000, vec![ver("a", (1, 1), &[])])
        .build();
    let report = check_durability(&lost);
    assert_eq!(report.lost_updates, 1, "{report}");
    assert_eq!(report.lost[0].write.value.as_deref(), Some("b"));
    let superseded = acknowledged_under_a_seen_dot()
        .write(3, "k", "c", &[(1, 1)], (2, 1), 60, Some(70), Outcome::Ok)
        .final_read("k", 1_000, vec![ver("c", (2, 1), &[(1, 1)])])
        .build();
    let report = check_durability(&superseded);
    assert!(report.is_ok(), "{report}");
}

/// A staler answer (a lagging replica, at a weak level) does not make a
/// client forget what an earlier answer told it: its write sending the
/// newer context still supersedes what that context covers.
#[test]
fn a_client_keeps_what_it_was_answered_after_a_staler_answer() {
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(1, "k", "b", &[(1, 1)], (1, 2), 12, Some(20), Outcome::Ok)
        .read(2, "k", 30, 40, vec![ver("b", (1, 2), &[(1, 1)])])
        .read(2, "k", 50, 60, vec![ver("a", (1, 1), &[])])
        .write(2, "k", "c", &[(1, 2)], (2, 1), 70, Some(80), Outcome::Ok)
        .final_read("k", 1_000, vec![ver("c", (2, 1), &[(1, 2)])])
        .build();
    let report = check_durability(&history);
    assert!(report.is_ok(), "{report}");
}

/// Durability is judged on the last final read of a key that succeeded:
/// a loss the retried final read shows is a loss, and a retry that failed
/// (and returned nothing) loses nothing.
#[test]
fn durability_is_judged_on_the_last_final_read_that_succeeded() {
    let both = || {
        let mut b = Builder::default();
        b.write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write(2, "k", "b", &[], (2, 1), 20, Some(30), Outcome::Ok)
            .final_read(
                "k",
                1_000,
                vec![ver("a", (1, 1), &[]), ver("b", (2, 1), &[])],
            );
        b
    };
    let lost_later = both()
        .final_read("k", 2_000, vec![ver("a", (1, 1), &[])])
        .build();
    let report = check_durability(&lost_later);
    assert_eq!(report.lost_updates, 1, "{report}");
    assert_eq!(report.lost[0].write.value.as_deref(), Some("b"));
    let mut b = both();
    let retry = b.invoke(0, "k", OpKind::Read, None, None, 2_000, true);
    b.complete(retry, 0, 2_005, Outcome::Timeout, Vec::new(), None);
    let report = check_durability(&b.build());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.acknowledged_writes, 2);
}

/// An overwrite supersedes every sibling its coordinator held, so its
/// answer may list no other version: not an earlier copy of its own
/// value under another dot (a retry minted twice), nor another value
/// under its own dot.
#[test]
fn an_overwrite_acknowledged_beside_a_version_sharing_its_value_or_dot_is_reported() {
    for other in [ver("b", (1, 1), &[]), ver("a", (2, 1), &[])] {
        let history = Builder::default()
            .overwrite(
                2,
                "k",
                "b",
                ((2, 1), &[]),
                vec![other.clone(), ver("b", (2, 1), &[])],
                20,
                30,
            )
            .build();
        let report = check_durability(&history);
        assert_eq!(report.misreported_writes, 1, "{other:?}: {report}");
    }
}

/// Only an overwrite must be acknowledged alone: a blind write joins the
/// siblings its coordinator holds, and its answer may list them.
#[test]
fn a_write_that_is_not_an_overwrite_may_be_acknowledged_beside_siblings() {
    let mut b = Builder::default();
    b.write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok);
    let blind = b.invoke(
        2,
        "k",
        OpKind::Write,
        Some("b".into()),
        Some(Clock::new()),
        20,
        false,
    );
    b.complete(
        blind,
        2,
        30,
        Outcome::Ok,
        vec![ver("a", (1, 1), &[]), ver("b", (2, 1), &[])],
        Some(ver("b", (2, 1), &[])),
    );
    let report = check_durability(&b.build());
    assert_eq!(report.misreported_writes, 0, "{report}");
}

/// Without dots, the stores are judged in register order: a held value
/// stands for the writes acknowledged before its own write was invoked,
/// not for later ones.
#[test]
fn stores_without_dots_are_judged_in_register_order() {
    use quorumlog_check::{check_stores, StoreContents};
    let mut b = Builder::default();
    b.op(1, OpKind::Write, Some("a".into()), 0, Some(10), Outcome::Ok)
        .op(
            2,
            OpKind::Write,
            Some("b".into()),
            20,
            Some(30),
            Outcome::Ok,
        );
    let history = b.build();
    let holding = |value: &str| {
        let mut store = StoreContents::new(1);
        store.insert(
            "x",
            vec![ObservedVersion {
                value: value.into(),
                dot: None,
                context: None,
            }],
        );
        [store]
    };
    let report = check_stores(&history, &holding("a"));
    assert_eq!(report.missing_writes, 1, "{report}");
    assert_eq!(report.missing[0].write.value.as_deref(), Some("b"));
    let report = check_stores(&history, &holding("b"));
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.held, report.superseded), (1, 1));
}

/// A write that timed out may still take effect after its client was
/// told so: a read after the timeout may miss it and a later one see it.
#[test]
fn a_timed_out_write_may_take_effect_after_its_timeout() {
    let mut b = Builder::default();
    b.op(1, OpKind::Write, Some("1".into()), 0, Some(10), Outcome::Ok)
        .op(
            2,
            OpKind::Write,
            Some("2".into()),
            20,
            Some(30),
            Outcome::Timeout,
        )
        .read1(3, Some("1"), 40, 50)
        .read1(3, Some("2"), 60, 70);
    let history = b.build();
    let report = check_linearizability(&history, &Register, Budget::default());
    assert_eq!(report.verdict, LinVerdict::Linearizable, "{report}");
}

/// A write whose context names only known dots (n1:1 is c's) replaces
/// only those versions: a version of unknown dot (a write acknowledged
/// without one) stays, and a read without it is not linearizable.
#[test]
fn a_context_naming_only_known_dots_keeps_the_versions_of_unknown_dot() {
    let history = |returned: Vec<ObservedVersion>| {
        let mut b = Builder::default();
        b.op(1, OpKind::Write, Some("a".into()), 0, Some(10), Outcome::Ok)
            .write(2, "x", "c", &[], (1, 1), 0, Some(10), Outcome::Ok)
            .write(2, "x", "b", &[(1, 1)], (2, 1), 20, Some(30), Outcome::Ok)
            .read(3, "x", 40, 50, returned);
        b.build()
    };
    let verdict =
        |h: &History| check_linearizability(h, &MultiValueRegister, Budget::default()).verdict;
    let a = ObservedVersion {
        value: "a".into(),
        dot: None,
        context: None,
    };
    let b = ver("b", (2, 1), &[(1, 1)]);
    assert_eq!(
        verdict(&history(vec![a, b.clone()])),
        LinVerdict::Linearizable
    );
    assert_eq!(verdict(&history(vec![b])), LinVerdict::NotLinearizable);
}

/// A timed-out write whose value only a compare-and-set observed (as its
/// expected value) may have applied: the cas that found it is explained.
#[test]
fn a_timed_out_write_a_cas_expected_may_have_applied() {
    let mut b = Builder::default();
    b.op(
        1,
        OpKind::Write,
        Some("1".into()),
        0,
        Some(10),
        Outcome::Timeout,
    )
    .op(
        2,
        OpKind::Cas,
        Some(cas_value("1", "2")),
        20,
        Some(30),
        Outcome::Ok,
    )
    .read1(3, Some("2"), 40, 50);
    let report = check_linearizability(&b.build(), &CasRegister, Budget::default());
    assert_eq!(report.verdict, LinVerdict::Linearizable, "{report}");
}

/// A read that reports a value nobody wrote, under the dot of a write of
/// another value, is explained by no state of the multi-value register.
#[test]
fn a_value_never_written_under_a_written_dot_is_not_linearizable() {
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .read(2, "k", 20, 30, vec![ver("zzz", (1, 1), &[])])
        .build();
    let report = check_linearizability(&history, &MultiValueRegister, Budget::default());
    assert_eq!(report.verdict, LinVerdict::NotLinearizable, "{report}");
}

/// A history whose only fault is that it has no linearization (a new-old
/// inversion, allowed by a regular register) fails the summary, and the
/// command's verdict is "violated".
#[test]
fn a_history_that_is_only_not_linearizable_fails_the_summary() {
    use quorumlog_check::file::Verdict;
    let history = Builder::default()
        .write(1, "k", "a", &[], (1, 1), 0, Some(10), Outcome::Ok)
        .write(1, "k", "b", &[(1, 1)], (2, 1), 20, None, Outcome::Timeout)
        .read(3, "k", 30, 40, vec![ver("b", (2, 1), &[(1, 1)])])
        .read(4, "k", 50, 60, vec![ver("a", (1, 1), &[])])
        .build();
    let summary = check_history(&history);
    assert!(
        summary.staleness.is_ok() && summary.durability.is_ok(),
        "{summary}"
    );
    assert_eq!(summary.linearizable, LinVerdict::NotLinearizable);
    assert!(!summary.is_ok(), "{summary}");
    assert_eq!(Verdict::of(&summary), Verdict::Violated);
}

/// Outside the cas-register model a cas whose compare failed is taken as
/// no effect, like one that failed outright: the register and key/value
/// models drop it rather than give up on a key for an operation they do
/// not model.
#[test]
fn a_cas_that_observed_a_mismatch_is_dropped_by_the_models_without_cas() {
    let mut b = Builder::default();
    b.op(1, OpKind::Write, Some("0".into()), 0, Some(10), Outcome::Ok)
        .op(
            2,
            OpKind::Cas,
            Some(cas_value("0", "1")),
            20,
            Some(30),
            Outcome::Mismatch,
        )
        .read1(3, Some("0"), 40, 50);
    let history = b.build();
    let register = check_linearizability(&history, &Register, Budget::default());
    assert_eq!(register.verdict, LinVerdict::Linearizable, "{register}");
    assert_eq!(register.operations, 2, "{register}");
    let kv = check_linearizability(&history, &KeyValue, Budget::default());
    assert_eq!(kv.verdict, LinVerdict::Linearizable, "{kv}");
}
