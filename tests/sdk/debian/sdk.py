"""Debian's python3-stripe (5.0.0, the module-level API of the 5.x line), unchanged but for its
base address, driven through payguard by tests/sdk.rs. Run with Debian's /usr/bin/python3,
which sees the package in /usr/lib/python3/dist-packages. Modes and output: ../driver.py.
"""

import os
import sys

# Debian's package, even when a pip-installed stripe sits earlier on the path (as it does when
# tests/run.sh pip-installs stripe-python into this same interpreter).
DEBIAN = "/usr/lib/python3/dist-packages"
sys.path.insert(0, DEBIAN)
import stripe  # noqa: E402

if not stripe.__file__.startswith(DEBIAN):
    sys.exit(f"expected Debian's python3-stripe, imported {stripe.__file__}")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import driver  # noqa: E402


class Api:
    name = "debian"
    error = stripe.error.StripeError

    def __init__(self, port, retries):
        # The 5.x API is configured module-wide.
        stripe.api_key = "sk_test_payguard_sdk_debian"
        stripe.api_base = f"http://127.0.0.1:{port}"
        stripe.max_network_retries = retries

    def create(self, params, key=None):
        if key is None:
            return stripe.PaymentIntent.create(**params)
        return stripe.PaymentIntent.create(idempotency_key=key, **params)

    def confirm(self, intent):
        return stripe.PaymentIntent.confirm(intent)

    def retrieve(self, intent):
        return stripe.PaymentIntent.retrieve(intent)

    def refund(self, intent):
        return stripe.Refund.create(payment_intent=intent)

    @staticmethod
    def code(err):
        body = err.json_body or {}
        return err.code or body.get("error", {}).get("code")


if __name__ == "__main__":
    driver.main(Api)
