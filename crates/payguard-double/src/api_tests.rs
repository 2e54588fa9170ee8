//! Tests of the API layer's pure parts: routing, parameter validation and fingerprints.

use super::*;

fn params(form: &str) -> Vec<(String, String)> {
    parse_form(form.as_bytes())
}

fn parse(method: Method, path: &str, form: &str) -> Result<Command, ApiError> {
    route(&method, path).expect("a known route")(&params(form))
}

#[test]
fn routes_and_ids() {
    assert!(route(&Method::GET, "/v1/payment_intents").is_none());
    assert!(route(&Method::DELETE, "/v1/refunds/re_1").is_none());
    assert!(route(&Method::GET, "/v1/payment_intents//").is_none());
    assert_eq!(
        parse(Method::POST, "/v1/payment_intents/pi_1/confirm", "").ok(),
        Some(Command::ConfirmIntent("pi_1".into()))
    );
    assert_eq!(
        parse(Method::GET, "/v1/refunds/re_9/", "").ok(),
        Some(Command::RetrieveRefund("re_9".into()))
    );
}

#[test]
fn parameters_are_validated() {
    let status = |form: &str| match parse(Method::POST, "/v1/payment_intents", form) {
        Ok(_) => 200,
        Err(reply) => reply.status.as_u16(),
    };
    assert_eq!(status("amount=100&currency=usd"), 200);
    assert_eq!(status("currency=usd"), 400);
    assert_eq!(status("amount=0&currency=usd"), 400);
    assert_eq!(status("amount=-5&currency=usd"), 400);
    assert_eq!(status("amount=1.5&currency=usd"), 400);
    assert_eq!(status("amount=100"), 400);
    assert_eq!(status("amount=100&currency=dollars"), 400);
    let created = parse(
        Method::POST,
        "/v1/payment_intents",
        "amount=7&currency=USD&confirm=true&metadata[order_id]=o9",
    );
    let Ok(Command::CreateIntent {
        currency,
        confirm,
        metadata,
        ..
    }) = created
    else {
        panic!("valid")
    };
    assert_eq!((currency.as_str(), confirm), ("usd", true));
    assert_eq!(metadata["order_id"], "o9");
    assert!(parse(Method::POST, "/v1/refunds", "amount=5").is_err());
    assert!(parse(Method::POST, "/v1/refunds", "payment_intent=pi_1").is_ok());
}

#[test]
fn fingerprints_ignore_parameter_order_only() {
    let request = |path: &str| SeenRequest {
        method: Method::POST,
        path: path.into(),
        query: None,
        headers: Default::default(),
        body: Default::default(),
        received: std::time::Instant::now(),
    };
    let a = fingerprint(&request("/v1/refunds"), &params("a=1&b=2"));
    assert_eq!(a, fingerprint(&request("/v1/refunds"), &params("b=2&a=1")));
    assert_ne!(a, fingerprint(&request("/v1/refunds"), &params("a=1&b=3")));
    assert_ne!(
        a,
        fingerprint(&request("/v1/payment_intents"), &params("a=1&b=2"))
    );
}
