//! Payment intents and refunds: the provider's state, and the only place effects happen.
//!
//! Every mutation and its ledger entry are made under one lock, so the ledger's order is the
//! order things happened in. Objects live in the scope (the API key plus the dialect's account
//! header, `Stripe-Account` for Stripe) that created them; another scope asking for one gets the
//! same 404 as for an id that never existed. Errors are returned as [`ApiError`]s, which the
//! caller's dialect spells.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use http::StatusCode;
use serde_json::{Value, json};

use super::form::{new_id, unix_now};
use super::ledger::{Effect, EffectKind, Ledger};
use super::reply::{self, ApiError};

/// A validated request for the store.
#[derive(Debug, PartialEq)]
pub(crate) enum Command {
    CreateIntent {
        amount: u64,
        currency: String,
        confirm: bool,
        metadata: BTreeMap<String, String>,
    },
    ConfirmIntent(String),
    RetrieveIntent(String),
    CreateRefund {
        payment_intent: String,
        amount: Option<u64>,
        reason: Option<String>,
        metadata: BTreeMap<String, String>,
    },
    RetrieveRefund(String),
}

/// Who is asking, and what to stamp on effects.
pub(crate) struct Context<'a> {
    pub scope: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub ledger: &'a Ledger,
}

#[derive(Default)]
pub(crate) struct Objects {
    // A std Mutex: commands are synchronous and short; nothing awaits while holding it.
    store: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    /// Keyed by (scope, id).
    intents: HashMap<(String, String), Intent>,
    refunds: HashMap<(String, String), Value>,
}

struct Intent {
    id: String,
    amount: u64,
    currency: String,
    succeeded: bool,
    latest_charge: Option<String>,
    refunded: u64,
    metadata: BTreeMap<String, String>,
    created: u64,
}

impl Intent {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_received": if self.succeeded { self.amount } else { 0 },
            "capture_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "latest_charge": self.latest_charge,
            "livemode": false,
            "metadata": self.metadata,
            "status": if self.succeeded { "succeeded" } else { "requires_confirmation" },
        })
    }
}

impl Objects {
    /// Runs a command: the object's JSON (answered 200), or the endpoint's error, which the
    /// caller's dialect spells.
    pub(crate) fn execute(&self, command: Command, cx: &Context<'_>) -> Result<Value, ApiError> {
        // Poison is harmless: each command checks before it mutates, and mutates in one step.
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = |id: &str| (cx.scope.to_owned(), id.to_owned());
        match command {
            Command::CreateIntent {
                amount,
                currency,
                confirm,
                metadata,
            } => {
                let id = new_id("pi");
                let mut intent = Intent {
                    id: id.clone(),
                    amount,
                    currency,
                    succeeded: false,
                    latest_charge: None,
                    refunded: 0,
                    metadata,
                    created: unix_now(),
                };
                effect(cx, EffectKind::PaymentIntentCreated, &intent, &id, amount);
                if confirm {
                    charge(cx, &mut intent);
                }
                let body = intent.to_json();
                store.intents.insert(slot(&id), intent);
                Ok(body)
            }
            Command::ConfirmIntent(id) => match store.intents.get_mut(&slot(&id)) {
                None => Err(reply::missing("payment_intent", &id, "intent")),
                Some(intent) if intent.succeeded => {
                    let message = "You cannot confirm this PaymentIntent because it has already succeeded after being previously confirmed.";
                    let code = Some("payment_intent_unexpected_state");
                    Err(reply::error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        code,
                        message,
                    ))
                }
                Some(intent) => {
                    charge(cx, intent);
                    Ok(intent.to_json())
                }
            },
            Command::RetrieveIntent(id) => match store.intents.get(&slot(&id)) {
                Some(intent) => Ok(intent.to_json()),
                None => Err(reply::missing("payment_intent", &id, "intent")),
            },
            Command::CreateRefund {
                payment_intent,
                amount,
                reason,
                metadata,
            } => {
                let Some(intent) = store.intents.get_mut(&slot(&payment_intent)) else {
                    let param = "payment_intent";
                    return Err(reply::missing("payment_intent", &payment_intent, param));
                };
                let (id, refund) = refund(cx, intent, amount, reason, metadata)?;
                store.refunds.insert(slot(&id), refund.clone());
                Ok(refund)
            }
            Command::RetrieveRefund(id) => match store.refunds.get(&slot(&id)) {
                Some(refund) => Ok(refund.clone()),
                None => Err(reply::missing("refund", &id, "refund")),
            },
        }
    }
}

impl Objects {
    /// The current state, in this scope, of the object (a payment intent or a refund) that a
    /// saved response body describes. Only a read: nothing changes and the ledger is untouched.
    pub(crate) fn current(&self, scope: &str, saved_body: &[u8]) -> Option<Value> {
        let object: Value = serde_json::from_slice(saved_body).ok()?;
        let slot = (scope.to_owned(), object["id"].as_str()?.to_owned());
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        match object["object"].as_str()? {
            "payment_intent" => store.intents.get(&slot).map(Intent::to_json),
            "refund" => store.refunds.get(&slot).cloned(),
            _ => None,
        }
    }
}

/// Confirms an intent: it succeeds at once (no card flow) and money moves.
fn charge(cx: &Context<'_>, intent: &mut Intent) {
    intent.succeeded = true;
    intent.latest_charge = Some(new_id("ch"));
    effect(cx, EffectKind::Charge, intent, &intent.id, intent.amount);
}

/// Checks a refund against what is left, then makes it. Failures here are the endpoint's
/// verdict (saved under a key), not parameter validation.
fn refund(
    cx: &Context<'_>,
    intent: &mut Intent,
    amount: Option<u64>,
    reason: Option<String>,
    metadata: BTreeMap<String, String>,
) -> Result<(String, Value), ApiError> {
    let bad = |code: &'static str, message: String| {
        let code = Some(code);
        reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
        .on("amount")
    };
    if !intent.succeeded {
        let message = format!(
            "This PaymentIntent ({}) does not have a successful charge to refund.",
            intent.id
        );
        return Err(bad("payment_intent_unexpected_state", message));
    }
    // Cannot underflow: refunds only ever add amounts checked against what was left.
    let left = intent.amount - intent.refunded;
    if left == 0 {
        return Err(bad(
            "charge_already_refunded",
            format!("Charge for {} has already been refunded.", intent.id),
        ));
    }
    let amount = amount.unwrap_or(left);
    if amount > left {
        let message = format!(
            "Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
        );
        return Err(bad("amount_too_large", message));
    }
    intent.refunded += amount;
    let id = new_id("re");
    let order_id = metadata.get("order_id").cloned();
    cx.ledger.record(Effect {
        seq: 0,
        kind: EffectKind::RefundCreated,
        object_id: id.clone(),
        payment_intent: Some(intent.id.clone()),
        amount,
        currency: intent.currency.clone(),
        scope: cx.scope.to_owned(),
        idempotency_key: cx.idempotency_key.map(str::to_owned),
        // A refund's order is its own metadata's, not the intent's: two partial refunds of one
        // order are legitimate, and callers mark the logical refund they mean.
        order_id,
    });
    let body = json!({
        "id": id,
        "object": "refund",
        "amount": amount,
        "charge": intent.latest_charge,
        "created": unix_now(),
        "currency": intent.currency,
        "metadata": metadata,
        "payment_intent": intent.id,
        "reason": reason,
        "status": "succeeded",
    });
    Ok((id, body))
}

/// Records an intent's creation or charge; both carry the intent's `metadata[order_id]`.
fn effect(cx: &Context<'_>, kind: EffectKind, intent: &Intent, object_id: &str, amount: u64) {
    cx.ledger.record(Effect {
        seq: 0,
        kind,
        object_id: object_id.to_owned(),
        payment_intent: (kind == EffectKind::Charge).then(|| intent.id.clone()),
        amount,
        currency: intent.currency.clone(),
        scope: cx.scope.to_owned(),
        idempotency_key: cx.idempotency_key.map(str::to_owned),
        order_id: intent.metadata.get("order_id").cloned(),
    });
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
