//! The Stripe-shaped API, in Stripe's order: authenticate, route, idempotency, validate,
//! execute, save.
//!
//! Validation runs after the key is claimed so that a replay or an in-use key wins over a
//! malformed retry, as with Stripe; a validation failure then drops the claim unsaved, so the
//! key stays usable. Anything that fails after validation (a missing object, a refund too
//! large, an injected mid-execution failure) is the endpoint's result and is saved.

use std::collections::BTreeMap;

use http::{Method, StatusCode};

use super::app::{App, Injected, SeenRequest, key_in_use};
use super::form::{api_key, parse_form};
use super::idempotency::Begin;
use super::objects::{Command, Context};
use super::reply::{self, Reply, Source};

/// Stripe refuses longer keys.
const MAX_KEY_LEN: usize = 255;

pub(crate) async fn handle(app: &App, request: &SeenRequest, injected: Injected) -> Reply {
    let key = match authenticate(request) {
        Ok(key) => key,
        Err(reply) => return reply,
    };
    let scope = match request.header("stripe-account") {
        Some(account) => format!("{key}/{account}"),
        None => key,
    };
    let params = parse_form(&request.body);
    let Some(parse) = route(&request.method, &request.path) else {
        let message = format!(
            "Unrecognized request URL ({}: {}).",
            request.method, request.path
        );
        return reply::error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            &message,
        );
    };
    // GET is idempotent by definition; Stripe ignores a key on it, and so does the double.
    let idempotency_key = match request.header("idempotency-key") {
        Some(k) if request.method == Method::POST && !k.is_empty() => Some(k),
        _ => None,
    };
    let claim = match idempotency_key {
        None => None,
        Some(k) if k.len() > MAX_KEY_LEN => {
            let message = format!(
                "Keys for idempotent requests can only be {MAX_KEY_LEN} characters long and were instead {} characters.",
                k.len()
            );
            return reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &message,
            );
        }
        Some(k) => match app
            .idempotency
            .begin(&scope, k, fingerprint(request, &params))
        {
            Begin::Claimed(claim) => Some(claim),
            Begin::Replay(saved) => {
                let replayed =
                    Reply::new(saved.status, "application/json", Source::Bytes(saved.body));
                return replayed
                    .with("idempotent-replayed", "true")
                    .with("idempotency-key", k);
            }
            Begin::InUse => return key_in_use().with("idempotency-key", k),
            Begin::Mismatch => {
                let message = format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."
                );
                return reply::error(StatusCode::BAD_REQUEST, "idempotency_error", None, &message)
                    .with("idempotency-key", k);
            }
        },
    };
    if let Some(pause) = injected.stall {
        tokio::time::sleep(pause).await;
    }
    let command = match parse(&params) {
        Ok(command) => command,
        // Dropping the claim here frees the key: validation failures are not saved.
        Err(invalid) => return invalid,
    };
    let reply = match injected.fail {
        Some(status) => reply::api_error(status),
        None => {
            let cx = Context {
                scope: &scope,
                idempotency_key,
                ledger: &app.ledger,
            };
            app.objects.execute(command, &cx)
        }
    };
    if let (Some(claim), Source::Bytes(body)) = (claim, &reply.body) {
        claim.save(reply.status, body.clone());
    }
    match idempotency_key {
        Some(k) => reply.with("idempotency-key", k),
        None => reply,
    }
}

/// The API key, or Stripe's 401.
fn authenticate(request: &SeenRequest) -> Result<String, Reply> {
    let unauthorized = |message: String| {
        reply::error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            &message,
        )
        .with("www-authenticate", "Basic realm=\"Stripe\"")
    };
    let Some(key) = api_key(request.header("authorization")) else {
        return Err(unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').".to_owned(),
        ));
    };
    if !(key.starts_with("sk_") || key.starts_with("rk_")) {
        // Like Stripe, show only the end of the key.
        let tail: String = key
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(unauthorized(format!(
            "Invalid API Key provided: ****{tail}"
        )));
    }
    Ok(key)
}

type Parser = Box<dyn FnOnce(&[(String, String)]) -> Result<Command, Reply> + Send>;

/// The endpoint for a method and path, as a parser of its parameters.
fn route(method: &Method, path: &str) -> Option<Parser> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let id = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let parser: Parser = match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "payment_intents"]) => Box::new(create_intent),
        ("POST", ["v1", "payment_intents", pi, "confirm"]) => {
            let pi = id(pi)?;
            Box::new(move |_| Ok(Command::ConfirmIntent(pi)))
        }
        ("GET", ["v1", "payment_intents", pi]) => {
            let pi = id(pi)?;
            Box::new(move |_| Ok(Command::RetrieveIntent(pi)))
        }
        ("POST", ["v1", "refunds"]) => Box::new(create_refund),
        ("GET", ["v1", "refunds", re]) => {
            let re = id(re)?;
            Box::new(move |_| Ok(Command::RetrieveRefund(re)))
        }
        _ => return None,
    };
    Some(parser)
}

fn create_intent(params: &[(String, String)]) -> Result<Command, Reply> {
    let amount = positive_amount(params)?.ok_or_else(|| missing("amount"))?;
    let currency = param(params, "currency").ok_or_else(|| missing("currency"))?;
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
        let message = format!("Invalid currency: {currency}.");
        return Err(reply::invalid_param(
            "currency",
            "parameter_invalid_string",
            message,
        ));
    }
    Ok(Command::CreateIntent {
        amount,
        currency: currency.to_ascii_lowercase(),
        confirm: param(params, "confirm") == Some("true"),
        metadata: metadata(params),
    })
}

fn create_refund(params: &[(String, String)]) -> Result<Command, Reply> {
    let payment_intent =
        param(params, "payment_intent").ok_or_else(|| missing("payment_intent"))?;
    Ok(Command::CreateRefund {
        payment_intent: payment_intent.to_owned(),
        amount: positive_amount(params)?,
        reason: param(params, "reason").map(str::to_owned),
        metadata: metadata(params),
    })
}

/// `amount` when present: an integer of at least 1, in the currency's smallest unit.
fn positive_amount(params: &[(String, String)]) -> Result<Option<u64>, Reply> {
    let Some(raw) = param(params, "amount") else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(amount) if amount > 0 => Ok(Some(amount)),
        Ok(_) => Err(reply::invalid_param(
            "amount",
            "parameter_invalid_integer",
            "This value must be greater than or equal to 1.".into(),
        )),
        Err(_) => Err(reply::invalid_param(
            "amount",
            "parameter_invalid_integer",
            format!("Invalid integer: {raw}"),
        )),
    }
}

/// The last value of a non-empty parameter, as Stripe's form decoding keeps the last.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(n, v)| n == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

fn metadata(params: &[(String, String)]) -> BTreeMap<String, String> {
    let entries = params.iter().filter_map(|(name, value)| {
        let key = name.strip_prefix("metadata[")?.strip_suffix(']')?;
        Some((key.to_owned(), value.clone()))
    });
    entries.collect()
}

fn missing(name: &str) -> Reply {
    reply::invalid_param(
        name,
        "parameter_missing",
        format!("Missing required param: {name}."),
    )
}

/// What must match for a key to be replayed: the endpoint and the parameters, order aside.
fn fingerprint(request: &SeenRequest, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let params: Vec<String> = sorted.iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!("{} {}\n{}", request.method, request.path, params.join("&"))
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
