//! The adaptive part of the rate: lowered only on real evidence that the provider's ceiling is
//! below it, and given back within seconds once that evidence stops.
//!
//! A provider's 429 `rate_limit` is not always about our rate. Stripe answers a few of them
//! at random under load, and an account shared with another client sees some whatever payguard
//! does. The old rule (halve on every 429, recover a tenth per quiet second) turned 6% of
//! uncorrelated 429s into a rate stuck at a third of the configured one. So the rule now asks
//! for evidence, and acts on it at most once per window, as TCP reacts once per round trip:
//!
//! - **Windows.** Sends and rate-limit 429s are counted over a window of at least 20 sends and
//!   1 s (at most 10 s, so a quiet limiter still closes them).
//! - **Evidence.** A window shows it when at least 3 of its sends, and at least 20% of them,
//!   came back 429 `rate_limit`. Only the profile's rate-limit answer counts (the caller checks
//!   it): Stripe's `lock_timeout` 429 is contention on one object and says nothing about the
//!   rate. Two windows in a row must show it: random 429s at 6% show it in one window of 20
//!   sends about 3% of the time, in two running about 0.1%, while a real ceiling shows it in
//!   every window until the rate is below it.
//! - **Decrease.** A confirmed ceiling cuts the rate to what the provider accepted in that
//!   window (`rate * (1 - share)`) less 5%, remembered as the ceiling seen. One cut takes at
//!   most a fifth off while the 429s were under 30% of the sends (random 429s at 6% never get
//!   further than that) and at most half otherwise, and never goes below the floor (by default
//!   half the configured rate, so no run of bad luck takes it further).
//! - **Increase.** Never while a window's evidence awaits confirmation. Below 95% of the
//!   ceiling seen, the rate climbs back by 5% of the configured rate per second. Above it, it
//!   probes the way TCP CUBIC does past its last loss: slowly at first and faster the longer
//!   no evidence comes (0.4% of the configured rate per second, per second spent probing), so
//!   it stays near a real ceiling for a while before pushing past it, and is back at the
//!   configured rate about 15 s after the 429s stop.
//!
//! The paused-time tests beside this file hold it to that: 6% random 429s never take the rate
//! more than 20% below the configured one; a ceiling at 60% of it is found within 20 s and
//! held within a fifth above it (15% above on average, with 14% of sends answered 429 and
//! retried: an overshoot below the evidence bar cannot be told from background 429s); and the
//! rate is back within 20 s of the ceiling going away.

use std::time::Duration;

use tokio::time::Instant;

/// A window closes after this many sends, once it has lasted `WINDOW_MIN`...
const WINDOW_SENDS: u32 = 20;
const WINDOW_MIN: Duration = Duration::from_secs(1);
/// ...or after this long, however few sends it saw.
const WINDOW_MAX: Duration = Duration::from_secs(10);
/// Evidence of a ceiling in one window: at least this many rate-limit 429s...
const EVIDENCE_COUNT: u32 = 3;
/// ...that are at least this share of its sends.
const EVIDENCE_SHARE: f64 = 0.2;
/// A confirmed ceiling cuts the rate to what the provider accepted, less this margin (and
/// recovery is fast up to that point again)...
const MARGIN: f64 = 0.95;
/// ...by a fifth at most while the 429s were under `DEEP_SHARE` of the sends (random 429s
/// at 6% pass the evidence bar twice running only by reaching about 20%)...
const STEP: f64 = 0.8;
const DEEP_SHARE: f64 = 0.3;
/// ...and by half at most in any case.
const DEEPEST_STEP: f64 = 0.5;
/// Recovery below the ceiling seen: this share of the configured rate per second.
const RECOVERY: f64 = 0.05;
/// Probing above it: this share of the configured rate per second, per second of probing.
const PROBE: f64 = 0.004;

/// Sends and rate-limit 429s seen since `start`.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    sends: u32,
    throttled: u32,
}

impl Window {
    fn new(start: Instant) -> Window {
        Window {
            start,
            sends: 0,
            throttled: 0,
        }
    }
}

/// The adaptive rate of one limiter. Plain state over tokio's clock: the limiter calls it under
/// its lock.
#[derive(Debug)]
pub struct Adaptive {
    configured: f64,
    floor: f64,
    current: f64,
    /// When `current` was last brought up to date.
    at: Instant,
    window: Window,
    /// The last window closed showed evidence; one more and the rate comes down.
    suspect: bool,
    /// The rate the provider accepted when a ceiling was last confirmed.
    ceiling: Option<f64>,
    /// Since when the rate has been probing above the ceiling seen.
    probing_since: Option<Instant>,
}

impl Adaptive {
    pub fn new(configured: f64, floor: f64, now: Instant) -> Adaptive {
        Adaptive {
            configured,
            floor: floor.min(configured),
            current: configured,
            at: now,
            window: Window::new(now),
            suspect: false,
            ceiling: None,
            probing_since: None,
        }
    }

    /// The rate at `now`.
    pub fn rate(&mut self, now: Instant) -> f64 {
        self.advance(now);
        self.current
    }

    /// One send was granted at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.advance(now);
        self.window.sends = self.window.sends.saturating_add(1);
    }

    /// The provider answered a send with its rate-limit 429.
    pub fn throttled(&mut self, now: Instant) {
        self.advance(now);
        self.window.throttled = self.window.throttled.saturating_add(1);
    }

    fn advance(&mut self, now: Instant) {
        let now = now.max(self.at);
        self.grow(now);
        self.close_window(now);
    }

    /// The increase earned between `self.at` and `now`: linear up to the knee (95% of the
    /// ceiling seen, or the configured rate), then a probe that speeds up with time.
    fn grow(&mut self, now: Instant) {
        let mut from = self.at;
        self.at = now;
        if self.current >= self.configured {
            self.probing_since = None;
            return;
        }
        // A window showed evidence: hold still until the next one confirms or clears it, so
        // the probe cannot run far past a ceiling while it is being confirmed.
        if self.suspect {
            if let Some(since) = &mut self.probing_since {
                *since += now - from;
            }
            return;
        }
        let knee = self
            .ceiling
            .map_or(self.configured, |c| (c * MARGIN).min(self.configured));
        if self.current < knee {
            let speed = RECOVERY * self.configured;
            let needed = (knee - self.current) / speed;
            let elapsed = (now - from).as_secs_f64();
            if elapsed < needed {
                self.current += speed * elapsed;
                return;
            }
            self.current = knee;
            from += Duration::from_secs_f64(needed);
        }
        let since = *self.probing_since.get_or_insert(from);
        let a = from.saturating_duration_since(since).as_secs_f64();
        let b = now.saturating_duration_since(since).as_secs_f64();
        let gained = PROBE * self.configured * (b * b - a * a) / 2.0;
        self.current = (self.current + gained).min(self.configured);
    }

    fn close_window(&mut self, now: Instant) {
        let Window {
            start,
            sends,
            throttled,
        } = self.window;
        let lasted = now - start;
        if lasted < WINDOW_MIN || (sends < WINDOW_SENDS && lasted < WINDOW_MAX) {
            return;
        }
        self.window = Window::new(now);
        // A 429 may land in the window after its send's: the share is of what was seen.
        let share = f64::from(throttled) / f64::from(sends.max(throttled).max(1));
        let evidence = throttled >= EVIDENCE_COUNT && share >= EVIDENCE_SHARE;
        if evidence && self.suspect {
            self.decrease(share);
            self.suspect = false;
        } else {
            self.suspect = evidence;
        }
    }

    fn decrease(&mut self, share: f64) {
        let accepted = 1.0 - share;
        self.ceiling = Some(self.current * accepted);
        let deepest = if share < DEEP_SHARE {
            STEP
        } else {
            DEEPEST_STEP
        };
        let step = (accepted * MARGIN).clamp(deepest, STEP);
        self.current = (self.current * step).max(self.floor);
        self.probing_since = None;
    }
}

#[cfg(test)]
impl Adaptive {
    /// Cuts the rate to `share` of itself, with a ceiling seen at the new rate, for the
    /// limiter's own tests.
    pub(super) fn lower_for_test(&mut self, share: f64) {
        self.current *= share;
        self.ceiling = Some(self.current / MARGIN);
    }
}

#[cfg(test)]
#[path = "adaptive_tests.rs"]
mod tests;
