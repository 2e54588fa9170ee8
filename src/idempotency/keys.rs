//! Which idempotency key a request goes out under, before it is claimed: its own, one
//! payguard injects, or, on a route with a duplicate window, the key of an identical earlier
//! request.
//!
//! The window is the defence against apps that resend a payment without a key, or under a
//! new key each time (the seed article's `refund_${orderId}_${Date.now()}`): the provider
//! cannot tell such a resend from a new payment, so it would charge twice. payguard binds the
//! request's identity (tenant, method, target, body) to the first key it was sent under, for
//! `dedup_window`; a later identical request takes that key, and so is answered as the
//! provider would answer a retry: replayed when the first completed, joined while it runs,
//! sent again under the first key when its outcome is unknown (the provider deduplicates it).
//! Only when the first ended in a failure the provider kept under its key (a decline) does a
//! new key take the binding over: that is a new attempt at the payment, not a resend.
//!
//! Keyless requests are windowed whenever the route has a window; keyed ones only with
//! `dedup_across_keys`, since two keys normally say "two payments". When a keyless request on
//! a windowed route cannot be bound (the store failed or is full), it is refused with 503 and
//! nothing is sent: a fresh key would make a resend indistinguishable from a new payment.

use http::{HeaderMap, HeaderValue};

use super::guard::Admission;
use super::handle::Idempotency;
use super::store::BindRequest;
use super::{KeyedRoute, after, fingerprint, new_key};
use crate::error::ProxyError;
use crate::metrics::IdempotencyMetrics;

use super::fingerprint::Digest;

/// The key chosen for a request, and how it was chosen.
pub(super) struct KeyChoice {
    /// The key the request carries now.
    pub(super) key: HeaderValue,
    /// Returned to the app in `Payguard-Idempotency-Key`: the key payguard chose, when it is
    /// not the app's own.
    pub(super) shown: Option<HeaderValue>,
    /// Set when `key` is an earlier identical request's, taken from the window's binding.
    earlier: Option<Binding>,
    /// Until when the store binds this request's identity to `key` (at the latest: a binding
    /// an earlier request made ends sooner); `None` when nothing was bound.
    pub(super) bound_until: Option<u64>,
}

/// A window binding this request's identity to an earlier request's key.
struct Binding {
    binding: Digest,
    /// The key this request would have had: its own, or the one payguard would inject.
    own: HeaderValue,
    /// Whether `own` is the app's (else payguard's, to be shown and counted).
    apps: bool,
    expires_at: u64,
}

impl KeyChoice {
    fn plain(key: HeaderValue, shown: Option<HeaderValue>) -> KeyChoice {
        KeyChoice {
            key,
            shown,
            earlier: None,
            bound_until: None,
        }
    }

    /// Whether the request goes out as an earlier identical request's retry.
    pub(super) fn joined(&self) -> bool {
        self.earlier.is_some()
    }

    /// Counts a request joined to an earlier one under another of the app's keys, once it is
    /// answered that way.
    pub(super) fn count_join(&self, m: &IdempotencyMetrics, route: &str) {
        if self.earlier.as_ref().is_some_and(|b| b.apps) {
            m.joined.with_label_values(&[route]).inc();
        }
    }
}

impl Idempotency {
    /// The key for a keyed request of tenant `scope` and fingerprint `print`. `Err` carries
    /// the answer when no claim is needed (a fresh random key cannot collide) or possible.
    pub(super) async fn choose_key(
        &self,
        spec: KeyedRoute<'_>,
        m: &IdempotencyMetrics,
        headers: &mut HeaderMap,
        scope: &Digest,
        print: &Digest,
        windowed: bool,
    ) -> Result<KeyChoice, Admission> {
        let (policy, profile) = (spec.policy, spec.profile);
        let forward = |injected| Admission::Forward {
            guard: None,
            injected,
        };
        let own = headers.get(&profile.key_header).cloned();
        // Longer than the provider accepts: left for it to refuse.
        if own
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > profile.max_key_len)
        {
            return Err(forward(None));
        }
        // A key that is not text cannot be stored in a binding; it keeps to itself.
        let bindable = own.as_ref().is_none_or(|k| k.to_str().is_ok());
        let window = policy
            .dedup_window
            .filter(|_| windowed && bindable && (own.is_none() || policy.dedup_across_keys));
        match (own, window) {
            (Some(key), None) => Ok(KeyChoice::plain(key, None)),
            (None, None) if !policy.inject => Err(forward(None)),
            (None, None) => {
                // A fresh random key cannot collide: nothing to look up.
                let Ok(value) = HeaderValue::from_str(&new_key()) else {
                    return Err(forward(None));
                };
                headers.insert(&profile.key_header, value.clone());
                m.injected.with_label_values(&[spec.name]).inc();
                Err(forward(Some(value)))
            }
            (own, Some(window)) => {
                let binding = fingerprint::binding_key(scope, print);
                let apps = own.is_some();
                let own = match own {
                    Some(key) => key,
                    None => HeaderValue::from_str(&new_key()).map_err(|_| forward(None))?,
                };
                let expires_at = after(self.now_ms(), window);
                let bound = Binding {
                    binding,
                    own,
                    apps,
                    expires_at,
                };
                self.bind(spec, m, headers, bound, None).await
            }
        }
    }

    /// An earlier identical request failed for good under its key: bind this one's own key
    /// in its place (unless another request already did) and go with what is bound then.
    pub(super) async fn take_over(
        &self,
        spec: KeyedRoute<'_>,
        m: &IdempotencyMetrics,
        headers: &mut HeaderMap,
        choice: KeyChoice,
    ) -> Result<KeyChoice, Admission> {
        let Some(earlier) = choice.earlier else {
            return Ok(choice);
        };
        self.bind(spec, m, headers, earlier, Some(choice.key)).await
    }

    /// Binds `b.own` to the request's identity (replacing a binding to `replace`), puts the key
    /// in force into `headers`, and says how it was chosen.
    async fn bind(
        &self,
        spec: KeyedRoute<'_>,
        m: &IdempotencyMetrics,
        headers: &mut HeaderMap,
        b: Binding,
        replace: Option<HeaderValue>,
    ) -> Result<KeyChoice, Admission> {
        let (policy, route) = (spec.policy, spec.name);
        let (own, replaced) = (b.own.to_str(), replace.as_ref().map(|r| r.to_str()));
        let (Ok(own), None | Some(Ok(_))) = (own, &replaced) else {
            return Ok(KeyChoice::plain(b.own, None));
        };
        let req = BindRequest {
            key: &b.binding,
            candidate: own,
            expires_at: b.expires_at,
            now: self.now_ms(),
            replace: replaced.and_then(Result::ok),
        };
        let bound = match self.op(m, "bind", self.0.store.bind(req)).await {
            Ok(bound) => bound,
            // The app's own key still has the provider deduplicate its retries; only the
            // window is lost, as the route's on_store_error says.
            Err(e) if b.apps => return Err(self.degrade(policy, e, None)),
            // A keyless resend under a fresh key would look like a new payment: refuse it.
            Err(e) => {
                return Err(Admission::Refuse(ProxyError::StoreUnavailable(
                    e.to_string(),
                )));
            }
        };
        let earlier = bound != own;
        let key = match earlier {
            false => b.own.clone(),
            // Built from a key this store holds, written by payguard from a header value.
            true => HeaderValue::from_str(&bound).map_err(|_| {
                Admission::Refuse(ProxyError::StoreUnavailable(
                    "a bound key is not text".into(),
                ))
            })?,
        };
        if !b.apps && !earlier {
            m.injected.with_label_values(&[route]).inc();
        }
        headers.insert(&spec.profile.key_header, key.clone());
        // The app learns the key its request went out under when it is not its own.
        let shown = (!b.apps || earlier).then(|| key.clone());
        Ok(KeyChoice {
            key,
            shown,
            bound_until: Some(b.expires_at),
            earlier: earlier.then_some(b),
        })
    }
}
