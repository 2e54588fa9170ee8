"""stripe-python (PyPI `stripe`, pinned by run.sh) as a shop uses it: one `StripeClient` per
worker, unchanged but for its base address and `max_network_retries` (--retries). The SDK
chooses its idempotency key (one per call, reused on its retries) and its delays (0.5 s doubling,
capped at 5 s, jittered); it retries connection errors, 409 and 5xx, never a 429 without
`Stripe-Should-Retry: true`.

The only addition is an HTTP client subclass that counts the requests the SDK sends, so the
benchmark knows the attempts the client made itself.
"""

import os
import sys

import stripe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


class CountingClient(stripe.RequestsClient):
    """The SDK's default HTTP client (requests), counting each request it sends."""

    def __init__(self):
        super().__init__()
        self.sent = 0

    def request(self, *args, **kwargs):
        self.sent += 1
        return super().request(*args, **kwargs)


def describe(err):
    """The failure in a few words: status and Stripe code, or the kind of network error."""
    if isinstance(err, stripe.APIConnectionError):
        return "network error"
    status = getattr(err, "http_status", None)
    code = getattr(err, "code", None)
    if code is None and getattr(err, "error", None) is not None:
        code = err.error.code or err.error.type
    return f"{status} {code or type(err).__name__}"


def make_worker(args):
    http = CountingClient()
    client = stripe.StripeClient(
        "sk_test_bench_scenarios",
        base_addresses={"api": args.base},
        max_network_retries=args.retries,
        http_client=http,
    )
    v1 = client.v1

    def one(order_id):
        http.sent = 0
        params = common.params(args, order_id)
        try:
            if args.op == "refund":
                obj = v1.refunds.create(params=params)
            else:
                obj = v1.payment_intents.create(params=params)
        except stripe.StripeError as err:
            headers = err.headers or {}
            return common.Outcome(
                False,
                error=describe(err),
                status=getattr(err, "http_status", None),
                payguard_error=headers.get("payguard-error"),
                attempts=http.sent,
            )
        status = getattr(obj, "status", None)
        ok = status == "succeeded"
        return common.Outcome(
            ok,
            error=None if ok else f"200 status={status}",
            status=200,
            attempts=http.sent,
        )

    return one


if __name__ == "__main__":
    common.main("stripe-python", make_worker, {"stripe-python": stripe.VERSION})
