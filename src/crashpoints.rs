//! Named crash points on the request path, for the `kill -9` harness (`tests/crash_points.rs`).
//!
//! The interesting crashes are the ones between two durable steps: a key claimed in the store
//! but the request not yet sent, a response in hand but not yet recorded. A timer cannot land
//! a kill there reliably, so the request path marks those places with [`crash_point!`], one
//! line each: a `fail` crate fail point with the `failpoints` cargo feature, nothing at all
//! without it (the crate is not even compiled), so a release build carries no trace of them.
//!
//! With the feature, `payguard run` arms at most one point, named by `PAYGUARD_CRASH_AT`: a
//! request reaching it prints [`REACHED`] and the point's name on stderr and stops its worker
//! thread there, so the harness can send SIGKILL with the process frozen at exactly that step.

/// Marks a crash point on the request path; expands to nothing without `failpoints`.
#[macro_export]
macro_rules! crash_point {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
}

/// A key is claimed in the idempotency store; no attempt has been sent upstream yet.
pub const AFTER_CLAIM: &str = "after_claim";
/// The attempts are over and a response is in hand; it is not yet recorded under the key.
pub const AFTER_RESPONSE: &str = "after_response";
/// Every crash point, for validating `PAYGUARD_CRASH_AT`.
pub const ALL: [&str; 2] = [AFTER_CLAIM, AFTER_RESPONSE];
/// What a request that reaches the armed point prints on stderr, before the point's name.
pub const REACHED: &str = "payguard crash point reached:";

/// Arms the crash point named by `PAYGUARD_CRASH_AT`, if set. An unknown name is an error, so
/// a harness with a typo fails instead of never crashing.
#[cfg(feature = "failpoints")]
pub fn arm_from_env() -> Result<(), String> {
    let Ok(point) = std::env::var("PAYGUARD_CRASH_AT") else {
        return Ok(());
    };
    if !ALL.contains(&point.as_str()) {
        return Err(format!(
            "PAYGUARD_CRASH_AT: unknown crash point {point:?}; known: {}",
            ALL.join(", ")
        ));
    }
    let name = point.clone();
    fail::cfg_callback(point, move || {
        eprintln!("{REACHED} {name}");
        // Hold this worker thread (and the request on it) until the harness's SIGKILL. The
        // other workers keep serving, as they would on a machine that dies mid-step.
        loop {
            std::thread::park();
        }
    })
}
