//! The simulated clock: Unix seconds that start at real "now" and run `time_scale` times faster
//! (scale 0: frozen, moved only by `advance`).

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Simulated wall-clock time shared by every part of the simulator.
///
/// `now()` = real Unix time at start + real elapsed × `time_scale` + every jump made with
/// [`SimClock::advance`]. Values are fractional seconds; objects show them floored.
#[derive(Debug)]
pub(crate) struct SimClock {
    started: Instant,
    start_unix: f64,
    scale: f64,
    jumped: Mutex<f64>,
}

impl SimClock {
    pub(crate) fn new(scale: f64) -> SimClock {
        let start_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        SimClock {
            started: Instant::now(),
            start_unix,
            scale,
            jumped: Mutex::new(0.0),
        }
    }

    /// Simulated Unix time in seconds.
    pub(crate) fn now(&self) -> f64 {
        let jumped = *self.jumped.lock().unwrap_or_else(|e| e.into_inner());
        self.start_unix + self.started.elapsed().as_secs_f64() * self.scale + jumped
    }

    /// Jumps simulated time forward by `seconds` (negative values are ignored; one jump is at
    /// most about 3,000 years).
    pub(crate) fn advance(&self, seconds: f64) {
        if seconds.is_finite() && seconds > 0.0 {
            *self.jumped.lock().unwrap_or_else(|e| e.into_inner()) += seconds.min(1e11);
        }
    }

    /// How long to wait for real so that `sim_seconds` pass on this clock. A frozen clock never
    /// gets there by waiting, so it waits not at all.
    pub(crate) fn real_duration(&self, sim_seconds: f64) -> std::time::Duration {
        if self.scale == 0.0 {
            return std::time::Duration::ZERO;
        }
        let real = (sim_seconds / self.scale).max(0.0);
        std::time::Duration::from_secs_f64(if real.is_finite() { real } else { 0.0 })
    }
}

/// Floors a simulated time to the integer Unix seconds that objects show.
pub(crate) fn secs(t: f64) -> i64 {
    t.floor() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_moves_only_when_advanced() {
        let clock = SimClock::new(0.0);
        let t0 = clock.now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(clock.now(), t0, "wall time moved a frozen clock");
        clock.advance(2.5);
        assert_eq!(clock.now(), t0 + 2.5);
        assert_eq!(clock.real_duration(10.0), std::time::Duration::ZERO);
    }
}
