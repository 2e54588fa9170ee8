//! The closed breaker's sliding window: calls and failures in one-second buckets, so its cost
//! is fixed whatever the traffic.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

pub struct Window {
    span: Duration,
    origin: Instant,
    /// (second since `origin`, calls, failures), oldest first.
    buckets: VecDeque<(u64, u32, u32)>,
}

impl Window {
    pub fn new(span: Duration) -> Window {
        Window {
            span,
            origin: Instant::now(),
            buckets: VecDeque::new(),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    fn evict(&mut self, now: Instant) {
        let oldest = self
            .second(now)
            .saturating_sub(self.span.as_secs().max(1) - 1);
        while self.buckets.front().is_some_and(|b| b.0 < oldest) {
            self.buckets.pop_front();
        }
    }

    pub fn record(&mut self, now: Instant, failed: bool) {
        self.evict(now);
        let second = self.second(now);
        match self.buckets.back_mut() {
            Some(bucket) if bucket.0 == second => {
                bucket.1 += 1;
                bucket.2 += u32::from(failed);
            }
            _ => self.buckets.push_back((second, 1, u32::from(failed))),
        }
    }

    /// (calls, failures) within the window ending at `now`.
    pub fn totals(&mut self, now: Instant) -> (u32, u32) {
        self.evict(now);
        self.buckets
            .iter()
            .fold((0, 0), |(c, f), b| (c + b.1, f + b.2))
    }
}
