//! The nemesis: a seeded schedule of faults injected while the workload
//! runs, each one logged with its simulated time so a failing seed shows
//! exactly what happened to the cluster.
use super::cluster::{default_latency, SimCluster};
use crate::check::{GroundTruth, Outage};
pub use crate::fault::{Fault, FaultEvent};
use crate::scenario::{FaultMix, ScriptedFault};
use quorumlog_core::CoordinatorConfig;
use quorumlog_core::Dot;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest a script's nemesis waits for a heal before it looks
/// whether the workload is done (a scripted hold may outlast the run).
///
/// Longer than any hold the standard scenario or a swarm draws, so that a
/// seed's fault log played back as a script wakes the nemesis exactly when
/// the drawn one woke: every extra wake-up is a task poll that moves
/// madsim's random scheduler, and with a look every 100 ms a third of the
/// failing seeds no longer failed when their own fault log was replayed,
/// so they could not be shrunk. (A fault mix with longer holds is replayed
/// with a look every 10 s, which may change the run.)
const SCRIPT_POLL: Duration = Duration::from_secs(10);

/// Sleep until `at` (at once if it has passed: madsim sleeps at least a
/// millisecond, and a fault due with the one before it must not wait).
async fn until(at: Instant) {
    if Instant::now() < at {
        tokio::time::sleep_until(at).await;
    }
}

/// Sleep until `at`, or until the workload is done, whichever comes
/// first; true if it is done (then at once, without a timer, if it already
/// was).
async fn until_or_done(at: Instant, done: &CancellationToken) -> bool {
    if done.is_cancelled() {
        return true;
    }
    // Already there (a fault starting with the one before it): no timer,
    // since madsim sleeps at least a millisecond.
    if Instant::now() >= at {
        return false;
    }
    tokio::select! {
        // Fixed order, so no random choice reaches the simulation.
        biased;
        () = done.cancelled() => true,
        () = tokio::time::sleep_until(at) => false,
    }
}

pub struct Nemesis {
    cluster: Arc<SimCluster>,
    mix: FaultMix,
    /// An explicit script to play instead of drawing.
    script: Option<Vec<ScriptedFault>>,
    rng: ChaCha8Rng,
    /// Network faults in effect, in the order they started: healing one
    /// restores the network and applies the rest again.
    network: Vec<Fault>,
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

impl Nemesis {
    /// A nemesis drawing from `mix`, or playing `script` when there is one.
    pub fn new(
        cluster: Arc<SimCluster>,
        mix: FaultMix,
        script: Option<Vec<ScriptedFault>>,
        rng: ChaCha8Rng,
        started: Instant,
    ) -> Self {
        Self {
            cluster,
            mix,
            script,
            rng,
            network: Vec::new(),
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

    /// The instant `us` microseconds after the run started.
    fn at(&self, us: u64) -> Instant {
        self.started + Duration::from_micros(us)
    }

    /// The families to draw from, each repeated by its weight (a disk is
    /// not lost while another is being refilled).
    fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        for (kind, weight) in self.mix.weights() {
            if kind == "disk-loss" && self.refilling.is_some() {
                continue;
            }
            kinds.extend(std::iter::repeat_n(kind, usize::from(weight)));
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

    /// Start or heal `fault`, logged at `time_us` (the time it was due:
    /// the nemesis acts a moment after its timer fires, and a script
    /// replays the log by its due times).
    fn apply(&mut self, fault: &Fault, start: bool, time_us: u64) {
        if fault.is_network() {
            if start {
                self.network.push(fault.clone());
                self.impose(fault);
            } else if let Some(at) = self.network.iter().position(|f| f == fault) {
                // Restore the network, then impose what is still in effect.
                self.network.remove(at);
                self.cluster.heal_network();
                self.cluster.set_latency(default_latency());
                for still in self.network.clone() {
                    self.impose(&still);
                }
            }
        } else {
            self.impose_node(fault, start);
        }
        self.log.push(FaultEvent {
            time_us,
            start,
            fault: fault.clone(),
        });
    }

    /// Cut the links of a network fault, or slow every message.
    fn impose(&self, fault: &Fault) {
        let c = Arc::clone(&self.cluster);
        match fault {
            Fault::Partition(sides) => {
                let sides: Vec<Vec<usize>> = sides
                    .iter()
                    .map(|s| s.iter().map(|&id| self.index(id)).collect())
                    .collect();
                c.partition(&sides);
            }
            Fault::OneWay { from, to } => {
                let from = self.index(*from);
                for &t in to {
                    c.clog_link(from, self.index(t));
                }
            }
            Fault::Clog(a, b) => {
                let (a, b) = (self.index(*a), self.index(*b));
                c.clog_link(a, b);
                c.clog_link(b, a);
            }
            Fault::Delay { min_ms, max_ms } => {
                c.set_latency(Duration::from_millis(*min_ms)..Duration::from_millis(*max_ms));
            }
            Fault::Crash(_) | Fault::DiskLoss(_) | Fault::Pause(_) => {}
        }
    }

    /// Crash, restart, pause or resume a node.
    fn impose_node(&mut self, fault: &Fault, start: bool) {
        let c = Arc::clone(&self.cluster);
        match fault {
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
            Fault::Partition(_) | Fault::OneWay { .. } | Fault::Clog(..) | Fault::Delay { .. } => {}
        }
    }

    /// Inject faults one after another (sometimes two at once) until
    /// `done` is cancelled, healing each before the next. A hold under way
    /// when the workload ends is held to its end and healed; a calm ends
    /// at once.
    pub async fn run(&mut self, done: CancellationToken) {
        if let Some(script) = self.script.take() {
            return self.play(script, done).await;
        }
        if self.kinds().is_empty() {
            return;
        }
        // Every start and heal is due on a whole microsecond since the
        // run started, the unit of the log: a script replaying the log
        // then sets the very timers the drawn nemesis set.
        let mut due_us = self.now_us().saturating_add(1);
        loop {
            let [calm_lo, calm_hi] = self.mix.calm_ms;
            due_us = due_us.saturating_add(self.rng.gen_range(calm_lo..calm_hi) * 1000);
            if until_or_done(self.at(due_us), &done).await {
                return;
            }
            let mut active = Vec::new();
            // Drawn as an i32: rand samples each integer type its own way,
            // and the schedules' seeds were recorded with this one.
            let stack: i32 = if self.mix.stack > 1 {
                self.rng.gen_range(1..=i32::from(self.mix.stack))
            } else {
                1
            };
            for _ in 0..stack {
                if let Some(fault) = self.pick() {
                    self.apply(&fault, true, due_us);
                    active.push(fault);
                }
            }
            let [hold_lo, hold_hi] = self.mix.hold_ms;
            due_us = due_us.saturating_add(self.rng.gen_range(hold_lo..hold_hi) * 1000);
            until(self.at(due_us)).await;
            for fault in active.iter().rev() {
                self.apply(fault, false, due_us);
            }
        }
    }

    /// Play an explicit script: every fault starts and heals at its own
    /// time, as the drawn nemesis plays its faults (see [`Nemesis::run`]):
    /// no fault starts once the workload is done, one started is healed
    /// at its time, and at one instant heals go first, in the reverse of
    /// their starts. A seed's own fault log played this way wakes the
    /// nemesis exactly when the drawn one woke, so it is the same run.
    async fn play(&mut self, script: Vec<ScriptedFault>, done: CancellationToken) {
        // (time, whether it heals, order at that instant, script index).
        let mut events: Vec<(u64, bool, usize, usize)> = Vec::new();
        for (i, scripted) in script.iter().enumerate() {
            events.push((scripted.at_us, false, i, i));
            let heal_at = scripted.at_us.saturating_add(scripted.hold_us);
            events.push((heal_at, true, usize::MAX - i, i));
        }
        events.sort_by_key(|&(at, heals, order, _)| (at, !heals, order));
        let mut started = vec![false; script.len()];
        for (at_us, heals, _, i) in events {
            let at = self.at(at_us);
            if !heals {
                if until_or_done(at, &done).await {
                    return;
                }
                started[i] = true;
                self.apply(&script[i].fault, true, at_us);
                continue;
            }
            if !started[i] {
                continue;
            }
            // A hold runs to its end, as the drawn nemesis's do; but the
            // run does not wait long past its workload for a scripted
            // heal (what is left is healed with everything else).
            while Instant::now() < at {
                if done.is_cancelled() && at > Instant::now() + SCRIPT_POLL {
                    return;
                }
                until(at.min(Instant::now() + SCRIPT_POLL)).await;
            }
            self.apply(&script[i].fault, false, at_us);
        }
        // The drawn nemesis, its last fault healed, waits for the next
        // calm to end or the workload to finish: wake when it would.
        done.cancelled().await;
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
        self.network.clear();
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
