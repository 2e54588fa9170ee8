//! The Stripe-shaped API, in Stripe's order: authenticate, route, idempotency, validate,
//! execute, save. The configured dialect (`dialect.rs`) picks the key header, the scope, how a
//! duplicate is answered and how errors are spelled; the order is the same under every one.
//!
//! Validation runs after the key is claimed so that a replay or an in-use key wins over a
//! malformed retry, as with Stripe; a validation failure then drops the claim unsaved, so the
//! key stays usable. Anything that fails after validation (a missing object, a refund too
//! large, an injected mid-execution failure) is the endpoint's result and is saved.

use std::collections::BTreeMap;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, StatusCode};

use super::app::{App, Injected, SeenRequest};
use super::dialect::Replay;
use super::form::{api_key, parse_form};
use super::idempotency::{Begin, Claim, Saved};
use super::objects::{Command, Context};
use super::reply::{self, ApiError, Reply, Source};

pub(crate) async fn handle(app: &App, request: &SeenRequest, injected: Injected) -> Reply {
    let dialect = app.provider;
    let key = match authenticate(request) {
        Ok(key) => key,
        Err(unauthorized) => {
            return dialect
                .error(unauthorized)
                .with("www-authenticate", dialect.challenge());
        }
    };
    let scope = dialect.scope(key, request);
    let params = parse_form(&request.body);
    let Some(parse) = route(&request.method, &request.path) else {
        let message = format!(
            "Unrecognized request URL ({}: {}).",
            request.method, request.path
        );
        let unknown = reply::error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            message,
        );
        return dialect.error(unknown);
    };
    // GET is idempotent by definition; providers ignore a key on it, and so does the double.
    let header = dialect.key_header();
    let idempotency_key = match request.header(header) {
        Some(k) if dialect.takes_key(&request.method) && !k.is_empty() => Some(k),
        _ => None,
    };
    let claim = match idempotency_key {
        None => None,
        Some(k) => match claim(app, request, &scope, k, &params) {
            Ok(claim) => Some(claim),
            Err(answer) => return answer.with(header, k),
        },
    };
    if let Some(pause) = injected.stall {
        tokio::time::sleep(pause).await;
    }
    let command = match parse(&params) {
        Ok(command) => command,
        // Dropping the claim here frees the key: validation failures are not saved.
        Err(invalid) => return dialect.error(invalid),
    };
    let result = match injected.fail {
        Some(status) => Err(reply::api_error(status)),
        None => {
            let cx = Context {
                scope: &scope,
                idempotency_key,
                ledger: &app.ledger,
            };
            app.objects.execute(command, &cx)
        }
    };
    let reply = match result {
        Ok(object) => Reply::json(StatusCode::OK, &object),
        Err(failed) => dialect.error(failed),
    };
    if let (Some(claim), Source::Bytes(body)) = (claim, &reply.body) {
        let content_type = reply.header(CONTENT_TYPE.as_str()).cloned();
        let content_type = content_type.unwrap_or(HeaderValue::from_static("application/json"));
        claim.save(reply.status, content_type, body.clone());
    }
    match idempotency_key {
        Some(k) => reply.with(header, k),
        None => reply,
    }
}

/// Claims the key, or answers a duplicate the dialect's way: replay, in use, or mismatch.
fn claim(
    app: &App,
    request: &SeenRequest,
    scope: &str,
    key: &str,
    params: &[(String, String)],
) -> Result<Claim, Reply> {
    let dialect = app.provider;
    if let Some(max) = dialect.max_key_len()
        && key.len() > max
    {
        let message = format!(
            "Keys for idempotent requests can only be {max} characters long and were instead {} characters.",
            key.len()
        );
        let too_long = reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        );
        return Err(dialect.error(too_long));
    }
    match app
        .idempotency
        .begin(scope, key, fingerprint(request, params))
    {
        Begin::Claimed(claim) => Ok(claim),
        Begin::Replay(saved) => Err(match dialect.replay() {
            Replay::Saved(Some(marker)) => saved.into_reply().with(marker, "true"),
            Replay::Saved(None) => saved.into_reply(),
            Replay::Latest => latest(app, scope, &saved).unwrap_or_else(|| saved.into_reply()),
        }),
        Begin::InUse => Err(dialect.error(dialect.in_use())),
        Begin::Mismatch => Err(dialect.error(dialect.mismatch(key))),
    }
}

/// PayPal's "latest status of the previous request": 200 with the current state of the object
/// a successful request made or changed (an intent created under the id and confirmed since is
/// answered confirmed), only read, so nothing executes again. A failed request's latest status
/// is its failure: `None` then answers what was saved.
fn latest(app: &App, scope: &str, saved: &Saved) -> Option<Reply> {
    if !saved.status.is_success() {
        return None;
    }
    let current = app.objects.current(scope, &saved.body)?;
    Some(Reply::json(StatusCode::OK, &current))
}

/// The API key, or a 401.
fn authenticate(request: &SeenRequest) -> Result<String, ApiError> {
    let unauthorized = |message: String| {
        reply::error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            message,
        )
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

type Parser = Box<dyn FnOnce(&[(String, String)]) -> Result<Command, ApiError> + Send>;

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

fn create_intent(params: &[(String, String)]) -> Result<Command, ApiError> {
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

fn create_refund(params: &[(String, String)]) -> Result<Command, ApiError> {
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
fn positive_amount(params: &[(String, String)]) -> Result<Option<u64>, ApiError> {
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

fn missing(name: &str) -> ApiError {
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
