//! A per-replica circuit breaker: after `failure_threshold` consecutive
//! failures the replica is believed down and nothing is sent to it (so
//! requests fail fast with `Unavailable` instead of waiting on a dead
//! peer); after `open_for` it is half-open and the next requests probe it.
use crate::protocol::BreakerState;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            open_for: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            consecutive_failures: 0,
            open_until: None,
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may be sent now (closed, or half-open probing).
    pub fn allows(&self, now: Instant) -> bool {
        self.state(now) != BreakerState::Open
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn record_success(&mut self) {
        self.consecutive_failures = 0;
        self.open_until = None;
    }

    /// The replica is certainly down (it refused the connection): open at
    /// once, whatever the threshold.
    pub fn trip(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.open_until = Some(now + self.config.open_for);
    }

    pub fn record_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let half_open = self.open_until.is_some();
        if half_open || self.consecutive_failures >= self.config.failure_threshold {
            self.open_until = Some(now + self.config.open_for);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_back() {
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(1),
        });
        let now = Instant::now();
        b.record_failure(now);
        assert_eq!(b.state(now), BreakerState::Closed);
        b.record_failure(now);
        assert_eq!(b.state(now), BreakerState::Open);
        assert!(!b.allows(now));
        let later = now + Duration::from_secs(1);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.allows(later));
        // a failed probe re-opens at once
        b.record_failure(later);
        assert_eq!(b.state(later), BreakerState::Open);
        let much_later = later + Duration::from_secs(1);
        b.record_success();
        assert_eq!(b.state(much_later), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn a_refused_connection_opens_at_once() {
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(1),
        });
        let now = Instant::now();
        b.trip(now);
        assert_eq!(b.state(now), BreakerState::Open);
        assert_eq!(
            b.state(now + Duration::from_secs(1)),
            BreakerState::HalfOpen
        );
    }
}
