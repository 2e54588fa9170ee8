//! The adaptive rule under paused time, against a sender that always has work queued (the
//! limiter is the bottleneck) and a provider scripted per send: random 429s, a token-bucket
//! ceiling, or both.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// What the provider does with each send.
struct Provider {
    /// Share of sends answered 429 `rate_limit` at random, whatever the rate.
    random: f64,
    /// A token bucket (rate, burst) in front of it, until `lifted` seconds in.
    ceiling: Option<(f64, f64)>,
    lifted: Option<f64>,
    tokens: f64,
    last: f64,
    rng: StdRng,
}

impl Provider {
    fn new(random: f64, ceiling: Option<f64>, seed: u64) -> Provider {
        Provider {
            random,
            ceiling: ceiling.map(|c| (c, c)),
            lifted: None,
            tokens: ceiling.unwrap_or(0.0),
            last: 0.0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Whether a send at `t` seconds gets a 429.
    fn throttles(&mut self, t: f64) -> bool {
        let mut limited = false;
        if let Some((rate, burst)) = self.ceiling.filter(|_| self.lifted.is_none_or(|l| t < l)) {
            self.tokens = (self.tokens + (t - self.last) * rate).min(burst);
            self.last = t;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
            } else {
                limited = true;
            }
        }
        self.rng.random::<f64>() < self.random || limited
    }
}

/// The rate once a second, and the sends and 429s, over `seconds` of saturated sending.
struct Run {
    rates: Vec<f64>,
    sends: Vec<f64>,
    throttled: usize,
}

fn run(configured: f64, provider: &mut Provider, seconds: f64) -> Run {
    let start = Instant::now();
    let mut a = Adaptive::new(configured, configured / 2.0, start);
    let at = |t: f64| start + Duration::from_secs_f64(t);
    let (mut t, mut sample) = (0.0, 0.0);
    let mut run = Run {
        rates: Vec::new(),
        sends: Vec::new(),
        throttled: 0,
    };
    while t < seconds {
        let rate = a.rate(at(t));
        while sample <= t {
            run.rates.push(rate);
            sample += 1.0;
        }
        t += 1.0 / rate;
        a.sent(at(t));
        run.sends.push(t);
        if provider.throttles(t) {
            a.throttled(at(t));
            run.throttled += 1;
        }
    }
    run
}

fn sends_between(run: &Run, from: f64, to: f64) -> f64 {
    run.sends.iter().filter(|&&t| t >= from && t < to).count() as f64 / (to - from)
}

#[tokio::test(start_paused = true)]
async fn random_429s_at_six_percent_leave_the_rate_within_a_fifth() {
    for seed in 1..=5 {
        let mut provider = Provider::new(0.06, None, seed);
        let run = run(10.0, &mut provider, 1200.0);
        let lowest = run.rates.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            lowest >= 8.0,
            "seed {seed}: the rate fell to {lowest:.2} of 10"
        );
        assert!(run.throttled > 500, "the provider did throttle");
    }
}

#[tokio::test(start_paused = true)]
async fn a_real_ceiling_below_the_rate_is_found_and_held() {
    for seed in 1..=3 {
        // Another client shares the account: payguard gets 6 of its configured 10 per second.
        let mut provider = Provider::new(0.0, Some(6.0), seed);
        let run = run(10.0, &mut provider, 600.0);
        // Found within half a minute...
        let found = sends_between(&run, 20.0, 30.0);
        assert!(
            found <= 7.5,
            "seed {seed}: still sending {found:.2}/s at 20-30 s"
        );
        // ...and held: near the ceiling on average, never back at the configured rate.
        let held = sends_between(&run, 30.0, 600.0);
        assert!(
            (5.7..=7.2).contains(&held),
            "seed {seed}: {held:.2}/s against a ceiling of 6"
        );
        let highest = run.rates[30..].iter().copied().fold(0.0, f64::max);
        assert!(
            highest < 9.0,
            "seed {seed}: the rate went back to {highest:.2}"
        );
    }
    // With random 429s on top, the same holds.
    let mut provider = Provider::new(0.06, Some(6.0), 7);
    let run = run(10.0, &mut provider, 600.0);
    let held = sends_between(&run, 30.0, 600.0);
    assert!(
        (5.7..=7.2).contains(&held),
        "{held:.2}/s with random 429s too"
    );
}

#[tokio::test(start_paused = true)]
async fn the_rate_is_back_within_seconds_once_the_429s_stop() {
    let mut provider = Provider::new(0.0, Some(5.0), 1);
    provider.lifted = Some(120.0);
    let run = run(10.0, &mut provider, 200.0);
    assert!(
        run.rates[100] < 8.0,
        "the ceiling was found: {}",
        run.rates[100]
    );
    let back = run.rates[120..]
        .iter()
        .position(|&r| r >= 9.5)
        .expect("the rate came back");
    assert!(
        back <= 20,
        "back to 95% of the rate {back} s after the 429s stopped"
    );
}

/// Sends 20 in `window` (starting `from` ms, 60 ms apart), the first `throttled` of them
/// answered 429, then reads the rate at `from + 1300` ms, after the window closed.
fn window(a: &mut Adaptive, start: Instant, from: u64, throttled: u64) -> f64 {
    let at = |ms: u64| start + Duration::from_millis(ms);
    for i in 0..20 {
        a.sent(at(from + i * 60));
        if i < throttled {
            a.throttled(at(from + i * 60));
        }
    }
    a.rate(at(from + 1300))
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_429s_cuts_the_rate_once_per_window_and_never_below_the_floor() {
    let start = Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    // A window of 5 429s in 20 sends is evidence, but one window is only a suspicion; a
    // second confirms it, and the rate is cut by a fifth.
    let mut a = Adaptive::new(10.0, 3.0, start);
    assert_eq!(
        window(&mut a, start, 0, 5),
        10.0,
        "one bad window lowers nothing"
    );
    let rate = window(&mut a, start, 1300, 5);
    assert!((8.0..8.01).contains(&rate), "cut by a fifth: {rate}");

    // Windows of nothing but 429s: cut by half, once per window however many 429s come.
    let mut a = Adaptive::new(10.0, 3.0, start);
    window(&mut a, start, 0, 20);
    let rate = window(&mut a, start, 1300, 20);
    assert!((5.0..5.01).contains(&rate), "cut by half: {rate}");
    for i in 0..100 {
        a.throttled(at(2600 + i));
    }
    let rate = a.rate(at(2700));
    assert!(
        (5.0..5.01).contains(&rate),
        "at most once per window: {rate}"
    );
    // Again and again: never below the floor.
    for w in 0..20 {
        window(&mut a, start, 2700 + w * 1300, 20);
    }
    let rate = a.rate(at(2700 + 20 * 1300));
    assert!((3.0..3.01).contains(&rate), "never below the floor: {rate}");
}

#[tokio::test(start_paused = true)]
async fn a_few_429s_in_a_window_are_no_evidence() {
    let start = Instant::now();
    let mut a = Adaptive::new(10.0, 5.0, start);
    // Windows of 20 sends with 2 429s each (10%): below the evidence bar, forever.
    for w in 0..50u64 {
        for i in 0..20u64 {
            let t = start + Duration::from_millis(w * 2000 + i * 100);
            a.sent(t);
            if i < 2 {
                a.throttled(t);
            }
        }
    }
    assert_eq!(a.rate(start + Duration::from_secs(101)), 10.0);
}
