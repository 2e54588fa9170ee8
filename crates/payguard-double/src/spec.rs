//! Faults and fault mixes as text, for the binary's `--fault-mix` and the `/_double/faults`
//! control endpoint: `reset-before,reset-after,500,503,429-retry-after=1`, each fault
//! optionally weighted (`503*3`), or a named mix (`transient`, `transient-retry-after`).
//!
//! | text | fault |
//! | --- | --- |
//! | `reset-before`, `reset-after` | [`Fault::ResetBeforeProcessing`], [`Fault::ResetAfterProcessing`] |
//! | a status from 400 to 599 but 429, e.g. `500` | [`Fault::Status`] |
//! | `429`, `429-retry-after=N` (seconds) | [`Fault::RateLimited`], without or with `Retry-After` |
//! | `lock-timeout`, `key-in-use`, `bad-request` | 429 `lock_timeout`, 409, 400 |
//! | `truncated-body`, `stall=DUR`, `slow-body=DUR` | delivery and timing faults (`DUR` like `2s`) |
//! | `fail-during=STATUS` | [`Fault::FailDuringExecution`] |
//!
//! [`fault_name`] writes a fault back in this spelling, so a mix read here can be shown again.

use std::time::Duration;

use super::faults::Fault;

/// `transient`: [`super::Profile::transient`]'s mix (429 without hints).
pub const TRANSIENT: &str = "reset-before,reset-after,500,503,429";
/// `transient-retry-after`: the same five, the 429 carrying `Retry-After: 1`.
pub const TRANSIENT_RETRY_AFTER: &str = "reset-before,reset-after,500,503,429-retry-after=1";

/// Reads a mix: a named one, or comma-separated faults, each with an optional `*WEIGHT`.
pub fn parse_mix(text: &str) -> Result<Vec<(Fault, u32)>, String> {
    let text = match text.trim() {
        "transient" => TRANSIENT,
        "transient-retry-after" => TRANSIENT_RETRY_AFTER,
        "" | "none" => return Ok(Vec::new()),
        other => other,
    };
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (fault, weight) = match part.rsplit_once('*') {
                Some((fault, weight)) => {
                    let weight = weight.trim().parse::<u32>().map_err(|_| {
                        format!("bad weight in `{part}`: a whole number, e.g. 503*3")
                    })?;
                    (fault.trim(), weight)
                }
                None => (part, 1),
            };
            Ok((parse_fault(fault)?, weight))
        })
        .collect()
}

/// Reads one fault (no weight).
pub fn parse_fault(text: &str) -> Result<Fault, String> {
    let (name, arg) = match text.split_once('=') {
        Some((name, arg)) => (name, Some(arg)),
        None => (text, None),
    };
    let duration = |arg: Option<&str>| {
        let arg = arg.ok_or_else(|| format!("`{name}` needs a duration, e.g. {name}=2s"))?;
        humantime::parse_duration(arg).map_err(|e| format!("bad duration in `{text}`: {e}"))
    };
    let status = |arg: &str| match arg.parse::<u16>() {
        Ok(code) if (400..=599).contains(&code) => Ok(code),
        _ => Err(format!("bad status in `{text}`: a number from 400 to 599")),
    };
    let fault = match (name, arg) {
        ("reset-before", None) => Fault::ResetBeforeProcessing,
        ("reset-after", None) => Fault::ResetAfterProcessing,
        ("429", None) => Fault::RateLimited {
            retry_after: None,
            should_retry: None,
        },
        ("429-retry-after", Some(secs)) => {
            let secs = secs
                .parse::<u64>()
                .map_err(|_| format!("bad seconds in `{text}`: a whole number"))?;
            Fault::RateLimited {
                retry_after: Some(Duration::from_secs(secs)),
                should_retry: None,
            }
        }
        ("lock-timeout", None) => Fault::LockTimeout,
        ("key-in-use", None) => Fault::KeyInUse,
        ("bad-request", None) => Fault::BadRequest,
        ("truncated-body", None) => Fault::TruncatedBody,
        ("stall", arg) => Fault::Stall(duration(arg)?),
        ("slow-body", arg) => Fault::SlowBody(duration(arg)?),
        ("fail-during", Some(code)) => Fault::FailDuringExecution(status(code)?),
        (code, None) if code.bytes().all(|b| b.is_ascii_digit()) => Fault::Status(status(code)?),
        _ => {
            return Err(format!(
                "unknown fault `{text}`: try reset-before, reset-after, 500, 503, 429, \
                 429-retry-after=1, lock-timeout, key-in-use, bad-request, truncated-body, \
                 stall=2s, slow-body=100ms or fail-during=500"
            ));
        }
    };
    Ok(fault)
}

/// A fault in [`parse_fault`]'s spelling. Faults that text cannot express (a 429 with
/// `Stripe-Should-Retry`, [`Fault::ShouldRetry`]) get a description that does not parse back.
pub fn fault_name(fault: &Fault) -> String {
    match fault {
        Fault::ResetBeforeProcessing => "reset-before".into(),
        Fault::ResetAfterProcessing => "reset-after".into(),
        Fault::Status(code) => code.to_string(),
        Fault::RateLimited {
            retry_after: None,
            should_retry: None,
        } => "429".into(),
        Fault::RateLimited {
            retry_after: Some(wait),
            should_retry: None,
        } if wait.subsec_nanos() == 0 => format!("429-retry-after={}", wait.as_secs()),
        Fault::RateLimited {
            retry_after,
            should_retry,
        } => format!("429(retry_after={retry_after:?}, should_retry={should_retry:?})"),
        Fault::LockTimeout => "lock-timeout".into(),
        Fault::KeyInUse => "key-in-use".into(),
        Fault::BadRequest => "bad-request".into(),
        Fault::ShouldRetry(code, flag) => format!("{code}(should_retry={flag})"),
        Fault::TruncatedBody => "truncated-body".into(),
        Fault::Stall(pause) => format!("stall={}", humantime::format_duration(*pause)),
        Fault::SlowBody(pause) => format!("slow-body={}", humantime::format_duration(*pause)),
        Fault::FailDuringExecution(code) => format!("fail-during={code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Profile;

    #[test]
    fn named_mixes_are_the_transient_profile_and_its_hinted_twin() {
        assert_eq!(
            parse_mix("transient").unwrap(),
            Profile::transient(0.3, 1).mix
        );
        let hinted = parse_mix("transient-retry-after").unwrap();
        assert_eq!(hinted, Profile::transient_retry_after(0.3, 1).mix);
        assert_eq!(
            hinted[4].0,
            Fault::RateLimited {
                retry_after: Some(Duration::from_secs(1)),
                should_retry: None
            }
        );
        assert_eq!(parse_mix("none").unwrap(), vec![]);
    }

    #[test]
    fn faults_weights_and_their_names_round_trip() {
        let text =
            "reset-before,503*3, 429-retry-after=2,lock-timeout,stall=1500ms,fail-during=500";
        let mix = parse_mix(text).unwrap();
        assert_eq!(mix[1], (Fault::Status(503), 3));
        assert_eq!(mix[4].0, Fault::Stall(Duration::from_millis(1500)));
        for (fault, _) in &mix {
            assert_eq!(&parse_fault(&fault_name(fault)).unwrap(), fault);
        }
    }

    #[test]
    fn bad_text_names_the_problem() {
        assert!(parse_fault("reset").unwrap_err().contains("unknown fault"));
        assert!(parse_fault("200").unwrap_err().contains("400 to 599"));
        assert!(
            parse_fault("stall")
                .unwrap_err()
                .contains("needs a duration")
        );
        assert!(parse_mix("503*x").unwrap_err().contains("bad weight"));
        assert!(
            parse_fault("429-retry-after=soon")
                .unwrap_err()
                .contains("seconds")
        );
    }
}
