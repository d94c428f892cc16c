//! The wall clock, where the core needs one: ages of hints that must
//! survive a restart, and the informational timestamp of each version.
//! Never used for causality (dots and version vectors decide that).
//! Under the simulator this is madsim's simulated clock (it intercepts the
//! system clock), so runs stay deterministic.
use std::time::SystemTime;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
