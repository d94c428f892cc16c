//! The nemesis: a seeded schedule of faults injected while the workload
//! runs, each one logged with its simulated time so a failing seed shows
//! exactly what happened to the cluster.
use super::cluster::{default_latency, SimCluster};
use crate::check::{GroundTruth, Outage};
use crate::scenario::FaultSchedule;
use quorumlog_core::CoordinatorConfig;
use quorumlog_core::Dot;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// Sides of a split (node ids); links between sides are cut both ways.
    Partition(Vec<Vec<u32>>),
    /// Messages from `from` to each of `to` are dropped, not the reverse.
    OneWay {
        from: u32,
        to: Vec<u32>,
    },
    /// A single link clogged both ways.
    Clog(u32, u32),
    Crash(u32),
    /// A crash that loses the node's disk: it restarts with an empty store.
    DiskLoss(u32),
    Pause(u32),
    /// Every message takes `min_ms..max_ms`.
    Delay {
        min_ms: u64,
        max_ms: u64,
    },
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition(_) => "partition",
            Fault::OneWay { .. } => "one-way",
            Fault::Clog(..) => "clog",
            Fault::Crash(_) => "crash",
            Fault::DiskLoss(_) => "disk-loss",
            Fault::Pause(_) => "pause",
            Fault::Delay { .. } => "delay",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = |v: &[u32]| {
            v.iter()
                .map(|n| format!("n{n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Fault::Partition(sides) => {
                let sides: Vec<String> = sides.iter().map(|s| format!("[{}]", ids(s))).collect();
                write!(f, "partition {}", sides.join(" | "))
            }
            Fault::OneWay { from, to } => write!(f, "one-way n{from} -/-> [{}]", ids(to)),
            Fault::Clog(a, b) => write!(f, "clog n{a} <-/-> n{b}"),
            Fault::Crash(n) => write!(f, "crash n{n}"),
            Fault::DiskLoss(n) => write!(f, "crash n{n} and lose its disk"),
            Fault::Pause(n) => write!(f, "pause n{n}"),
            Fault::Delay { min_ms, max_ms } => write!(f, "delay {min_ms}..{max_ms} ms"),
        }
    }
}

/// A line of the fault log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultEvent {
    pub time_us: u64,
    pub start: bool,
    pub fault: Fault,
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.start { "start" } else { "heal " };
        write!(
            f,
            "{:>9.3}s {verb} {}",
            self.time_us as f64 / 1e6,
            self.fault
        )
    }
}

pub struct Nemesis<'a> {
    cluster: &'a SimCluster,
    schedule: FaultSchedule,
    rng: ChaCha8Rng,
    started: Instant,
    log: Vec<FaultEvent>,
    crashed: BTreeSet<usize>,
    paused: BTreeSet<usize>,
    /// The node that last lost its disk, while it is being refilled: no
    /// other disk is lost until it holds what its peers held when it came
    /// back (disks are lost one at a time, with repair time between, as
    /// an operator replaces them).
    refilling: Option<Refill>,
}

/// A replaced node catching up.
struct Refill {
    index: usize,
    /// Every (key, dot) the other replicas held when it restarted; `None`
    /// until it restarts.
    owed: Option<Vec<(String, Dot)>>,
}

impl<'a> Nemesis<'a> {
    pub fn new(
        cluster: &'a SimCluster,
        schedule: FaultSchedule,
        rng: ChaCha8Rng,
        started: Instant,
    ) -> Self {
        Self {
            cluster,
            schedule,
            rng,
            started,
            log: Vec::new(),
            crashed: BTreeSet::new(),
            paused: BTreeSet::new(),
            refilling: None,
        }
    }

    fn now_us(&self) -> u64 {
        Instant::now().duration_since(self.started).as_micros() as u64
    }

    fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.schedule.partitions() {
            kinds.extend(["partition", "partition", "one-way"]);
        }
        if self.schedule.crashes() {
            kinds.extend(["crash", "crash"]);
        }
        if self.schedule.disk_loss() && self.refilling.is_none() {
            kinds.push("disk-loss");
        }
        if self.schedule.pauses() {
            kinds.extend(["pause", "pause", "clog", "delay"]);
        }
        kinds
    }

    fn id(&self, index: usize) -> u32 {
        self.cluster.nodes()[index].id
    }

    /// Whether the node being refilled now holds (or has seen superseded)
    /// everything it owes; if so, another disk may be lost.
    fn check_refill(&mut self) {
        let Some(refill) = &self.refilling else {
            return;
        };
        let Some(owed) = &refill.owed else {
            return;
        };
        let held = self.cluster.nodes()[refill.index].stored();
        if owed
            .iter()
            .all(|(key, dot)| held.get(key).is_some_and(|set| set.covers(*dot)))
        {
            self.refilling = None;
        }
    }

    fn pick(&mut self) -> Option<Fault> {
        self.check_refill();
        let kinds = self.kinds();
        let kind = *kinds.choose(&mut self.rng)?;
        let n = self.cluster.n();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        let ids = |v: &[usize], me: &Self| v.iter().map(|&i| me.id(i)).collect::<Vec<u32>>();
        Some(match kind {
            "partition" if n >= 2 => {
                let cut = self.rng.gen_range(1..n);
                let (a, b) = order.split_at(cut);
                let (mut a, mut b) = (ids(a, self), ids(b, self));
                a.sort_unstable();
                b.sort_unstable();
                Fault::Partition(vec![a, b])
            }
            "one-way" if n >= 2 => {
                let count = self.rng.gen_range(1..n);
                let mut to = ids(&order[1..=count], self);
                to.sort_unstable();
                Fault::OneWay {
                    from: self.id(order[0]),
                    to,
                }
            }
            "clog" if n >= 2 => Fault::Clog(self.id(order[0]), self.id(order[1])),
            "crash" => Fault::Crash(self.id(order[0])),
            "disk-loss" => {
                self.refilling = Some(Refill {
                    index: order[0],
                    owed: None,
                });
                Fault::DiskLoss(self.id(order[0]))
            }
            "pause" => Fault::Pause(self.id(order[0])),
            "delay" => {
                let min_ms = self.rng.gen_range(5..30);
                Fault::Delay {
                    min_ms,
                    max_ms: min_ms + self.rng.gen_range(20..200),
                }
            }
            _ => return None,
        })
    }

    fn index(&self, id: u32) -> usize {
        self.cluster
            .nodes()
            .iter()
            .position(|n| n.id == id)
            .expect("fault names a cluster node")
    }

    fn apply(&mut self, fault: &Fault, start: bool) {
        let c = self.cluster;
        match fault {
            Fault::Partition(sides) => {
                if start {
                    let sides: Vec<Vec<usize>> = sides
                        .iter()
                        .map(|s| s.iter().map(|&id| self.index(id)).collect())
                        .collect();
                    c.partition(&sides);
                } else {
                    c.heal_network();
                }
            }
            Fault::OneWay { from, to } => {
                let from = self.index(*from);
                for &t in to {
                    let t = self.index(t);
                    if start {
                        c.clog_link(from, t)
                    } else {
                        c.unclog_link(from, t)
                    }
                }
            }
            Fault::Clog(a, b) => {
                let (a, b) = (self.index(*a), self.index(*b));
                if start {
                    c.clog_link(a, b);
                    c.clog_link(b, a);
                } else {
                    c.unclog_link(a, b);
                    c.unclog_link(b, a);
                }
            }
            Fault::Crash(id) => {
                let i = self.index(*id);
                if start {
                    self.crashed.insert(i);
                    c.kill(i);
                } else if self.crashed.remove(&i) {
                    c.restart(i);
                }
            }
            Fault::DiskLoss(id) => {
                let i = self.index(*id);
                if start {
                    self.crashed.insert(i);
                    c.kill(i);
                    c.wipe_disk(i);
                } else if self.crashed.remove(&i) {
                    c.restart(i);
                    self.owe_refill(i);
                }
            }
            Fault::Pause(id) => {
                let i = self.index(*id);
                if start {
                    self.paused.insert(i);
                    c.pause(i);
                } else if self.paused.remove(&i) {
                    c.resume(i);
                }
            }
            Fault::Delay { min_ms, max_ms } => {
                if start {
                    c.set_latency(Duration::from_millis(*min_ms)..Duration::from_millis(*max_ms));
                } else {
                    c.set_latency(default_latency());
                }
            }
        }
        let time_us = self.now_us();
        self.log.push(FaultEvent {
            time_us,
            start,
            fault: fault.clone(),
        });
    }

    /// Inject faults one after another (sometimes two at once) until
    /// `done` is set, healing each before the next.
    pub async fn run(&mut self, done: Arc<AtomicBool>) {
        if self.kinds().is_empty() {
            return;
        }
        while !done.load(Ordering::SeqCst) {
            let calm = Duration::from_millis(self.rng.gen_range(100..600));
            tokio::time::sleep(calm).await;
            if done.load(Ordering::SeqCst) {
                break;
            }
            let mut active = Vec::new();
            let stack = if self.schedule == FaultSchedule::All {
                self.rng.gen_range(1..=2)
            } else {
                1
            };
            for _ in 0..stack {
                if let Some(fault) = self.pick() {
                    self.apply(&fault, true);
                    active.push(fault);
                }
            }
            let hold = Duration::from_millis(self.rng.gen_range(200..1500));
            tokio::time::sleep(hold).await;
            for fault in active.iter().rev() {
                self.apply(fault, false);
            }
        }
    }

    /// Node `index` restarted on an empty disk: it owes what the others
    /// hold now.
    fn owe_refill(&mut self, index: usize) {
        let Some(refill) = self.refilling.as_mut().filter(|r| r.index == index) else {
            return;
        };
        let mut owed = Vec::new();
        for (i, node) in self.cluster.nodes().iter().enumerate() {
            if i == index {
                continue;
            }
            for (key, set) in node.stored() {
                owed.extend(set.versions().iter().map(|v| (key.clone(), v.dot)));
            }
        }
        owed.sort();
        owed.dedup();
        refill.owed = Some(owed);
    }

    /// Undo everything still in effect: the start of the quiescent phase.
    pub fn heal_all(&mut self) {
        self.cluster.heal_network();
        self.cluster.set_latency(default_latency());
        for i in std::mem::take(&mut self.crashed) {
            self.cluster.restart(i);
        }
        for i in std::mem::take(&mut self.paused) {
            self.cluster.resume(i);
        }
    }

    pub fn into_log(self) -> Vec<FaultEvent> {
        self.log
    }
}

/// The longest madsim holds a message on a stream whose link was cut:
/// it retries with a backoff that doubles up to this, so a message may
/// arrive this long after the link heals.
const STREAM_RETRY_CAP: Duration = Duration::from_secs(10);

/// Time a restarted node may take to open its store and listen.
const NODE_START: Duration = Duration::from_millis(500);

/// What the fault log did to nodes `1..=n`, for the availability judge:
/// each fault from its start to its heal, with how long after a heal a
/// coordinator configured as `config` may still not use what came back
/// (its breaker stays open, a call is still timing out, a stream still
/// holds messages back).
pub fn ground_truth(log: &[FaultEvent], n: usize, config: &CoordinatorConfig) -> GroundTruth {
    let mut outages = Vec::new();
    for (i, event) in log.iter().enumerate().filter(|(_, e)| e.start) {
        let to_us = log[i + 1..]
            .iter()
            .find(|e| !e.start && e.fault == event.fault)
            .map_or(u64::MAX, |e| e.time_us);
        let from_us = event.time_us;
        let mut link = |from: u32, to: u32| {
            outages.push(Outage::Link {
                from,
                to,
                from_us,
                to_us,
            })
        };
        match &event.fault {
            Fault::Partition(sides) => {
                for (s, a) in sides.iter().enumerate() {
                    for b in sides.iter().skip(s + 1) {
                        for &x in a {
                            for &y in b {
                                link(x, y);
                                link(y, x);
                            }
                        }
                    }
                }
            }
            Fault::OneWay { from, to } => {
                for &t in to {
                    link(*from, t);
                }
            }
            Fault::Clog(a, b) => {
                link(*a, *b);
                link(*b, *a);
            }
            Fault::Crash(node) | Fault::DiskLoss(node) | Fault::Pause(node) => {
                outages.push(Outage::Node {
                    node: *node,
                    from_us,
                    to_us,
                })
            }
            Fault::Delay { .. } => outages.push(Outage::Network { from_us, to_us }),
        }
    }
    let node_grace = config.breaker.open_for + config.replica_timeout + NODE_START;
    GroundTruth {
        n,
        outages,
        node_grace_us: node_grace.as_micros() as u64,
        link_grace_us: (node_grace + STREAM_RETRY_CAP).as_micros() as u64,
    }
}
