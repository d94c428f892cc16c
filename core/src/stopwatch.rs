//! Timing for latency histograms.
//!
//! Under the simulator nothing records metrics, and every clock read is a
//! call into madsim (its `clock_gettime` looks the runtime up each time, a
//! few thousand times a seed for these histograms alone): there a
//! stopwatch reads no clock and measures zero.

/// Started when an operation starts, read when it ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopwatch {
    #[cfg(not(madsim))]
    started: std::time::Instant,
}

impl Stopwatch {
    pub(crate) fn start() -> Self {
        Stopwatch {
            #[cfg(not(madsim))]
            started: std::time::Instant::now(),
        }
    }

    /// Seconds since [`Stopwatch::start`].
    #[cfg(not(madsim))]
    pub(crate) fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Zero: the simulator records no metrics.
    #[cfg(madsim)]
    pub(crate) fn seconds(&self) -> f64 {
        0.0
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::Stopwatch;
    use std::time::Duration;

    #[test]
    fn measures_the_time_since_it_started() {
        let watch = Stopwatch::start();
        std::thread::sleep(Duration::from_millis(20));
        let seconds = watch.seconds();
        assert!(seconds >= 0.020, "{seconds}");
    }
}
