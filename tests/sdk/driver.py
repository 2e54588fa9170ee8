"""The SDK-independent half of the Python SDK scripts (python/sdk.py, debian/sdk.py): what each
mode does and prints. Each script supplies an `Api` adapter for its SDK's calling style and
calls `main(Api)`. Standard library only, so it never decides which `stripe` is imported.

    python3 sdk.py <port> flow <max_network_retries> <orders> <order-prefix>
        For each order: create a payment intent, confirm it, read it back, refund it. Prints
        one JSON line per order: the ids, or the error that stopped it.
    python3 sdk.py <port> orders <max_network_retries> <orders> <order-prefix> <workers>
        Payment-intent orders, each created and confirmed in one call, from `workers` threads
        at once. Prints one JSON line per order: its intent, or the error that stopped it.
    python3 sdk.py <port> error <call>
        Makes one call (with retries off) that payguard answers with its own error, and prints
        the exception the SDK raised: `create` creates a payment intent; `in_use` sends two
        identical creates under one key, the second while the first is in flight.
"""

import json
import sys
import threading
import time


def describe(api, err):
    return {
        "ok": False,
        "class": type(err).__name__,
        "status": err.http_status,
        "code": api.code(err),
        "payguard_error": (err.headers or {}).get("payguard-error"),
    }


def flow(api, orders, prefix):
    for i in range(int(orders)):
        order = f"{prefix}-{i}"
        try:
            created = api.create({"amount": 1000 + i, "currency": "usd", "metadata": {"order_id": order}})
            confirmed = api.confirm(created.id)
            read = api.retrieve(created.id)
            refund = api.refund(created.id)
            line = {
                "ok": True,
                "order": order,
                "intent": created.id,
                "confirmed": confirmed.status,
                "read": read.status,
                "refund": refund.id,
                "refunded_intent": refund.payment_intent,
            }
        except api.error as err:
            line = {"order": order, **describe(api, err)}
        print(json.dumps(line), flush=True)


def many_orders(api, count, prefix, workers):
    lock = threading.Lock()
    todo = iter(range(int(count)))

    def work():
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            order = f"{prefix}-{i}"
            params = {
                "amount": 1000 + i,
                "currency": "usd",
                "confirm": "true",
                "metadata": {"order_id": order},
            }
            try:
                line = {"ok": True, "order": order, "intent": api.create(params).id}
            except api.error as err:
                line = {"order": order, **describe(api, err)}
            with lock:
                print(json.dumps(line), flush=True)

    threads = [threading.Thread(target=work) for _ in range(int(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def error(api, call):
    params = {"amount": 2000, "currency": "usd", "metadata": {"order_id": f"err-{call}"}}
    try:
        if call == "in_use":
            key = f"sdk-{api.name}-in-use"
            first = threading.Thread(target=_ignore, args=(api, params, key))
            first.start()
            time.sleep(0.3)
            try:
                api.create(params, key)
            finally:
                first.join()
        else:
            api.create(params)
        print(json.dumps({"ok": True}))
    except api.error as err:
        print(json.dumps(describe(api, err)))


def _ignore(api, params, key):
    try:
        api.create(params, key)
    except api.error:
        pass


def main(make_api):
    port, mode, *rest = sys.argv[1:]
    if mode == "flow":
        retries, count, prefix = rest
        flow(make_api(port, int(retries)), count, prefix)
    elif mode == "orders":
        retries, count, prefix, workers = rest
        many_orders(make_api(port, int(retries)), count, prefix, workers)
    elif mode == "error":
        (call,) = rest
        error(make_api(port, 0), call)
    else:
        sys.exit(f"unknown mode {mode}")
