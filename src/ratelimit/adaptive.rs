//! The adaptive part of the rate: multiplicative decrease on a provider 429, additive increase
//! while the 429s stay away (AIMD, as TCP does with congestion), bounded by a floor and by the
//! configured rate.

use std::time::Duration;

use tokio::time::Instant;

/// Several 429s in quick succession are one signal: they were all sent at the old rate.
const COOLDOWN: Duration = Duration::from_secs(1);
/// Each quiet second gives back this share of the configured rate.
const RECOVERY_SHARE: f64 = 0.1;

pub struct Adaptive {
    ceiling: f64,
    floor: f64,
    current: f64,
    /// When `current` was last lowered or brought up to date.
    since: Instant,
    last_decrease: Option<Instant>,
}

impl Adaptive {
    pub fn new(ceiling: f64, floor: f64, now: Instant) -> Adaptive {
        Adaptive {
            ceiling,
            floor: floor.min(ceiling),
            current: ceiling,
            since: now,
            last_decrease: None,
        }
    }

    /// The rate at `now`, after the recovery earned since the last change.
    pub fn rate(&mut self, now: Instant) -> f64 {
        let quiet = now.saturating_duration_since(self.since).as_secs_f64();
        if quiet >= 1.0 && self.current < self.ceiling {
            let steps = quiet.floor();
            self.current = (self.current + steps * RECOVERY_SHARE * self.ceiling).min(self.ceiling);
            self.since += Duration::from_secs_f64(steps);
        } else if self.current >= self.ceiling {
            self.since = now;
        }
        self.current
    }

    /// Halves the rate, unless it was just halved.
    pub fn decrease(&mut self, now: Instant) {
        if self
            .last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < COOLDOWN)
        {
            return;
        }
        self.current = (self.rate(now) / 2.0).max(self.floor);
        self.since = now;
        self.last_decrease = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn halves_on_429_then_recovers_a_tenth_per_quiet_second() {
        let start = Instant::now();
        let mut a = Adaptive::new(10.0, 1.0, start);
        a.decrease(start);
        assert_eq!(a.rate(start), 5.0);
        a.decrease(start + Duration::from_millis(200));
        assert_eq!(a.rate(start), 5.0, "a burst of 429s is one signal");
        // One quiet second earned 1.0 back (to 6.0) before this 429 halved it.
        a.decrease(start + Duration::from_millis(1500));
        assert_eq!(a.rate(start + Duration::from_millis(1500)), 3.0);
        let later = start + Duration::from_millis(1500);
        assert_eq!(a.rate(later + Duration::from_secs(1)), 4.0);
        assert_eq!(a.rate(later + Duration::from_secs(3)), 6.0);
        assert_eq!(
            a.rate(later + Duration::from_secs(60)),
            10.0,
            "never above the configured rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn never_below_the_floor() {
        let start = Instant::now();
        let mut a = Adaptive::new(10.0, 3.0, start);
        for s in 0..10 {
            a.decrease(start + Duration::from_secs(s * 2));
        }
        assert_eq!(a.current, 3.0);
    }
}
