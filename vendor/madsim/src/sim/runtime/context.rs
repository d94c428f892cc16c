//! Thread local runtime context
use crate::{
    runtime::Handle,
    task::{NodeId, TaskInfo},
};

use std::{cell::RefCell, sync::Arc};

thread_local! {
    static CONTEXT: RefCell<Option<Handle>> = const { RefCell::new(None) };
    static TASK: RefCell<Option<Arc<TaskInfo>>> = const { RefCell::new(None) };
}

pub(crate) fn current<T>(map: impl FnOnce(&Handle) -> T) -> T {
    CONTEXT.with(move |ctx| map(ctx.borrow().as_ref().expect(MSG)))
}

pub(crate) fn try_current<T>(map: impl FnOnce(&Handle) -> T) -> Option<T> {
    // note: TLS may be deallocated
    CONTEXT
        .try_with(move |ctx| ctx.borrow().as_ref().map(map))
        .ok()
        .flatten()
}

pub(crate) fn current_task() -> Arc<TaskInfo> {
    TASK.with(|task| task.borrow().clone().expect(MSG))
}

pub(crate) fn try_current_task() -> Option<Arc<TaskInfo>> {
    TASK.try_with(|task| task.borrow().clone()).ok().flatten()
}

pub(crate) fn current_node() -> NodeId {
    TASK.with(|task| task.borrow().as_ref().expect(MSG).node.id)
}

/// Set this [`Handle`] as the current active [`Handle`].
///
/// [`Handle`]: Handle
pub(crate) fn enter(new: Handle) -> EnterGuard {
    CONTEXT.with(|ctx| {
        let old = ctx.borrow_mut().replace(new);
        EnterGuard(old)
    })
}

pub(crate) struct EnterGuard(Option<Handle>);

impl Drop for EnterGuard {
    fn drop(&mut self) {
        CONTEXT.with(|ctx| {
            *ctx.borrow_mut() = self.0.take();
        });
    }
}

pub(crate) fn enter_task(new: Arc<TaskInfo>) -> TaskEnterGuard {
    TASK.with(|ctx| {
        // quorumlog: a task's span is entered only when some subscriber
        // records it; with none (every sweep), entering and leaving a
        // disabled span on every poll of every task did nothing.
        let _span = (!new.span.is_disabled()).then(|| new.span.clone().entered());
        let old = ctx.borrow_mut().replace(new);
        TaskEnterGuard {
            old,
            _span,
            left: false,
        }
    })
}

pub(crate) struct TaskEnterGuard {
    old: Option<Arc<TaskInfo>>,
    _span: Option<tracing::span::EnteredSpan>,
    // quorumlog: set once `leave` has restored the old task.
    left: bool,
}

impl TaskEnterGuard {
    /// quorumlog: restore the old task and hand back the one entered, so
    /// that the executor need not keep a clone of it (two atomic
    /// operations on every poll of every task).
    pub(crate) fn leave(mut self) -> Arc<TaskInfo> {
        self.left = true;
        let entered = TASK.with(|ctx| std::mem::replace(&mut *ctx.borrow_mut(), self.old.take()));
        entered.expect(MSG)
    }
}

impl Drop for TaskEnterGuard {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        TASK.with(|ctx| {
            *ctx.borrow_mut() = self.old.take();
        });
    }
}

const MSG: &str =
    "there is no reactor running, must be called from the context of a Madsim runtime";
