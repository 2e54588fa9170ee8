"""What the Python clients of bench/scenarios share: their command line, the pool of W workers
pulling order numbers, optional pacing, and the JSON they print.

Each client module defines `make_worker(args) -> callable(order_id) -> Outcome` (one per worker
thread, so each worker has its own SDK client or connection and attempt counter) and calls
`main(name, make_worker, version)`. The output (to --out) is one JSON document:

    {"client": ..., "versions": {...}, "wall_s": ...,
     "orders": [{"id", "ok", "error", "status", "payguard_error", "attempts", "start", "end"}]}

`arrival`, `start` and `end` are Unix times in seconds (the harness compares them with the
times it started and ended an outage): with --rate, an order arrives on schedule and starts when
a worker is free; without, it arrives when it starts; `attempts` is the HTTP requests the client itself sent for the
order (its own retries included), `error` a short description of the failure it saw.
"""

import argparse
import json
import sys
import threading
import time


class Outcome:
    __slots__ = ("ok", "error", "status", "payguard_error", "attempts")

    def __init__(self, ok, error=None, status=None, payguard_error=None, attempts=None):
        self.ok = ok
        self.error = error
        self.status = status
        self.payguard_error = payguard_error
        self.attempts = attempts


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="http://127.0.0.1:PORT (the double or payguard)")
    p.add_argument("--orders", type=int, required=True)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--retries", type=int, default=0, help="the SDK's max_network_retries")
    p.add_argument("--op", choices=["create", "refund"], default="create")
    p.add_argument("--payment-intent", default="", help="the intent every refund is made against")
    p.add_argument("--rate", type=float, default=0.0, help="orders started per second; 0: no pacing")
    p.add_argument("--until", type=float, default=0.0, help="start no order after this Unix time")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.op == "refund" and not args.payment_intent:
        p.error("--op refund needs --payment-intent")
    return args


def params(args, order_id):
    """The order's parameters: a confirmed payment intent, or a one-cent refund of the shared one."""
    if args.op == "refund":
        return {"payment_intent": args.payment_intent, "amount": 1, "metadata": {"order_id": order_id}}
    return {"amount": 1999, "currency": "usd", "confirm": "true", "metadata": {"order_id": order_id}}


def succeeded(obj):
    return obj is not None and obj.get("status") == "succeeded"


def main(name, make_worker, versions):
    args = parse_args()
    results = [None] * args.orders
    taken = [0]
    lock = threading.Lock()
    t0 = time.time()

    def worker():
        one = make_worker(args)
        while True:
            with lock:
                i = taken[0]
                taken[0] += 1
            if i >= args.orders:
                return
            arrival = None
            if args.rate > 0:
                # Order i arrives at t0 + i/rate: a steady flow of orders, as a shop has,
                # instead of as many as the workers can push. It waits for a free worker.
                arrival = t0 + i / args.rate
                wait = arrival - time.time()
                if wait > 0:
                    time.sleep(wait)
            if args.until and time.time() >= args.until:
                return
            start = time.time()
            try:
                out = one(f"order-{i}")
            except Exception as err:  # a bug in the client, not an answer: keep it visible
                out = Outcome(False, error=f"client exception {type(err).__name__}: {err}")
            end = time.time()
            results[i] = {
                "id": f"order-{i}",
                "ok": out.ok,
                "error": out.error,
                "status": out.status,
                "payguard_error": out.payguard_error,
                "attempts": out.attempts,
                "arrival": start if arrival is None else arrival,
                "start": start,
                "end": end,
            }

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = {
        "client": name,
        "versions": dict(versions, python=sys.version.split()[0]),
        "wall_s": time.time() - t0,
        "orders": [r for r in results if r is not None],
    }
    with open(args.out, "w") as f:
        json.dump(doc, f)
