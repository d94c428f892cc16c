//! Sequential models for the linearizability checker.
//!
//! A [`Model`] first translates one key's operations into its own compact
//! operations ([`Model::prepare`], values interned as `u32`), then steps
//! states: [`Model::step`] pushes every state the operation may lead to (none:
//! impossible here; one: deterministic; several: nondeterministic, e.g. a
//! compare-and-set whose outcome is unknown).
//!
//! Rules every model follows: an operation that certainly failed
//! (`unavailable`/`fail`) is dropped; a read that did not succeed is dropped
//! (it constrains nothing); a mutation that timed out or never completed is
//! kept, and the search may place it anywhere after its invocation or at the
//! very end (which is the same as never).
use super::common::{FxHashMap, FxHashSet};
use quorumlog_history::{parse_cas_value, Actor, Dot, OpKind, OperationRef};
use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

/// Interned value names for one key.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    ids: FxHashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("?", String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A sequential specification, checked one key at a time.
pub trait Model {
    /// The model's own form of an operation, with its observed output.
    type Op: Clone + fmt::Debug;
    type State: Clone + Eq + Ord + Hash + fmt::Debug;

    fn name(&self) -> &'static str;

    /// Translate one key's operations (history order). Entry `i` is `None`
    /// when `ops[i]` neither constrains nor changes state (dropped). An error
    /// (e.g. an operation kind the model has no notion of) makes the key's
    /// verdict unknown.
    fn prepare(
        &self,
        ops: &[OperationRef<'_>],
        names: &mut Interner,
    ) -> Result<Vec<Option<Self::Op>>, String>;

    fn init(&self) -> Self::State;

    /// Push every state `op` may lead to from `state` into `next`.
    fn step(&self, state: &Self::State, op: &Self::Op, next: &mut Vec<Self::State>);

    fn describe_state(&self, state: &Self::State, names: &Interner) -> String;
}

/// Values some operation observed: returned by a successful read, or
/// expected by a compare-and-set.
#[derive(Default)]
struct Observed<'a> {
    read: FxHashSet<&'a str>,
    expected: FxHashSet<String>,
}

impl Observed<'_> {
    fn contains(&self, value: &str) -> bool {
        self.read.contains(value) || self.expected.contains(value)
    }
}

fn observed_values<'a>(ops: &[OperationRef<'a>]) -> Observed<'a> {
    let mut seen = Observed::default();
    for op in ops {
        match op.kind {
            OpKind::Read if op.is_ok() => {
                seen.read.extend(op.values.iter().map(|v| v.value.as_str()))
            }
            OpKind::Cas if !op.is_failed() => {
                if let Some((expected, _)) = op.value.and_then(parse_cas_value) {
                    seen.expected.insert(expected);
                }
            }
            _ => {}
        }
    }
    seen
}

/// A write that may or may not have applied and whose value nobody ever
/// observed. Dropping it (choosing "never") loses no linearization: had it
/// applied, every read until the next overwrite would have returned it, so
/// no read sits between it and that overwrite. Choosing "never" is always
/// allowed for an indeterminate operation, so this never hides a violation.
fn invisible(op: &OperationRef<'_>, new_value: Option<&str>, observed: &Observed<'_>) -> bool {
    op.is_indeterminate() && new_value.is_some_and(|v| !observed.contains(v))
}

fn unsupported(model: &str, op: &OperationRef<'_>) -> String {
    format!(
        "the {model} model has no {} operation (op {} on key {:?})",
        op.kind, op.id, op.key
    )
}

/// What a successful single-valued read returned: `Ok(None)` nothing,
/// `Ok(Some(v))` one value, `Err(())` several (siblings: impossible for a
/// single-valued model).
fn single_value<'a>(op: &OperationRef<'a>) -> Result<Option<&'a str>, ()> {
    match op.values {
        [] => Ok(None),
        [one] => Ok(Some(one.value.as_str())),
        _ => Err(()),
    }
}

/// Register and CAS-register operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    Write(u32),
    /// Read returning nothing (`None`) or one value.
    Read(Option<u32>),
    /// A read no register state explains (siblings, or a value never written).
    Impossible,
    /// Compare-and-set; `certain`: acknowledged (else it may have failed).
    Cas {
        expected: u32,
        new: u32,
        certain: bool,
    },
    /// A compare-and-set that observed its expected value absent.
    CasMismatch {
        expected: u32,
    },
}

fn prepare_register(
    model: &str,
    ops: &[OperationRef<'_>],
    names: &mut Interner,
    allow_cas: bool,
) -> Result<Vec<Option<RegisterOp>>, String> {
    let observed = observed_values(ops);
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        if allow_cas && op.kind == OpKind::Cas && op.is_mismatch() {
            let (expected, _) = op
                .value
                .and_then(parse_cas_value)
                .ok_or_else(|| format!("cas {} has no [expected, new] value", op.id))?;
            out.push(Some(RegisterOp::CasMismatch {
                expected: names.intern(&expected),
            }));
            continue;
        }
        if op.is_failed() {
            out.push(None);
            continue;
        }
        out.push(match op.kind {
            OpKind::Read if !op.is_ok() => None,
            OpKind::Write if invisible(op, op.value, &observed) => None,
            OpKind::Read => Some(match single_value(op) {
                Ok(value) => RegisterOp::Read(value.map(|v| names.intern(v))),
                Err(()) => RegisterOp::Impossible,
            }),
            OpKind::Write => Some(RegisterOp::Write(
                names.intern(op.value.unwrap_or_default()),
            )),
            OpKind::Cas if allow_cas => {
                let (expected, new) = op
                    .value
                    .and_then(parse_cas_value)
                    .ok_or_else(|| format!("cas {} has no [expected, new] value", op.id))?;
                if invisible(op, Some(&new), &observed) {
                    out.push(None);
                    continue;
                }
                Some(RegisterOp::Cas {
                    expected: names.intern(&expected),
                    new: names.intern(&new),
                    certain: op.is_ok(),
                })
            }
            _ => return Err(unsupported(model, op)),
        });
    }
    Ok(out)
}

fn step_register(state: &Option<u32>, op: &RegisterOp, next: &mut Vec<Option<u32>>) {
    match op {
        RegisterOp::Write(v) => next.push(Some(*v)),
        RegisterOp::Read(v) => {
            if v == state {
                next.push(*state)
            }
        }
        RegisterOp::Impossible => {}
        RegisterOp::Cas {
            expected,
            new,
            certain,
        } => {
            if *state == Some(*expected) {
                next.push(Some(*new));
            }
            if !certain {
                next.push(*state);
            }
        }
        RegisterOp::CasMismatch { expected } => {
            if *state != Some(*expected) {
                next.push(*state);
            }
        }
    }
}

fn describe_register(state: &Option<u32>, names: &Interner) -> String {
    match state {
        None => "empty".to_string(),
        Some(v) => format!("{:?}", names.name(*v)),
    }
}

/// A read/write register (initially empty). A read returning siblings is
/// not explainable.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

impl Model for Register {
    type Op = RegisterOp;
    type State = Option<u32>;

    fn name(&self) -> &'static str {
        "register"
    }
    fn prepare(
        &self,
        ops: &[OperationRef<'_>],
        names: &mut Interner,
    ) -> Result<Vec<Option<RegisterOp>>, String> {
        prepare_register(self.name(), ops, names, false)
    }
    fn init(&self) -> Option<u32> {
        None
    }
    fn step(&self, state: &Option<u32>, op: &RegisterOp, next: &mut Vec<Option<u32>>) {
        step_register(state, op, next)
    }
    fn describe_state(&self, state: &Option<u32>, names: &Interner) -> String {
        describe_register(state, names)
    }
}

/// A register with compare-and-set. An acknowledged `cas` requires the
/// expected value; one that timed out may have applied or not
/// (nondeterministic); one that completed with `mismatch` requires any
/// other value (it observed the compare fail, as Porcupine's model has
/// it); a failed one is dropped like any failed operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct CasRegister;

impl Model for CasRegister {
    type Op = RegisterOp;
    type State = Option<u32>;

    fn name(&self) -> &'static str {
        "cas-register"
    }
    fn prepare(
        &self,
        ops: &[OperationRef<'_>],
        names: &mut Interner,
    ) -> Result<Vec<Option<RegisterOp>>, String> {
        prepare_register(self.name(), ops, names, true)
    }
    fn init(&self) -> Option<u32> {
        None
    }
    fn step(&self, state: &Option<u32>, op: &RegisterOp, next: &mut Vec<Option<u32>>) {
        step_register(state, op, next)
    }
    fn describe_state(&self, state: &Option<u32>, names: &Interner) -> String {
        describe_register(state, names)
    }
}

/// Key/value operations on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    Put(Arc<str>),
    Append(Arc<str>),
    /// Get returning nothing or one value.
    Get(Option<Arc<str>>),
    Impossible,
}

/// A key/value map with get (read), put (write) and append, checked per key
/// (linearizability is compositional, so this is the whole map). A missing
/// key reads as nothing; appending to it starts from the empty string.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyValue;

impl Model for KeyValue {
    type Op = KvOp;
    type State = Option<Arc<str>>;

    fn name(&self) -> &'static str {
        "kv"
    }
    fn prepare(
        &self,
        ops: &[OperationRef<'_>],
        _names: &mut Interner,
    ) -> Result<Vec<Option<KvOp>>, String> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            if op.is_failed() {
                out.push(None);
                continue;
            }
            let value = || Arc::<str>::from(op.value.unwrap_or_default());
            out.push(match op.kind {
                OpKind::Read if !op.is_ok() => None,
                OpKind::Read => Some(match single_value(op) {
                    Ok(v) => KvOp::Get(v.map(Arc::from)),
                    Err(()) => KvOp::Impossible,
                }),
                OpKind::Write => Some(KvOp::Put(value())),
                OpKind::Append => Some(KvOp::Append(value())),
                OpKind::Cas => return Err(unsupported(self.name(), op)),
            });
        }
        Ok(out)
    }
    fn init(&self) -> Self::State {
        None
    }
    fn step(&self, state: &Self::State, op: &KvOp, next: &mut Vec<Self::State>) {
        match op {
            KvOp::Put(v) => next.push(Some(v.clone())),
            KvOp::Append(v) => {
                let mut s = state.as_deref().unwrap_or_default().to_string();
                s.push_str(v);
                next.push(Some(Arc::from(s)));
            }
            KvOp::Get(v) => {
                let matches = match (v, state) {
                    (None, None) => true,
                    (None, Some(s)) | (Some(s), None) => s.is_empty(),
                    (Some(a), Some(b)) => a == b,
                };
                if matches {
                    next.push(state.clone());
                }
            }
            KvOp::Impossible => {}
        }
    }
    fn describe_state(&self, state: &Self::State, _names: &Interner) -> String {
        match state {
            None => "empty".to_string(),
            Some(v) => format!("{v:?}"),
        }
    }
}

/// Per-key facts the multi-value register's writes share: each version's
/// dot, when the history reveals it (by id).
#[derive(Debug)]
pub struct MvTable {
    dots: Vec<Option<Dot>>,
}

/// Multi-value register operations.
#[derive(Debug, Clone)]
pub enum MvOp {
    /// Add version `id`, removing every version whose dot `context` covers.
    /// `unexplained`: the context covers dots of versions the history never
    /// revealed, so versions of unknown dot may or may not be removed.
    Write {
        id: u32,
        context: Arc<[(Actor, u64)]>,
        unexplained: bool,
        table: Arc<MvTable>,
    },
    /// Read returning exactly these versions (sorted ids).
    Read(Vec<u32>),
    /// A read returning a version that no write (that did not fail) wrote.
    Impossible,
}

/// quorumlog's sibling semantics, sequentially: the state is the set of
/// live versions; a write with context `C` replaces the versions `C`
/// covers and joins the rest as a sibling (a blind write, empty `C`,
/// replaces nothing); a read returns the whole set.
///
/// Versions are identified by value (written values must be unique per
/// key, as in every generated history) and cross-checked by dot where the
/// history records one.
///
/// A write that timed out (or never completed) and that no read ever
/// returned is dropped, i.e. taken as never applied. That is always an
/// allowed choice, so it cannot hide a violation, and it keeps the search
/// from trying every subset of the invisible writes at every point. It
/// loses a linearization only if such a write applied *and* was superseded
/// by a context covering its dot before anyone read it, which exact causal
/// contexts rule out (a context covers a dot only after a read revealed it,
/// up to the counter-prefix approximation of version vectors). A write's dot comes from its acknowledgement, or,
/// for a write that timed out, from any read that returned it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MultiValueRegister;

fn context_covers(context: &[(Actor, u64)], dot: Dot) -> bool {
    let actor = dot.actor();
    context.iter().any(|&(a, c)| a == actor && c >= dot.counter)
}

impl Model for MultiValueRegister {
    type Op = MvOp;
    type State = Vec<u32>;

    fn name(&self) -> &'static str {
        "mv-register"
    }

    fn prepare(
        &self,
        ops: &[OperationRef<'_>],
        names: &mut Interner,
    ) -> Result<Vec<Option<MvOp>>, String> {
        // Versions: one per write that did not certainly fail.
        let mut dots: Vec<Option<Dot>> = Vec::new();
        let mut by_dot: FxHashMap<Dot, u32> = FxHashMap::default();
        for op in ops {
            match op.kind {
                OpKind::Write if !op.is_failed() => {
                    let id = names.intern(op.value.unwrap_or_default());
                    if dots.len() <= id as usize {
                        dots.resize(id as usize + 1, None);
                    }
                    if let Some(dot) = op.written_dot() {
                        dots[id as usize] = Some(dot);
                        by_dot.insert(dot, id);
                    }
                }
                OpKind::Read | OpKind::Write => {}
                _ => return Err(unsupported(self.name(), op)),
            }
        }
        // Dots of unacknowledged writes, as reads revealed them.
        for op in ops
            .iter()
            .filter(|op| op.kind == OpKind::Read && op.is_ok())
        {
            for v in op.values {
                if let (Some(dot), Some(id)) = (v.dot, names.get(&v.value)) {
                    if let Some(slot @ None) = dots.get_mut(id as usize) {
                        *slot = Some(dot);
                        by_dot.insert(dot, id);
                    }
                }
            }
        }
        // Known counters per actor, to tell whether a context is explained.
        let mut known: BTreeMap<Actor, Vec<u64>> = BTreeMap::new();
        for dot in dots.iter().flatten() {
            known.entry(dot.actor()).or_default().push(dot.counter);
        }
        for counters in known.values_mut() {
            counters.sort_unstable();
            counters.dedup();
        }
        let table = Arc::new(MvTable { dots });
        let observed = observed_values(ops);
        let writes = names.len();
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            if op.is_failed()
                || (op.kind == OpKind::Read && !op.is_ok())
                || (op.kind == OpKind::Write && invisible(op, op.value, &observed))
            {
                out.push(None);
                continue;
            }
            if op.kind == OpKind::Write {
                let id = names.get(op.value.unwrap_or_default()).unwrap_or_default();
                let context: Vec<(Actor, u64)> = op
                    .context
                    .map(|c| c.entries().collect())
                    .unwrap_or_default();
                let unexplained = context.iter().any(|&(actor, counter)| {
                    let have = known
                        .get(&actor)
                        .map_or(0, |cs| cs.partition_point(|&c| c <= counter));
                    (have as u64) < counter
                });
                out.push(Some(MvOp::Write {
                    id,
                    context: context.into(),
                    unexplained,
                    table: table.clone(),
                }));
                continue;
            }
            let mut ids = Vec::with_capacity(op.values.len());
            let mut possible = true;
            for v in op.values {
                let by_value = names.get(&v.value).filter(|&id| (id as usize) < writes);
                let id = match v.dot.and_then(|d| by_dot.get(&d)) {
                    Some(&id) if names.name(id) == v.value => Some(id),
                    _ => by_value,
                };
                match id {
                    Some(id) => ids.push(id),
                    None => possible = false,
                }
            }
            ids.sort_unstable();
            ids.dedup();
            out.push(Some(if possible {
                MvOp::Read(ids)
            } else {
                MvOp::Impossible
            }));
        }
        Ok(out)
    }

    fn init(&self) -> Vec<u32> {
        Vec::new()
    }

    fn step(&self, state: &Vec<u32>, op: &MvOp, next: &mut Vec<Vec<u32>>) {
        match op {
            MvOp::Read(ids) => {
                if ids == state {
                    next.push(state.clone());
                }
            }
            MvOp::Impossible => {}
            MvOp::Write {
                id,
                context,
                unexplained,
                table,
            } => {
                let mut kept: Vec<u32> = Vec::with_capacity(state.len() + 1);
                let mut unknown: Vec<u32> = Vec::new();
                for &s in state {
                    if s == *id {
                        continue;
                    }
                    match table.dots.get(s as usize).copied().flatten() {
                        Some(dot) if context_covers(context, dot) => {}
                        None if *unexplained => unknown.push(s),
                        _ => kept.push(s),
                    }
                }
                // Versions of unknown dot: each may or may not be covered
                // (all subsets when few, else all-or-nothing).
                let subsets: Vec<u64> = if unknown.len() <= 4 {
                    (0..1u64 << unknown.len()).collect()
                } else {
                    vec![0, (1u64 << unknown.len().min(63)) - 1]
                };
                for mask in subsets {
                    let mut s = kept.clone();
                    s.extend(
                        unknown
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| mask & (1 << i) != 0)
                            .map(|(_, &u)| u),
                    );
                    s.push(*id);
                    s.sort_unstable();
                    next.push(s);
                }
            }
        }
    }

    fn describe_state(&self, state: &Vec<u32>, names: &Interner) -> String {
        let names: Vec<String> = state
            .iter()
            .map(|&id| format!("{:?}", names.name(id)))
            .collect();
        format!("{{{}}}", names.join(", "))
    }
}
