"""The seed article's retry loop, over plain HTTP (http.client, one keep-alive connection per
worker), as its readers wrote it: `executeWithRetry` with maxAttempts = 5 and baseDelay = 1 s,
so up to 5 attempts (4 retries) waiting min(1 s * 2^(attempt-1) + random(0..1 s), 30 s) between
them; it retries network errors, unknown failures, 5xx and 429 (ignoring Retry-After), never
another 4xx. Each attempt makes a **fresh idempotency key**, `order_<id>_<milliseconds>`, as the
article's `refund_${orderId}_${Date.now()}` does: an attempt whose reply was lost after the
provider charged is charged again by the next one. That is the flaw this client is here to show.
"""

import http.client
import json
import os
import random
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MAX_ATTEMPTS = 5
BASE_DELAY_S = 1.0
JITTER_S = 1.0
CAP_S = 30.0
# The Stripe SDKs' default timeout; the article's loop ran around such a client.
TIMEOUT_S = 80.0


def delay(attempt):
    """The article's calculateDelay(attempt)."""
    return min(BASE_DELAY_S * 2 ** (attempt - 1) + random.random() * JITTER_S, CAP_S)


def form(params):
    pairs = []
    for name, value in params.items():
        if isinstance(value, dict):
            pairs += [(f"{name}[{k}]", str(v)) for k, v in value.items()]
        else:
            pairs.append((name, str(value)))
    return urllib.parse.urlencode(pairs)


def make_worker(args):
    url = urllib.parse.urlsplit(args.base)
    path = "/v1/refunds" if args.op == "refund" else "/v1/payment_intents"
    conn = [None]

    def attempt(body, key):
        """(status, headers, json or None), or None for a network error."""
        try:
            if conn[0] is None:
                conn[0] = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT_S)
            conn[0].request(
                "POST",
                path,
                body=body,
                headers={
                    "Authorization": "Bearer sk_test_bench_scenarios",
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Idempotency-Key": key,
                },
            )
            response = conn[0].getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            if conn[0] is not None:
                conn[0].close()
            conn[0] = None
            return None
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return response.status, response.headers, parsed

    def one(order_id):
        body = form(common.params(args, order_id))
        last = None
        for n in range(1, MAX_ATTEMPTS + 1):
            # A fresh key per attempt: the flaw being measured.
            key = f"order_{order_id}_{int(time.time() * 1000)}"
            last = attempt(body, key)
            if last is not None and last[0] == 200:
                ok = common.succeeded(last[2])
                return common.Outcome(ok, None if ok else "200 not succeeded", 200, None, n)
            retryable = last is None or last[0] >= 500 or last[0] == 429
            if not retryable or n == MAX_ATTEMPTS:
                break
            time.sleep(delay(n))
        if last is None:
            return common.Outcome(False, "network error", None, None, n)
        status, headers, parsed = last
        error = (parsed or {}).get("error") or {}
        code = error.get("code") or error.get("type") or "error"
        return common.Outcome(False, f"{status} {code}", status, headers.get("payguard-error"), n)

    return one


if __name__ == "__main__":
    common.main("article-loop", make_worker, {})
