//! Checker speed on generated histories.
//!
//! - linearizability (multi-value register): 100,000 operations over 1,000
//!   keys by 8 concurrent clients, target < 1 s;
//! - staleness + durability: 1,000,000 operations (1,000 keys, 8 clients),
//!   target < 2 s.
//!
//! `cargo bench -p quorumlog-sim --bench checkers`
use criterion::{criterion_group, criterion_main, Criterion};
use quorumlog_sim::check::generate::{generate, GenConfig};
use quorumlog_sim::check::{
    check_durability, check_history, check_linearizability, check_staleness,
    check_staleness_and_durability, Budget, LinVerdict, MultiValueRegister,
};
use std::hint::black_box;
use std::time::Duration;

fn linearizability(c: &mut Criterion) {
    let history = generate(&GenConfig::new(1, 100_000, 1_000, 8));
    let report = check_linearizability(&history, &MultiValueRegister, Budget::default());
    assert_eq!(report.verdict, LinVerdict::Linearizable, "{report}");
    let mut group = c.benchmark_group("linearizability");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("mv-register 100k ops, 1k keys, 8 clients", |b| {
        b.iter(|| {
            check_linearizability(black_box(&history), &MultiValueRegister, Budget::default())
        })
    });
    group.bench_function("check_history 100k ops (all three checkers)", |b| {
        b.iter(|| check_history(black_box(&history)))
    });
    group.finish();
}

fn staleness_and_durability(c: &mut Criterion) {
    let history = generate(&GenConfig::new(2, 1_000_000, 1_000, 8));
    assert!(check_staleness(&history).is_ok());
    assert!(check_durability(&history).is_ok());
    let mut group = c.benchmark_group("staleness+durability");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("1M ops, 1k keys, 8 clients", |b| {
        b.iter(|| {
            let (s, d) = check_staleness_and_durability(black_box(&history));
            (s.stale_reads, d.lost_updates)
        })
    });
    group.bench_function("1M ops, separate calls", |b| {
        b.iter(|| {
            let s = check_staleness(black_box(&history));
            let d = check_durability(black_box(&history));
            (s.stale_reads, d.lost_updates)
        })
    });
    group.finish();
}

criterion_group!(benches, linearizability, staleness_and_durability);
criterion_main!(benches);
