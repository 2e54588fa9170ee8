//! Control endpoints, for a harness driving the double as a process (Stripe has none of
//! these). They are answered before anything else: never logged in the request log, never
//! counted, never faulted or rate limited, and they need no API key. The double is a test
//! double; do not expose it.
//!
//! - `GET /_double/faults`: the fault profile and contention in force, as JSON.
//! - `POST /_double/faults`, a form with any of: `rate`, `mix` (see `spec.rs`; default
//!   `transient`) and `seed` (default 1) replace the probabilistic profile (`rate=0` ends it);
//!   `lock_object`, `lock_rate` (default 0.3) and `lock_seed` (default 1) set contention on one
//!   object (an empty `lock_object` ends it); `clear=true` first drops the profile, the
//!   contention and every queued fault. Answers like the GET. A script starts an outage with
//!   `rate=1&mix=503` and ends it with `rate=0`.
//! - `GET /_double/ledger`: the request and answer counts and the ledger, in all and per
//!   `metadata[order_id]`, as JSON (below).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::app::{App, SeenRequest};
use super::faults::{Contention, Profile};
use super::form::parse_form;
use super::ledger::EffectKind;
use super::reply::{self, ApiError, Reply};
use super::spec;

/// The paths answered here.
pub(crate) fn is_control(path: &str) -> bool {
    matches!(path, "/_double/faults" | "/_double/ledger")
}

pub(crate) fn handle(app: &App, request: &SeenRequest) -> Reply {
    let answer = match (request.path.as_str(), &request.method) {
        ("/_double/faults", &Method::GET) => Ok(faults(app)),
        ("/_double/faults", &Method::POST) => set_faults(app, &request.body).map(|()| faults(app)),
        ("/_double/ledger", &Method::GET) => Ok(ledger(app)),
        (path, method) => Err(reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            None,
            format!(
                "{method} is not allowed on {path}: GET /_double/ledger, GET or POST /_double/faults."
            ),
        )),
    };
    match answer {
        Ok(body) => Reply::json(StatusCode::OK, &body),
        Err(err) => app.provider.error(err),
    }
}

fn set_faults(app: &App, body: &[u8]) -> Result<(), ApiError> {
    let params: BTreeMap<String, String> = parse_form(body).into_iter().collect();
    let get = |name: &str| params.get(name).map(String::as_str);
    let number = |name: &str, default: f64| -> Result<f64, ApiError> {
        get(name).map_or(Ok(default), |raw| {
            raw.parse()
                .map_err(|_| invalid(name, format!("Invalid number: {raw}")))
        })
    };
    let seed = |name: &str| -> Result<u64, ApiError> {
        get(name).map_or(Ok(1), |raw| {
            raw.parse()
                .map_err(|_| invalid(name, format!("Invalid integer: {raw}")))
        })
    };
    // Check everything before changing anything, so a bad request leaves the plan as it was.
    let profile = match get("rate") {
        None => None,
        Some(_) => {
            let mix = spec::parse_mix(get("mix").unwrap_or("transient"))
                .map_err(|why| invalid("mix", why))?;
            let profile = Profile {
                rate: number("rate", 0.0)?,
                mix,
                seed: seed("seed")?,
            };
            if !(0.0..=1.0).contains(&profile.rate) {
                return Err(invalid("rate", "rate must be between 0 and 1.".into()));
            }
            if profile.rate > 0.0 && profile.mix.iter().all(|(_, w)| *w == 0) {
                return Err(invalid(
                    "mix",
                    "A rate above 0 needs a fault in the mix.".into(),
                ));
            }
            Some(profile)
        }
    };
    let contention = match get("lock_object") {
        None => None,
        Some("") => Some(None),
        Some(object) => {
            let rate = number("lock_rate", 0.3)?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(invalid(
                    "lock_rate",
                    "lock_rate must be between 0 and 1.".into(),
                ));
            }
            let seed = seed("lock_seed")?;
            let object = object.to_owned();
            Some(Some(Contention { object, rate, seed }))
        }
    };
    let plan = &app.faults;
    if get("clear") == Some("true") {
        plan.clear();
    }
    // Both were checked above, so neither can be refused now.
    if let Some(profile) = profile {
        plan.set_profile(profile)
            .map_err(|e| invalid("rate", e.to_string()))?;
    }
    if let Some(contention) = contention {
        plan.set_contention(contention)
            .map_err(|e| invalid("lock_rate", e.to_string()))?;
    }
    Ok(())
}

fn invalid(param: &str, message: String) -> ApiError {
    reply::invalid_param(param, "parameter_invalid", message)
}

fn faults(app: &App) -> Value {
    let profile = app.faults.profile().map(|p| {
        let mix: Vec<Value> = p
            .mix
            .iter()
            .map(|(fault, weight)| json!({ "fault": spec::fault_name(fault), "weight": weight }))
            .collect();
        json!({ "rate": p.rate, "mix": mix, "seed": p.seed })
    });
    let contention = app
        .faults
        .contention()
        .map(|c| json!({ "object": c.object, "rate": c.rate, "seed": c.seed }));
    json!({
        "profile": profile,
        "contention": contention,
        "pending": app.faults.pending(),
        "injected": app.faults.injected(),
    })
}

/// ```json
/// {"requests_seen": 12, "rate_limited": 2, "faults_injected": 3,
///  "answers": {"200": 8, "429": 3, "reset": 1},
///  "effects": {"payment_intent_created": 8, "charge": 8, "refund_created": 0},
///  "duplicates": 0,
///  "orders": {"o1": {"answers": {"200": 1, "reset": 1},
///                    "effects": {"payment_intent_created": 2, "charge": 2}}}}
/// ```
/// `rate_limited` is the double's own limiter; `answers["429"]` adds the injected 429s
/// (`rate_limit` and `lock_timeout`). An order's effects are the ledger's effects carrying its
/// `metadata[order_id]`; an order with effects but no counted request (none carried the id)
/// still appears.
fn ledger(app: &App) -> Value {
    let counts = app.tally.snapshot();
    let summary = app.ledger.summary();
    let mut orders: BTreeMap<String, Value> = BTreeMap::new();
    for (order, answers) in counts.orders {
        orders.insert(order, json!({ "answers": answers, "effects": {} }));
    }
    for effect in app.ledger.entries() {
        let Some(order) = effect.order_id else {
            continue;
        };
        let entry = orders
            .entry(order)
            .or_insert_with(|| json!({ "answers": {}, "effects": {} }));
        let count = &mut entry["effects"][effect_name(effect.kind)];
        *count = json!(count.as_u64().unwrap_or(0) + 1);
    }
    json!({
        "requests_seen": app.seen_count.load(Ordering::SeqCst),
        "rate_limited": app.limiter.as_ref().map_or(0, |l| l.limited()),
        "faults_injected": app.faults.injected(),
        "answers": counts.all,
        "effects": {
            "payment_intent_created": summary.payment_intents,
            "charge": summary.charges,
            "refund_created": summary.refunds,
        },
        "duplicates": summary.duplicates.len(),
        "orders": orders,
    })
}

fn effect_name(kind: EffectKind) -> &'static str {
    match kind {
        EffectKind::PaymentIntentCreated => "payment_intent_created",
        EffectKind::Charge => "charge",
        EffectKind::RefundCreated => "refund_created",
    }
}
