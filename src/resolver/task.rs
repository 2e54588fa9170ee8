//! The background resolver: every `interval`, each due entry is re-sent once through the
//! normal request path, and the gauges are refreshed.
//!
//! Entries are handled one after another, never in parallel: a resolver exists to settle
//! doubt, not to add load on a provider that just failed, and every re-send still queues
//! behind the limiter and passes the breaker like any request. Between rounds an entry waits
//! `base_delay`, doubled each round up to `max_delay`. It stops at a definitive answer, when a
//! re-send could no longer end within the key window (the provider would then treat it as a
//! new request and might execute it twice) or within the duplicate window (the app may then
//! pay again under a new key), or when an operator gives up.
//!
//! With a journal shared by several replicas, each replica's resolver acts only on entries it
//! holds the lease of ([`super::lease`]): one replica at a time re-sends an entry.

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;

use crate::idempotency::after;
use crate::journal::{self, Entry, GiveUp, Id, State, Verdict};
use crate::proxy::ProxyState;
use crate::reload::LiveState;

/// Runs rounds until aborted, with the state in force at each round (reloads apply).
pub async fn run(state: LiveState) {
    loop {
        let current = state.load_full();
        let interval = current.resolver().interval;
        round(&current).await;
        drop(current);
        tokio::time::sleep(interval).await;
    }
}

/// One pass over the journal.
pub async fn round(proxy: &ProxyState) {
    let journal = proxy.journal();
    let entries = match journal.list().await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(error = %e, "resolver: cannot read the journal");
            return;
        }
    };
    let keep = proxy.resolver().keep_finished;
    for (id, entry) in entries {
        let now = journal.now_ms();
        if entry.state.finished() {
            if after(entry.updated_ms, keep) <= now {
                let _ = journal.remove(id).await;
            }
        } else if entry.due(now) {
            let ttl = hold(proxy, &entry);
            let step = |entry: Entry, now: u64| step(proxy, id, entry, now);
            if let Err(e) = journal.under_lease(id, ttl, step).await {
                tracing::warn!(error = %e, "resolver: cannot take an entry");
            }
        }
    }
    refresh(proxy).await;
}

/// How long the resolver holds an entry: its re-send's whole deadline (as
/// [`super::resend`] gives it), and the journal writes around it.
fn hold(proxy: &ProxyState, entry: &Entry) -> Duration {
    let method = Method::from_bytes(entry.method.as_bytes()).unwrap_or(Method::POST);
    let path = entry.target.split('?').next().unwrap_or("/");
    proxy.route(&method, path).retry.deadline + journal::lease::MARGIN
}

/// Acts on one due entry.
async fn step(proxy: &ProxyState, id: Id, entry: Entry, now: u64) {
    let (journal, spec) = (proxy.journal(), proxy.resolver());
    let Ok(method) = Method::from_bytes(entry.method.as_bytes()) else {
        return;
    };
    let path = entry.target.split('?').next().unwrap_or("/");
    let route = proxy.route(&method, path);
    let key_window = spec.key_window.unwrap_or(route.key_window);
    let ends = after(now, route.retry.deadline);
    if ends >= after(entry.created_ms, key_window) {
        return give_up(proxy, id, GiveUp::KeyWindow).await;
    }
    if entry.resend && entry.window_until.is_some_and(|until| ends >= until) {
        return give_up(proxy, id, GiveUp::DedupWindow).await;
    }
    if let State::Open { .. } = entry.state {
        // Its process died mid-request: from now on it is plainly pending. Unless the app's
        // retry reopened it meanwhile (a fresh lease): that request is live, nothing to send.
        let marked = journal
            .modify(id, false, move |e| {
                let open = matches!(e.state, State::Open { lease_until } if lease_until <= now);
                if open {
                    e.state = State::Pending { next_at: now };
                    e.was_pending = true;
                    e.last_error = Some("in flight when its payguard process stopped".into());
                    e.updated_ms = now;
                }
                open
            })
            .await;
        if !matches!(marked, Ok(Some(_))) {
            return;
        }
    }
    // Record-only (when journaled, or since a reload): listed until an operator gives up or
    // the window ends. A reload that took the route's window across keys away takes the
    // re-send with it: a new-key payment would no longer join this entry.
    let policy = &route.idempotency;
    let windowed =
        entry.window_until.is_some() && policy.dedup_window.is_some() && policy.dedup_across_keys;
    if !entry.resend || !spec.resends(&entry.route, windowed) {
        return;
    }
    let payload = match journal.payload(&id, &entry) {
        Ok(Some(payload)) => payload,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(route = entry.route, error = %e, "resolver: cannot open a payload");
            return give_up(proxy, id, GiveUp::Unreadable).await;
        }
    };
    let (verdict, attempts) = super::resend(proxy, method, &entry.target, payload).await;
    let now = journal.now_ms();
    let rounds = entry.rounds + 1;
    let next_at = after(now, backoff(spec.base_delay, spec.max_delay, rounds));
    let resolved = matches!(verdict, Verdict::Definitive(_));
    tracing::info!(
        route = entry.route,
        key = entry.key,
        rounds,
        resolved,
        "resolver: re-sent an unresolved request"
    );
    // A resolution lost in a crash would have the entry sent again: durable.
    let updated = journal
        .modify(id, resolved, move |e| {
            // Finished meanwhile, or reopened by the app's own retry, whose request is live:
            // only a definitive answer may settle it from here.
            let reopened = matches!(e.state, State::Open { lease_until } if lease_until > now);
            if e.state.finished() || (reopened && !resolved) {
                return false;
            }
            e.rounds = rounds;
            e.attempts += attempts;
            e.updated_ms = now;
            match &verdict {
                Verdict::Definitive(status) => e.finish(State::Resolved { status: *status }, now),
                Verdict::NothingSent => e.state = State::Pending { next_at },
                Verdict::Unknown(error) => {
                    e.state = State::Pending { next_at };
                    e.last_error = Some(error.clone());
                }
            }
            true
        })
        .await;
    if let (true, Ok(Some(entry))) = (resolved, updated) {
        journal::finished(proxy.metrics(), proxy.webhook(), &id, &entry);
    }
}

/// The wait after `rounds` re-sends: `base` doubled per round, at most `max`.
pub fn backoff(base: Duration, max: Duration, rounds: u32) -> Duration {
    let factor = 2u32.saturating_pow(rounds.saturating_sub(1).min(31));
    base.saturating_mul(factor).min(max)
}

async fn give_up(proxy: &ProxyState, id: Id, reason: GiveUp) {
    let now = proxy.journal().now_ms();
    // Durable: given up means never sent again, even after a crash.
    let done = proxy
        .journal()
        .modify(id, true, move |e| {
            let live = !e.state.finished();
            if live {
                e.finish(State::GaveUp { reason }, now);
            }
            live
        })
        .await;
    if let Ok(Some(entry)) = done {
        tracing::warn!(
            route = entry.route,
            key = entry.key,
            reason = reason.label(),
            "resolver: gave up on an unresolved request"
        );
        journal::finished(proxy.metrics(), proxy.webhook(), &id, &entry);
    }
}

/// Sets the unresolved gauges from the journal.
pub async fn refresh(proxy: &ProxyState) {
    let Ok(entries) = proxy.journal().list().await else {
        return;
    };
    let now = proxy.journal().now_ms();
    let mut counts = BTreeMap::new();
    let mut oldest = 0;
    for (_, e) in entries.iter().filter(|(_, e)| e.unresolved(now)) {
        *counts.entry(e.route.clone()).or_insert(0) += 1;
        oldest = oldest.max(now.saturating_sub(e.created_ms) / 1000);
    }
    let oldest = i64::try_from(oldest).unwrap_or(i64::MAX);
    proxy.metrics().resolver.set(&counts, oldest);
}
