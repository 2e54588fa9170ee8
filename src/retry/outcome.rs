//! What the app is told when the attempts end: the honest last word.
//!
//! A keyed request (one carrying the provider's idempotency key) can end in doubt: an attempt
//! may have executed (its connection was lost or timed out after sending, or the provider
//! answered 5xx, or its 409 said another attempt with the key was still running) and no later
//! attempt brought the provider's final answer. Passing on the last answer would then mislead
//! the app: a 429, a local refusal or a 503 all read as "nothing happened", and an app that
//! believes it creates the payment again under a new key. So such a request ends as
//! [`AttemptError::Unknown`], which payguard answers with its own "outcome unknown" error:
//! retry with the same key (the provider will answer what happened), while the journal keeps
//! the request for the resolver. Only this answer, never a plain failure, lets the resolver
//! send the request again on its own.
//!
//! A request without a key (GET, or a POST payguard gives none) keeps the provider's last
//! answer, except that a 409 or 429 after an attempt lost after sending gives way to that
//! loss, which is the truer word.

use http::Response;

use super::classify::{AttemptError, ProviderErrorCode, RequestFacts};

/// Whether an outcome is the provider's final word on a keyed request: an answer that is not
/// a 429 (nothing executed), a 5xx or the in-flight answer; a 5xx the provider marks as not to
/// be retried (Stripe's `Stripe-Should-Retry: false`: it knows it failed for good); or a
/// replay of the provider's own record, whatever its status (a 500 saved under the key stays
/// that key's answer).
pub fn settled<B>(outcome: &Result<Response<B>, AttemptError>, facts: RequestFacts) -> bool {
    let Ok(response) = outcome else {
        return false;
    };
    let (status, profile) = (response.status(), facts.profile);
    let code = response.extensions().get::<ProviderErrorCode>();
    if status.as_u16() == 429 {
        return profile.is_replay(response.headers());
    }
    profile.is_replay(response.headers())
        || profile.should_retry(response.headers()) == Some(false)
        || !(status.is_server_error() || profile.is_in_flight(status, code.map(|c| c.0.as_str())))
}

/// Why an outcome may have executed without a final answer, if it may have.
pub fn doubt<B>(outcome: &Result<Response<B>, AttemptError>, facts: RequestFacts) -> Option<Doubt> {
    let doubt = |detail: String, timed_out| Some(Doubt { detail, timed_out });
    match outcome {
        Err(AttemptError::Lost(e)) => doubt(format!("connection lost: {e}"), false),
        Err(AttemptError::TimedOut(t)) => doubt(format!("no response within {t:?}"), true),
        Err(AttemptError::Unknown { detail, timed_out }) => doubt(detail.clone(), *timed_out),
        Err(AttemptError::NotSent(_) | AttemptError::Refused(_)) => None,
        Ok(r) if settled(outcome, facts) || r.status().as_u16() == 429 => None,
        Ok(r) => doubt(
            format!("the provider answered {}", r.status().as_u16()),
            false,
        ),
    }
}

/// An attempt that may have executed, as the app will hear of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doubt {
    pub detail: String,
    /// The attempt timed out (a 504, rather than a 502).
    pub timed_out: bool,
}

/// What the attempts so far leave in doubt.
#[derive(Debug, Default)]
pub(super) struct Doubts {
    /// The latest attempt that may have executed without a final answer.
    latest: Option<Doubt>,
    /// For a request without a key: the latest attempt lost or timed out after sending.
    lost: Option<AttemptError>,
}

impl Doubts {
    /// Takes note of an attempt's outcome that is to be retried.
    pub(super) fn note<B>(
        &mut self,
        outcome: &Result<Response<B>, AttemptError>,
        facts: RequestFacts,
    ) {
        if let Some(d) = doubt(outcome, facts) {
            self.latest = Some(d);
        }
        if let Err(e @ (AttemptError::Lost(_) | AttemptError::TimedOut(_))) = outcome {
            self.lost = Some(e.clone());
        }
    }

    /// The outcome to return when the attempts end on `outcome`.
    pub(super) fn last<B>(
        self,
        outcome: Result<Response<B>, AttemptError>,
        facts: RequestFacts,
    ) -> Result<Response<B>, AttemptError> {
        if facts.keyed {
            if settled(&outcome, facts) {
                return outcome;
            }
            return match doubt(&outcome, facts).or(self.latest) {
                Some(Doubt { detail, timed_out }) => {
                    Err(AttemptError::Unknown { detail, timed_out })
                }
                // Nothing executed: a 429, or nothing ever left.
                None => outcome,
            };
        }
        match (&outcome, self.lost) {
            (Ok(r), Some(e)) if matches!(r.status().as_u16(), 409 | 429) => Err(e),
            _ => outcome,
        }
    }
}
