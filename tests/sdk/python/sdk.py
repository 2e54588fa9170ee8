"""stripe-python (PyPI, its `StripeClient` API), unchanged but for its base address, driven
through payguard by tests/sdk.rs. Modes and output: ../driver.py. Runs against whichever
version is installed; tests/run.sh pins it.
"""

import os
import sys

import stripe

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import driver  # noqa: E402


class Api:
    name = "python"
    error = stripe.StripeError

    def __init__(self, port, retries):
        self.v1 = stripe.StripeClient(
            "sk_test_payguard_sdk_python",
            base_addresses={"api": f"http://127.0.0.1:{port}"},
            max_network_retries=retries,
        ).v1

    def create(self, params, key=None):
        if key is None:
            return self.v1.payment_intents.create(params=params)
        return self.v1.payment_intents.create(params=params, options={"idempotency_key": key})

    def confirm(self, intent):
        return self.v1.payment_intents.confirm(intent)

    def retrieve(self, intent):
        return self.v1.payment_intents.retrieve(intent)

    def refund(self, intent):
        return self.v1.refunds.create(params={"payment_intent": intent})

    @staticmethod
    def code(err):
        error = getattr(err, "error", None)
        return err.code or (error.code if error is not None else None)


if __name__ == "__main__":
    driver.main(Api)
