//! The tolerance model for timing checks.
//!
//! Like packetdrill, a timing check allows both an absolute slack (the `tolerance` setting) and a
//! relative one (a share of the duration being checked), and the whole slack is multiplied by the
//! environment variable `SOCKHARNESS_TIME_SCALE` on slow or busy machines:
//!
//! ```text
//! slack(D)        = (tolerance + RELATIVE × D) × scale
//! within D        passes when elapsed ≤ D + slack(D)
//! pending for D   checks after D − min(slack(D), D/2)
//! ```
//!
//! `pending for D` never waits less than half of D, so a pending check always shows something
//! real.

use std::time::Duration;

/// Absolute slack when the scenario sets no `tolerance`.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_millis(50);

/// Relative slack: this share of the checked duration.
pub const RELATIVE: f64 = 0.10;

/// Deadline of blocking statements when the scenario sets no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment variable that scales every slack.
pub const SCALE_VAR: &str = "SOCKHARNESS_TIME_SCALE";

/// Timing slack for one scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Absolute slack.
    pub absolute: Duration,
    /// Multiplier of the whole slack.
    pub scale: f64,
}

impl Tolerance {
    /// The tolerance for a scenario's `tolerance` setting, scaled from the environment.
    pub fn from_env(setting: Option<Duration>) -> Tolerance {
        Tolerance {
            absolute: setting.unwrap_or(DEFAULT_TOLERANCE),
            scale: scale_from_env(),
        }
    }

    /// The slack allowed around duration `d`.
    ///
    /// ```
    /// use sockharness::run::Tolerance;
    /// use std::time::Duration;
    /// let t = Tolerance { absolute: Duration::from_millis(50), scale: 2.0 };
    /// assert_eq!(t.slack(Duration::from_millis(100)), Duration::from_millis(120));
    /// ```
    pub fn slack(&self, d: Duration) -> Duration {
        let secs = (self.absolute.as_secs_f64() + d.as_secs_f64() * RELATIVE) * self.scale;
        // Saturates instead of panicking on absurd settings.
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    /// Whether `elapsed` meets `within d`.
    pub fn within(&self, elapsed: Duration, d: Duration) -> bool {
        elapsed <= d.saturating_add(self.slack(d))
    }

    /// How long `expect H pending for d` waits before it checks.
    pub fn pending_wait(&self, d: Duration) -> Duration {
        d - self.slack(d).min(d / 2)
    }
}

/// The largest scale honoured: beyond it slack would exceed any sensible deadline.
pub const MAX_SCALE: f64 = 1000.0;

/// `SOCKHARNESS_TIME_SCALE`, or 1 when it is unset or not a positive number; at most
/// [`MAX_SCALE`].
pub fn scale_from_env() -> f64 {
    std::env::var(SCALE_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .map_or(1.0, |v| v.min(MAX_SCALE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn within_allows_absolute_and_relative_slack() {
        let t = Tolerance {
            absolute: ms(50),
            scale: 1.0,
        };
        assert!(t.within(ms(1150), ms(1000)));
        assert!(!t.within(ms(1151), ms(1000)));
    }

    #[test]
    fn pending_waits_at_least_half() {
        let t = Tolerance {
            absolute: ms(50),
            scale: 10.0,
        };
        assert_eq!(t.pending_wait(ms(100)), ms(50));
        let t = Tolerance {
            absolute: ms(10),
            scale: 1.0,
        };
        assert_eq!(t.pending_wait(ms(1000)), ms(890));
    }
}
