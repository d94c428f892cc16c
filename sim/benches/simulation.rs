//! Simulated seeds per second for the standard scenario: 5 nodes, 4
//! clients, 500 operations, partitions, crashes and pauses (the `all`
//! schedule) at QUORUM. Run with `cargo simbench`.
#[cfg(madsim)]
mod bench {
    use criterion::{criterion_group, Criterion, Throughput};
    use quorumlog_core::Consistency;
    use quorumlog_sim::harness::run_seed;
    use quorumlog_sim::scenario::{FaultSchedule, Levels, Scenario};
    use quorumlog_sim::sweep::run_and_check;
    use std::cell::Cell;

    fn seeds_per_second(c: &mut Criterion) {
        let scenario = Scenario::standard(FaultSchedule::All, Levels::same(Consistency::Quorum));
        let mut group = c.benchmark_group("standard-scenario");
        group.throughput(Throughput::Elements(1));
        group.sample_size(30);
        let seed = Cell::new(0u64);
        group.bench_function("simulate one seed", |b| {
            b.iter(|| {
                seed.set(seed.get() + 1);
                run_seed(&scenario, seed.get())
            })
        });
        group.bench_function("simulate and check one seed", |b| {
            b.iter(|| {
                seed.set(seed.get() + 1);
                run_and_check(&scenario, seed.get())
            })
        });
        group.finish();
    }

    criterion_group!(benches, seeds_per_second);
}

#[cfg(madsim)]
criterion::criterion_main!(bench::benches);

#[cfg(not(madsim))]
fn main() {
    eprintln!("the simulation benchmark needs --cfg madsim: run `cargo simbench`");
}
