"""Debian's python3-stripe (5.0.0, the module-level API of the 5.x line), unchanged but for its
base address, driven through payguard by tests/sdk.rs. Run with Debian's /usr/bin/python3,
which sees the package in /usr/lib/python3/dist-packages.

    python3 sdk.py <port> flow <max_network_retries> <orders> <order-prefix>
    python3 sdk.py <port> error <call>

Same modes and output as ../python/sdk.py.
"""

import json
import sys
import threading
import time

# Debian's package, even when a pip-installed stripe sits earlier on the path (as it does when
# tests/run.sh pip-installs stripe-python into this same interpreter).
DEBIAN = "/usr/lib/python3/dist-packages"
sys.path.insert(0, DEBIAN)
import stripe  # noqa: E402

if not stripe.__file__.startswith(DEBIAN):
    sys.exit(f"expected Debian's python3-stripe, imported {stripe.__file__}")


def configure(port, retries):
    stripe.api_key = "sk_test_payguard_sdk_debian"
    stripe.api_base = f"http://127.0.0.1:{port}"
    stripe.max_network_retries = int(retries)


def describe(err):
    body = err.json_body or {}
    return {
        "ok": False,
        "class": type(err).__name__,
        "status": err.http_status,
        "code": err.code or body.get("error", {}).get("code"),
        "payguard_error": (err.headers or {}).get("payguard-error"),
    }


def flow(port, retries, orders, prefix):
    configure(port, retries)
    for i in range(int(orders)):
        order = f"{prefix}-{i}"
        try:
            created = stripe.PaymentIntent.create(
                amount=1000 + i, currency="usd", metadata={"order_id": order}
            )
            confirmed = stripe.PaymentIntent.confirm(created.id)
            read = stripe.PaymentIntent.retrieve(created.id)
            refund = stripe.Refund.create(payment_intent=created.id)
            line = {
                "ok": True,
                "order": order,
                "intent": created.id,
                "confirmed": confirmed.status,
                "read": read.status,
                "refund": refund.id,
                "refunded_intent": refund.payment_intent,
            }
        except stripe.error.StripeError as err:
            line = {"order": order, **describe(err)}
        print(json.dumps(line), flush=True)


def error(port, call):
    configure(port, 0)
    params = {"amount": 2000, "currency": "usd", "metadata": {"order_id": f"err-{call}"}}
    try:
        if call == "in_use":
            key = "sdk-debian-in-use"
            first = threading.Thread(target=_ignore, args=(params, key))
            first.start()
            time.sleep(0.3)
            try:
                stripe.PaymentIntent.create(idempotency_key=key, **params)
            finally:
                first.join()
        else:
            stripe.PaymentIntent.create(**params)
        print(json.dumps({"ok": True}))
    except stripe.error.StripeError as err:
        print(json.dumps(describe(err)))


def _ignore(params, key):
    try:
        stripe.PaymentIntent.create(idempotency_key=key, **params)
    except stripe.error.StripeError:
        pass


if __name__ == "__main__":
    port, mode, *rest = sys.argv[1:]
    if mode == "flow":
        flow(port, *rest)
    elif mode == "error":
        error(port, *rest)
    else:
        sys.exit(f"unknown mode {mode}")
