//! Tests of the provider's state: the payment flow, scopes, refund limits and the effects
//! each step leaves in the ledger.

use super::*;

fn run(objects: &Objects, ledger: &Ledger, scope: &str, command: Command) -> (StatusCode, Value) {
    let cx = Context {
        scope,
        idempotency_key: Some("k"),
        ledger,
    };
    match objects.execute(command, &cx) {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => (error.status, error.stripe_json()),
    }
}

fn order(id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("order_id".to_owned(), id.to_owned())])
}

#[test]
fn create_confirm_refund_in_one_scope() {
    let (objects, ledger) = (Objects::default(), Ledger::default());
    let create = Command::CreateIntent {
        amount: 1000,
        currency: "usd".into(),
        confirm: false,
        metadata: order("o1"),
    };
    let (status, pi) = run(&objects, &ledger, "sk_a", create);
    assert_eq!(
        (status.as_u16(), pi["status"].as_str()),
        (200, Some("requires_confirmation"))
    );
    let id = pi["id"].as_str().unwrap().to_owned();

    let (status, _) = run(
        &objects,
        &ledger,
        "sk_b",
        Command::ConfirmIntent(id.clone()),
    );
    assert_eq!(status, 404, "another scope cannot see the intent");
    let (status, pi) = run(
        &objects,
        &ledger,
        "sk_a",
        Command::ConfirmIntent(id.clone()),
    );
    assert_eq!(
        (status.as_u16(), pi["amount_received"].as_u64()),
        (200, Some(1000))
    );
    let (status, err) = run(
        &objects,
        &ledger,
        "sk_a",
        Command::ConfirmIntent(id.clone()),
    );
    assert_eq!(
        (status.as_u16(), err["error"]["code"].as_str()),
        (400, Some("payment_intent_unexpected_state"))
    );

    let refund = |amount| Command::CreateRefund {
        payment_intent: id.clone(),
        amount,
        reason: None,
        metadata: order("r1"),
    };
    let (status, re) = run(&objects, &ledger, "sk_a", refund(Some(600)));
    assert_eq!(
        (status.as_u16(), re["object"].as_str()),
        (200, Some("refund"))
    );
    let (status, err) = run(&objects, &ledger, "sk_a", refund(Some(500)));
    assert_eq!(
        (status.as_u16(), err["error"]["code"].as_str()),
        (400, Some("amount_too_large"))
    );
    let (status, re) = run(&objects, &ledger, "sk_a", refund(None));
    assert_eq!(
        (status.as_u16(), re["amount"].as_u64()),
        (200, Some(400)),
        "defaults to what is left"
    );
    let (status, err) = run(&objects, &ledger, "sk_a", refund(None));
    assert_eq!(
        (status.as_u16(), err["error"]["code"].as_str()),
        (400, Some("charge_already_refunded"))
    );

    let kinds: Vec<_> = ledger
        .entries()
        .iter()
        .map(|e| (e.kind, e.order_id.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EffectKind::PaymentIntentCreated, Some("o1".into())),
            (EffectKind::Charge, Some("o1".into())),
            (EffectKind::RefundCreated, Some("r1".into())),
            (EffectKind::RefundCreated, Some("r1".into())),
        ]
    );
    // Two refunds under one order reference: the ledger calls that a duplicate.
    assert_eq!(ledger.duplicates().len(), 1);
    let re_id = re["id"].as_str().unwrap().to_owned();
    assert_eq!(
        run(
            &objects,
            &ledger,
            "sk_a",
            Command::RetrieveRefund(re_id.clone())
        )
        .0,
        200
    );
    assert_eq!(
        run(
            &objects,
            &ledger,
            "sk_a/acct_1",
            Command::RetrieveRefund(re_id)
        )
        .0,
        404
    );
}

#[test]
fn confirm_at_creation_and_refusing_an_unpaid_refund() {
    let (objects, ledger) = (Objects::default(), Ledger::default());
    let create = |confirm| Command::CreateIntent {
        amount: 5,
        currency: "eur".into(),
        confirm,
        metadata: BTreeMap::new(),
    };
    let (_, paid) = run(&objects, &ledger, "s", create(true));
    assert_eq!(paid["status"], "succeeded");
    assert!(paid["latest_charge"].as_str().unwrap().starts_with("ch_"));
    let (_, unpaid) = run(&objects, &ledger, "s", create(false));
    let refund = Command::CreateRefund {
        payment_intent: unpaid["id"].as_str().unwrap().into(),
        amount: None,
        reason: None,
        metadata: BTreeMap::new(),
    };
    assert_eq!(run(&objects, &ledger, "s", refund).0, 400);
    assert_eq!(ledger.count(EffectKind::Charge), 1);
    assert_eq!(ledger.effects_for_key("k").len(), 3);
}
