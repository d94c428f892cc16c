#[cfg(madsim)]
fn main() {
    use quorumlog_sim::scenario::*;
    let faults: FaultSchedule = std::env::args()
        .nth(1)
        .unwrap_or("none".into())
        .parse()
        .unwrap();
    let levels: Levels = std::env::args()
        .nth(2)
        .unwrap_or("QUORUM".into())
        .parse()
        .unwrap();
    let seed: u64 = std::env::args()
        .nth(3)
        .unwrap_or("1".into())
        .parse()
        .unwrap();
    let t = std::time::Instant::now();
    let r = quorumlog_sim::harness::run_seed(&Scenario::standard(faults, levels), seed);
    println!("{:?} in {:?}", r.stats, t.elapsed());
    print!("{}", r.fault_log());
    if std::env::var("HIST").is_ok() {
        print!("{}", r.history.to_jsonl());
    }
}
#[cfg(not(madsim))]
fn main() {}
