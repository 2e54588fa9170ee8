//! Steps 4 to 6 for a buffered request: idempotency, the attempts, then the finish (storing
//! the answer, settling the journal). Two ways in: [`ProxyState::dispatch`] for the app's
//! requests, which are journaled, and [`ProxyState::resend`] for the resolver's re-sends,
//! which are not (the resolver holds the entry) and report the journal's verdict instead.

use bytes::Bytes;
use http_body_util::Full;

use super::{Forwarded, ProxyBody, ProxyState, Routed};
use crate::error::ProxyError;
use crate::idempotency::{Admission, Guard, RequestIdentity};
use crate::inbound::is_idempotent;
use crate::journal::{self, Ticket, Verdict};
use crate::metrics::Origin;
use crate::retry::{self, RequestFacts};
use crate::route::RouteSpec;

impl ProxyState {
    /// An app's request, all within `deadline`.
    pub(super) async fn dispatch(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        route: Routed<'_>,
        deadline: tokio::time::Instant,
    ) -> Forwarded {
        self.exchange(parts, body, route, deadline, true).await.0
    }

    /// The resolver's re-send of a journaled request, through the whole request path
    /// (idempotency layer, gates, retries) but not the journal. Returns the journal's verdict
    /// on it and the attempts it took.
    pub(crate) async fn resend(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        route: Routed<'_>,
        deadline: tokio::time::Instant,
    ) -> (Verdict, u32) {
        let (forwarded, verdict) = self.exchange(parts, body, route, deadline, false).await;
        (verdict, forwarded.attempts)
    }

    /// A keyed request that sent nothing (a local refusal, a 429) tells the app "not executed"
    /// only if no earlier request with its key is still in doubt: the SDK's retry after an
    /// "outcome unknown", or a new-key request joined to one, must not read "failed" while the
    /// journal holds the payment and the resolver may yet execute it.
    /// The journal entry is the ticket's: a request without one (unkeyed, or the resolver's
    /// own re-send, whose verdict the resolver reads instead) has nothing to look up.
    async fn earlier_doubt(
        &self,
        ticket: Option<&Ticket>,
        result: Result<http::Response<super::ProxyBody>, ProxyError>,
    ) -> Result<http::Response<super::ProxyBody>, ProxyError> {
        let Some(ticket) = ticket else {
            return result;
        };
        if !self.journal.in_doubt(ticket.id(), ticket.sent()).await {
            return result;
        }
        Err(ProxyError::OutcomeUnknown {
            detail: "an earlier request with this key may have executed, and payguard has not settled it yet".into(),
            timed_out: false,
        })
    }

    async fn exchange(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
        routed: Routed<'_>,
        deadline: tokio::time::Instant,
        journaled: bool,
    ) -> (Forwarded, Verdict) {
        let route = routed.spec();
        let budget = match self.budget(route) {
            Ok(budget) => budget,
            Err(e) => return (Forwarded::refused(e), Verdict::NothingSent),
        };
        // What a keyed request is (tenant, method, target, body), computed once: the
        // idempotency layer and the journal both key on it.
        let identity = RequestIdentity::of(route.keyed(), &parts, &body);
        let admitted = match &identity {
            // A method the provider does not key (a GET): nothing to claim or journal.
            None => Admitted::default(),
            Some(identity) => {
                let admitted = self
                    .admit(&mut parts, &body, route, identity, deadline, journaled)
                    .await;
                match admitted {
                    Ok(admitted) => admitted,
                    Err(answered) => return answered,
                }
            }
        };

        crate::crash_point!(crate::crashpoints::AFTER_CLAIM);
        let facts = facts(route, &parts);
        let observer = routed.series().observer();
        let finished = retry::send_with_retries(
            &route.retry,
            deadline,
            facts,
            budget,
            &self.jitter,
            &observer,
            |timeout| {
                // Each attempt is built afresh from the buffered parts: same method, target,
                // headers (idempotency key included) and body bytes every time.
                let attempt = Self::rebuild(&parts, Full::new(body.clone()));
                let ticket = admitted.ticket.as_ref();
                self.gated_attempt(route, attempt, timeout, deadline, ticket)
            },
        )
        .await;
        crate::crash_point!(crate::crashpoints::AFTER_RESPONSE);
        if admitted.guard.is_none() && admitted.ticket.is_none() {
            // Nothing to store or settle (a GET, say): the outcome is the answer. Kept out of
            // `conclude`, whose future is kilobytes, so such a request never builds it.
            let verdict = Verdict::of(&finished.outcome, facts);
            return (Forwarded::outcome(finished, admitted.injected), verdict);
        }
        self.conclude(facts, finished, admitted, deadline).await
    }

    /// Step 4: the idempotency layer's decision, and the journal ticket of a request that is
    /// to be sent. `Err` is the answer when nothing is to be sent (a replay, a refusal).
    async fn admit(
        &self,
        parts: &mut http::request::Parts,
        body: &Bytes,
        route: &RouteSpec,
        identity: &RequestIdentity,
        deadline: tokio::time::Instant,
        journaled: bool,
    ) -> Result<Admitted, (Forwarded, Verdict)> {
        let m = &self.metrics.idempotency;
        let admission = self
            .idempotency
            .admit(route.keyed(), m, &mut parts.headers, identity, deadline)
            .await;
        let (guard, injected) = match admission {
            Admission::Forward { guard, injected } => (guard, injected),
            Admission::Refuse(e) => return Err((Forwarded::refused(e), Verdict::NothingSent)),
            Admission::Replay { response, injected } => {
                let verdict = Verdict::Definitive(response.status().as_u16());
                let forwarded = Forwarded {
                    result: Ok(response),
                    attempts: 0,
                    injected,
                    origin: Origin::Payguard,
                };
                return Err((forwarded, verdict));
            }
        };
        // Written when the first attempt is about to leave, not before: a request abandoned
        // while it queues must leave nothing for the resolver to send.
        let ticket = journaled.then_some(identity).and_then(|identity| {
            let resends = |windowed| self.resolver.resends(&route.name, windowed);
            let bound_until = guard.as_ref().and_then(Guard::bound_until);
            journal::prepare(
                &self.journal,
                resends,
                route,
                parts,
                body,
                identity,
                bound_until,
            )
        });
        Ok(Admitted {
            guard,
            injected,
            ticket,
        })
    }

    /// Steps 5 and 6 after the attempts: the answer the app gets and the journal's verdict,
    /// read from the final outcome, the stored record and any earlier doubt about the key.
    async fn conclude(
        &self,
        facts: RequestFacts<'_>,
        finished: retry::Finished<ProxyBody>,
        admitted: Admitted,
        deadline: tokio::time::Instant,
    ) -> (Forwarded, Verdict) {
        let Admitted {
            guard,
            injected,
            ticket,
        } = admitted;
        let m = &self.metrics.idempotency;
        let verdict = Verdict::of(&finished.outcome, facts);
        let (result, storing) = match (finished.outcome, guard) {
            (Ok(response), Some(guard)) => match guard.finish(m, response, deadline).await {
                Ok((response, storing)) => (Ok(response), storing),
                Err(e) => (Err(e), None),
            },
            (Ok(response), None) => (Ok(response), None),
            // Dropping the guard releases the key: the outcome is unknown, so the app's retry
            // must reach the provider, which is the authority on what happened.
            (Err(e), _) => (Err(ProxyError::from(e)), None),
        };
        let result = match verdict {
            Verdict::NothingSent => self.earlier_doubt(ticket.as_ref(), result).await,
            _ => result,
        };
        // A final answer whose body was cut off never reached the app: still in doubt.
        let verdict = match (&result, verdict) {
            (Err(ProxyError::OutcomeUnknown { detail, .. }), Verdict::Definitive(_)) => {
                Verdict::Unknown(detail.clone())
            }
            (_, verdict) => verdict,
        };
        // The response is stored while the journal settles, so on the embedded store the two
        // writes share a commit; the app is answered once both are made.
        let storing = async {
            if let Some(storing) = storing {
                storing.store(m).await;
            }
        };
        let (result, verdict) = match ticket {
            Some(ticket) => {
                let delivered = self.deliver(ticket, result, verdict, finished.attempts, deadline);
                tokio::join!(delivered, storing).0
            }
            None => {
                storing.await;
                (result, verdict)
            }
        };
        let forwarded = Forwarded::answered(result, finished.attempts, injected);
        (forwarded, verdict)
    }
}

/// A request the idempotency layer let through: its claim (if keyed), the key payguard chose
/// for it (if any), and its journal ticket (if journaled).
#[derive(Default)]
struct Admitted {
    guard: Option<Guard>,
    injected: Option<http::HeaderValue>,
    ticket: Option<Ticket>,
}

/// What the retry rules need to know of a request: whether a re-send is safe.
fn facts<'a>(route: &'a RouteSpec, parts: &http::request::Parts) -> RequestFacts<'a> {
    let keyed = route.profile.has_key(&parts.headers);
    RequestFacts {
        replay_safe: is_idempotent(&parts.method) || keyed,
        keyed,
        profile: route.profile,
    }
}
