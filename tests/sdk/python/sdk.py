"""stripe-python, unchanged but for its base address, driven through payguard by tests/sdk.rs.

    python3 sdk.py <port> flow <max_network_retries> <orders> <order-prefix>
        For each order: create a payment intent, confirm it, read it back, refund it. Prints
        one JSON line per order: the ids, or the error that stopped it.
    python3 sdk.py <port> error <call>
        Makes one call (with retries off) that payguard answers with its own error, and prints
        the exception the SDK raised: `create` creates a payment intent; `in_use` sends two
        identical creates under one key, the second while the first is in flight.

Runs against the PyPI package (`stripe`), whichever version is installed; tests/run.sh pins it.
"""

import json
import sys
import threading
import time

import stripe


def client(port, retries):
    return stripe.StripeClient(
        "sk_test_payguard_sdk_python",
        base_addresses={"api": f"http://127.0.0.1:{port}"},
        max_network_retries=retries,
    )


def describe(err):
    error = getattr(err, "error", None)
    return {
        "ok": False,
        "class": type(err).__name__,
        "status": err.http_status,
        "code": err.code or (error.code if error is not None else None),
        "payguard_error": (err.headers or {}).get("payguard-error"),
    }


def flow(port, retries, orders, prefix):
    v1 = client(port, int(retries)).v1
    for i in range(int(orders)):
        order = f"{prefix}-{i}"
        try:
            created = v1.payment_intents.create(
                params={"amount": 1000 + i, "currency": "usd", "metadata": {"order_id": order}}
            )
            confirmed = v1.payment_intents.confirm(created.id)
            read = v1.payment_intents.retrieve(created.id)
            refund = v1.refunds.create(params={"payment_intent": created.id})
            line = {
                "ok": True,
                "order": order,
                "intent": created.id,
                "confirmed": confirmed.status,
                "read": read.status,
                "refund": refund.id,
                "refunded_intent": refund.payment_intent,
            }
        except stripe.StripeError as err:
            line = {"order": order, **describe(err)}
        print(json.dumps(line), flush=True)


def error(port, call):
    v1 = client(port, 0).v1
    params = {"amount": 2000, "currency": "usd", "metadata": {"order_id": f"err-{call}"}}
    try:
        if call == "in_use":
            options = {"idempotency_key": "sdk-python-in-use"}
            first = threading.Thread(
                target=lambda: _ignore(lambda: v1.payment_intents.create(params=params, options=options))
            )
            first.start()
            time.sleep(0.3)
            try:
                v1.payment_intents.create(params=params, options=options)
            finally:
                first.join()
        else:
            v1.payment_intents.create(params=params)
        print(json.dumps({"ok": True}))
    except stripe.StripeError as err:
        print(json.dumps(describe(err)))


def _ignore(call):
    try:
        call()
    except stripe.StripeError:
        pass


if __name__ == "__main__":
    port, mode, *rest = sys.argv[1:]
    if mode == "flow":
        flow(port, *rest)
    elif mode == "error":
        error(port, *rest)
    else:
        sys.exit(f"unknown mode {mode}")
