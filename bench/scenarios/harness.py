#!/usr/bin/env python3
"""bench/scenarios: real Stripe SDK clients against the provider double, straight and through
payguard with its shipped config, under five fault scenarios. run.sh installs, builds and
calls this; see run.sh for what each scenario is and how long it takes.

For every scenario and client this runs the client twice, each time against a fresh
`payguard-provider` (and, the second time, a fresh `payguard`): straight to the double, then
through payguard. It reads what happened from the double itself (`GET /_double/ledger`: the
answers it gave per `metadata[order_id]` and the ledger of effects), what the client saw from
the client's JSON, and what payguard refused from its `/metrics`.
"""

import argparse
import datetime
import difflib
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = sys.executable

CLIENTS = {
    "py-r0": ("stripe-python, retries 0", [PY, f"{HERE}/clients/sdk_python.py", "--retries", "0"]),
    "py-r2": ("stripe-python, retries 2", [PY, f"{HERE}/clients/sdk_python.py", "--retries", "2"]),
    "node-r0": ("stripe-node, retries 0", ["node", f"{HERE}/node/run.mjs", "--retries", "0"]),
    "node-r2": ("stripe-node, retries 2", ["node", f"{HERE}/node/run.mjs", "--retries", "2"]),
    "article": ("article loop (fresh key/attempt)", [PY, f"{HERE}/clients/article.py"]),
}

# The double's flags per scenario; `--rate-limit 0` turns off its limiter (on by default in the
# binary, 10/s burst 10, which only `cap` keeps).
SCENARIOS = {
    "mix": {
        "title": "mix: 30% of provider calls fail (reset before, reset after, 500, 503, 429 rate_limit with Retry-After: 1, equal shares), no provider rate cap",
        "orders": 1000,
        "workers": 4,
        "double": ["--rate-limit", "0", "--fail-rate", "0.3", "--fault-mix", "transient-retry-after"],
    },
    "cap": {
        "title": "cap: the provider allows 10 requests/s (burst 10) and 429s the rest; no faults",
        "orders": 300,
        "workers": 16,
        "double": ["--rate-limit", "10", "--burst", "10"],
    },
    "outage": {
        "title": "outage: normal, then every provider call answered 503 for a while, then normal again; orders paced",
        "workers": 4,
        "double": ["--rate-limit", "0"],
        "timed": True,
    },
    "lock": {
        "title": "lock: every order is a 1-cent refund of one shared payment intent, and 30% of the calls naming it get 429 lock_timeout",
        "orders": 300,
        "workers": 4,
        "double": ["--rate-limit", "0"],
        "op": "refund",
    },
    "slow": {
        "title": "slow: every provider call takes 2 s; no faults",
        "orders": 80,
        "workers": 8,
        "double": ["--rate-limit", "0", "--latency", "2s"],
    },
}

PATHS = ("direct", "payguard")


def log(msg):
    print(f"[scenarios {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Processes:
    """Every child started, so that an interrupted run leaves none behind."""

    def __init__(self):
        self.live = []

    def start(self, cmd, logfile):
        out = open(logfile, "wb")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.live.append(proc)
        return proc

    def stop(self, proc, grace=10.0):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.live:
            self.live.remove(proc)

    def stop_all(self):
        for proc in list(self.live):
            self.stop(proc, grace=2.0)


PROCS = Processes()


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, proc, name, logfile, seconds=10.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited during start-up:\n{tail(logfile)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {seconds} s:\n{tail(logfile)}")


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def http(method, url, form=None, timeout=10.0):
    data = None if form is None else urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if form is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode()


def ledger(base):
    return json.loads(http("GET", f"{base}/_double/ledger"))


def control(base, **form):
    return json.loads(http("POST", f"{base}/_double/faults", form))


# --- payguard's config: the shipped file, three values changed ------------------------------


def payguard_config(shipped, upstream, proxy_port, admin_port):
    """config.toml with `[upstream] url`, `[listen] proxy` and `[listen] admin` changed, by a
    textual substitution of those three lines and nothing else. The embedded store's `path` is
    left as shipped: it is relative to the config file, which is written into a fresh temporary
    directory for each run, so no two runs share a store."""
    out, section, changed = [], None, []
    for line in shipped.splitlines(keepends=True):
        header = re.match(r"\s*\[\[?([^\]]+)\]\]?\s*$", line)
        if header:
            section = header.group(1).strip()
        key = re.match(r"(\s*)(url|proxy|admin)(\s*=\s*)\"([^\"]*)\"(.*)$", line, re.S)
        if key and (section, key.group(2)) in (("upstream", "url"), ("listen", "proxy"), ("listen", "admin")):
            indent, name, eq, value, rest = key.groups()
            if name == "url":
                value = upstream
            else:
                host = value.rsplit(":", 1)[0]
                value = f"{host}:{proxy_port if name == 'proxy' else admin_port}"
            line = f'{indent}{name}{eq}"{value}"{rest}'
            changed.append(name)
        out.append(line)
    if sorted(changed) != ["admin", "proxy", "url"]:
        raise RuntimeError(f"config.toml: expected to change url, proxy and admin once each, changed {changed}")
    return "".join(out)


def config_diff(shipped, written):
    return "".join(
        difflib.unified_diff(
            shipped.splitlines(keepends=True),
            written.splitlines(keepends=True),
            "config.toml",
            "config.toml as run",
            n=0,
        )
    )


def metrics(admin_port):
    """Prometheus text as {(name, frozenset(labels)): value}."""
    text = http("GET", f"http://127.0.0.1:{admin_port}/metrics")
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        try:
            series[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return series


def metric_sum(series, name, **match):
    return sum(
        v for (n, labels), v in series.items()
        if n == name and all((k, want) in labels for k, want in match.items())
    )


def payguard_counts(series):
    by_payguard = Counter()
    for (n, labels), v in series.items():
        if n == "payguard_requests_total" and ("origin", "payguard") in labels:
            by_payguard[dict(labels).get("status_class", "?")] += int(v)
    return {
        "requests": int(metric_sum(series, "payguard_requests_total")),
        "answered_by_payguard": dict(by_payguard),
        "limiter_rejected": int(metric_sum(series, "payguard_ratelimit_rejected_total")),
        "breaker_refused": int(metric_sum(series, "payguard_breaker_refused_total")),
        "retries": int(metric_sum(series, "payguard_retries_total")),
        "retries_refused": {
            reason: int(metric_sum(series, "payguard_retries_refused_total", reason=reason))
            for reason in ("budget", "deadline")
        },
        # payguard_upstream_attempts_total counts the attempts its limiter or breaker refused
        # too (outcome="refused_locally"): those never reached the provider.
        "upstream_attempts_sent": int(
            metric_sum(series, "payguard_upstream_attempts_total")
            - metric_sum(series, "payguard_upstream_attempts_total", outcome="refused_locally")
        ),
        "attempts_refused_locally": int(
            metric_sum(series, "payguard_upstream_attempts_total", outcome="refused_locally")
        ),
        "effective_rate_at_end": metric_sum(series, "payguard_ratelimit_effective_rate", limiter="upstream"),
    }


# --- one run -------------------------------------------------------------------------------


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def run_one(opts, name, spec, client, path, work):
    label, cmd = CLIENTS[client]
    tmp = tempfile.mkdtemp(prefix=f"{name}-{client}-{path}-", dir=work)
    dport, pport, aport = free_ports(3)
    double_base = f"http://127.0.0.1:{dport}"
    dlog = f"{tmp}/double.log"
    double = PROCS.start(
        [opts.provider, "--listen", f"127.0.0.1:{dport}", "--seed", str(opts.seed)] + spec["double"], dlog
    )
    wait_port(dport, double, "payguard-provider", dlog)
    extra = []
    op = spec.get("op", "create")
    effect = "refund_created" if op == "refund" else "charge"
    if op == "refund":
        # The contended object: one succeeded intent, refunded a cent per order. Created
        # straight at the double before anything is counted (the baseline below).
        shared = json.loads(
            http_key(double_base, "/v1/payment_intents",
                     {"amount": 10_000_000, "currency": "usd", "confirm": "true", "metadata[order_id]": "setup"})
        )["id"]
        # Stripe answers lock_timeout when a request cannot take the lock of an object others
        # hold; concurrent refunds of one charge are the classic case. The double serves
        # requests too quickly for real lock waits, so a share of the calls naming the intent
        # is scripted to time out (crates/payguard-double/src/faults.rs, Contention).
        control(double_base, lock_object=shared, lock_rate=str(opts.lock_rate), lock_seed=str(opts.seed))
        extra += ["--op", "refund", "--payment-intent", shared]
    pg = None
    base = double_base
    written = None
    if path == "payguard":
        written = payguard_config(opts.shipped_config, double_base, pport, aport)
        cfg = f"{tmp}/config.toml"
        with open(cfg, "w") as f:
            f.write(written)
        plog = f"{tmp}/payguard.log"
        pg = PROCS.start([opts.payguard, "run", "--config", cfg], plog)
        wait_port(pport, pg, "payguard", plog)
        wait_ready(aport, pg, plog)
        base = f"http://127.0.0.1:{pport}"
    before = ledger(double_base)

    orders = spec.get("orders_now", spec.get("orders"))
    timeline = {}
    t0 = time.time()
    if spec.get("timed"):
        normal, outage, after = opts.outage_before, opts.outage_secs, opts.outage_after
        # Every client gets the same orders, arriving on the same schedule; one that falls
        # behind (its workers busy retrying) serves its backlog after the last arrival.
        orders = int((normal + outage + after) * opts.outage_rate)
        extra += ["--rate", str(opts.outage_rate)]
        timer = threading.Thread(
            target=outage_timer, args=(double_base, t0, normal, outage, timeline), daemon=True
        )
        timer.start()
    out = f"{tmp}/client.json"
    clog = f"{tmp}/client.log"
    full = cmd + ["--base", base, "--orders", str(orders), "--workers", str(spec["workers"]), "--out", out] + extra
    with open(clog, "wb") as f:
        proc = subprocess.Popen(full, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        PROCS.live.append(proc)
        try:
            proc.wait(timeout=opts.client_timeout)
        except subprocess.TimeoutExpired:
            PROCS.stop(proc)
            raise RuntimeError(f"{client} ({path}) did not finish within {opts.client_timeout} s")
        PROCS.live.remove(proc)
    if proc.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"{client} ({path}) failed (exit {proc.returncode}):\n{tail(clog)}")
    if spec.get("timed"):
        timer.join(timeout=max(0.0, t0 + opts.outage_before + opts.outage_secs + 5 - time.time()))
    pg_counts = None
    if pg is not None:
        pg_counts = payguard_counts(metrics(aport))
        # Drain: anything payguard still has in flight reaches the double before it is read.
        PROCS.stop(pg, grace=60.0)
    after_ledger = ledger(double_base)
    PROCS.stop(double)
    with open(out) as f:
        doc = json.load(f)
    raw_dir = os.path.join(opts.out_dir, "scenarios")
    os.makedirs(raw_dir, exist_ok=True)
    with open(os.path.join(raw_dir, f"{name}-{client}-{path}.json"), "w") as f:
        json.dump({"client": doc, "ledger": after_ledger, "payguard": pg_counts, "timeline": timeline}, f)
    summary = summarize(doc, before, after_ledger, effect, pg_counts)
    summary.update(client=client, label=label, path=path)
    if name == "cap":
        summary["cap"] = cap_share(doc, before, after_ledger)
    if spec.get("timed"):
        summary["outage"] = outage_figures(doc, before, timeline)
    return summary, written


def http_key(base, path, form):
    req = urllib.request.Request(
        f"{base}{path}", data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={"Authorization": "Bearer sk_test_bench_scenarios",
                 "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()


def wait_ready(admin_port, proc, logfile, seconds=10.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"payguard exited during start-up:\n{tail(logfile)}")
        try:
            http("GET", f"http://127.0.0.1:{admin_port}/readyz", timeout=1.0)
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"payguard was not ready within {seconds} s:\n{tail(logfile)}")


def outage_timer(base, t0, normal, outage, timeline):
    time.sleep(max(0.0, t0 + normal - time.time()))
    timeline["calls_before"] = sum(ledger(base)["answers"].values())
    control(base, rate="1", mix="503")
    timeline["start"] = time.time()
    time.sleep(max(0.0, timeline["start"] + outage - time.time()))
    timeline["calls_at_end"] = sum(ledger(base)["answers"].values())
    control(base, rate="0")
    timeline["end"] = time.time()


def summarize(doc, before, after, effect, pg_counts):
    rows = doc["orders"]
    n = len(rows)
    per_order = after["orders"]
    answers = Counter(after["answers"])
    answers.subtract(Counter(before["answers"]))
    calls = sum(answers.values())
    twice = told_failed = told_unknown = ok_no_effect = effects = 0
    for r in rows:
        count = per_order.get(r["id"], {}).get("effects", {}).get(effect, 0)
        effects += count
        twice += count > 1
        # Told "outcome unknown, retry with the same key" is not told "failed": payguard's
        # resolver settles such orders, and the app must treat them as pending.
        unknown = r.get("payguard_error") == "payguard_outcome_unknown"
        told_failed += count > 0 and not r["ok"] and not unknown
        told_unknown += count > 0 and not r["ok"] and unknown
        ok_no_effect += r["ok"] and count == 0
    # From arrival: with paced orders (outage) the wait for a free worker counts.
    latencies = [(r["end"] - r.get("arrival", r["start"])) * 1000 for r in rows]
    completed = sum(r["ok"] for r in rows)
    client_attempts = [r["attempts"] for r in rows if r.get("attempts") is not None]
    errors = Counter(
        (r["error"] or "?") + (f" [payguard {r['payguard_error']}]" if r.get("payguard_error") else "")
        for r in rows if not r["ok"]
    )
    return {
        "orders": n,
        "completed": completed,
        "completion_pct": 100.0 * completed / n if n else None,
        "charged_twice": twice,
        "charged_told_failed": told_failed,
        "charged_told_unknown": told_unknown,
        "completed_without_effect": ok_no_effect,
        "effects": effects,
        "effect": effect,
        "provider_calls": calls,
        "provider_calls_per_order": calls / n if n else None,
        "client_attempts_per_order": sum(client_attempts) / len(client_attempts) if client_attempts else None,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies) if latencies else None,
        "provider_answers": {k: v for k, v in sorted(answers.items()) if v},
        "provider_429": answers.get("429", 0),
        "provider_429_limiter": after["rate_limited"] - before["rate_limited"],
        # Orders whose final answer was payguard's own (its Payguard-Error header) ...
        "final_payguard_errors": sum(1 for r in rows if r.get("payguard_error")),
        # ... of which a refusal: its 429 (limiter) or 503 (breaker, store), nothing sent.
        "payguard_refusals_seen": sum(
            1 for r in rows if r.get("payguard_error") and r.get("status") in (429, 503)
        ),
        "payguard": pg_counts,
        "errors": dict(errors.most_common(6)),
        "wall_s": doc["wall_s"],
        "versions": doc.get("versions", {}),
    }


def cap_share(doc, before, after):
    rows = doc["orders"]
    window = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    ok = after["answers"].get("200", 0) - before["answers"].get("200", 0)
    # The share of the provider's sustained 10/s the run used. A run of a few seconds is
    # dominated by the bucket's initial burst of 10, so it gets no share.
    per_s = ok / window if window else None
    return {"window_s": window, "provider_200": ok, "provider_200_per_s": per_s,
            "share_of_cap": per_s / 10 if per_s is not None and window >= 5 else None}


def outage_figures(doc, before, timeline):
    rows = doc["orders"]
    start, end = timeline.get("start"), timeline.get("end")
    if start is None or end is None:
        return {"error": "the outage did not start and end during the run"}
    # Requests the app made during the outage (their provider calls are the ones counted), and
    # orders that arrived during it and after it (whenever a worker got to them).
    sent_during = [r for r in rows if start <= r["start"] < end]
    during = [r for r in rows if start <= r["arrival"] < end]
    after_rows = [r for r in rows if r["arrival"] >= end]
    calls = timeline["calls_at_end"] - timeline["calls_before"]
    # Each order's HTTP requests (its client's own retries included): what "app request" means.
    requests = sum(r.get("attempts") or 1 for r in sent_during)
    first_ok = min((r["end"] for r in rows if r["ok"] and r["end"] >= end), default=None)
    return {
        "outage_s": end - start,
        "orders_arrived_during": len(during),
        "completed_arrived_during": sum(r["ok"] for r in during),
        "orders_started_during": len(sent_during),
        "app_requests_during": requests,
        "provider_calls_during": calls,
        "calls_per_order_during": calls / len(sent_during) if sent_during else None,
        "calls_per_app_request_during": calls / requests if requests else None,
        "orders_after": len(after_rows),
        "completed_after": sum(r["ok"] for r in after_rows),
        "first_success_after_s": None if first_ok is None else first_ok - end,
    }


# --- the report ----------------------------------------------------------------------------


def fmt(value, kind):
    if value is None:
        return "–"
    if kind == "pct":
        return f"{value:.1f}%"
    if kind == "f2":
        return f"{value:.2f}"
    if kind == "ms":
        return f"{value / 1000:.1f} s" if value >= 10_000 else f"{value:.0f} ms"
    if kind == "s":
        return f"{value:.1f} s"
    return str(value)


def pair(runs, getter, kind):
    cells = []
    for path in PATHS:
        run = runs.get(path)
        cells.append("–" if run is None else fmt(getter(run), kind))
    return " / ".join(cells)


def refused(run):
    p = run.get("payguard")
    if not p:
        return None
    return f"{run['payguard_refusals_seen']} ({p['limiter_rejected']}+{p['breaker_refused']})"


def table(name, spec, summaries, opts):
    by_client = {}
    for s in summaries:
        by_client.setdefault(s["client"], {})[s["path"]] = s
    twice = "refunded twice" if spec.get("op") == "refund" else "charged twice"
    told = "refunded, told failed" if spec.get("op") == "refund" else "charged, told failed"
    cols = [
        ("orders", lambda r: r["orders"], "int"),
        ("completed", lambda r: r["completion_pct"], "pct"),
        (twice, lambda r: r["charged_twice"], "int"),
        (told, lambda r: r["charged_told_failed"], "int"),
        ("charged, told outcome unknown", lambda r: r.get("charged_told_unknown", 0), "int"),
        ("provider calls/order", lambda r: r["provider_calls_per_order"], "f2"),
        ("client attempts/order", lambda r: r["client_attempts_per_order"], "f2"),
        ("p99", lambda r: r["p99_ms"], "ms"),
        ("provider 429s", lambda r: r["provider_429"], "int"),
        ("payguard refused: orders (attempts: limiter+breaker)", refused, "str"),
    ]
    if name == "cap":
        cols.append(("provider 200/s", lambda r: r["cap"]["provider_200_per_s"], "f2"))
        cols.append(("share of the 10/s cap used", lambda r: None if r["cap"]["share_of_cap"] is None else 100 * r["cap"]["share_of_cap"], "pct"))
    if name == "outage":
        cols.append(("provider calls/app request in outage", lambda r: r["outage"].get("calls_per_app_request_during"), "f2"))
        cols.append(("provider calls/order in outage", lambda r: r["outage"].get("calls_per_order_during"), "f2"))
        cols.append(("first success after recovery", lambda r: r["outage"].get("first_success_after_s"), "s"))
        cols.append(("completed, arrived in outage", lambda r: pct(r["outage"].get("completed_arrived_during"), r["outage"].get("orders_arrived_during")), "pct"))
        cols.append(("completed, arrived after", lambda r: pct(r["outage"].get("completed_after"), r["outage"].get("orders_after")), "pct"))
    lines = [f"### {spec['title']}", ""]
    lines.append(settings_line(name, spec, opts))
    lines.append("")
    lines.append("Each cell: straight to the double / through payguard.")
    lines.append("")
    lines.append("| client | " + " | ".join(c[0] for c in cols) + " |")
    lines.append("| --- |" + " --- |" * len(cols))
    for client in opts.clients:
        runs = by_client.get(client)
        if not runs:
            continue
        lines.append(f"| {CLIENTS[client][0]} | " + " | ".join(pair(runs, g, k) for _, g, k in cols) + " |")
    if name == "outage":
        worst = {}
        for path in PATHS:
            values = [s["outage"].get("first_success_after_s") for s in summaries if s["path"] == path]
            worst[path] = None if not values or None in values else max(values)
        lines.append("")
        lines.append(
            "First success after recovery, slowest client: "
            + " / ".join(fmt(worst[p], "s") if worst[p] is not None else "none for some client" for p in PATHS)
        )
    lines.append("")
    lines.append("Final errors the clients saw (most common):")
    lines.append("")
    for client in opts.clients:
        for path in PATHS:
            run = by_client.get(client, {}).get(path)
            if run and run["errors"]:
                errs = ", ".join(f"{k} x{v}" for k, v in run["errors"].items())
                lines.append(f"- {CLIENTS[client][0]}, {path}: {errs}")
    pg = [s for s in summaries if s.get("payguard")]
    if pg:
        lines.append("")
        lines.append("payguard, per client (its /metrics): attempts sent upstream and refused by its limiter or breaker; retries scheduled; retries refused by the budget / the deadline; the limiter's rate at the end (configured 9.8/s):")
        lines.append("")
        for s in pg:
            p = s["payguard"]
            lines.append(
                f"- {s['label']}: {p['upstream_attempts_sent']} attempts sent, {p['attempts_refused_locally']} refused locally; {p['retries']} retries; "
                f"{p['retries_refused']['budget']} / {p['retries_refused']['deadline']} refused; "
                f"{p['effective_rate_at_end']:.1f}/s"
            )
    return "\n".join(lines) + "\n"


def pct(part, whole):
    return None if not whole else 100.0 * part / whole


def settings_line(name, spec, opts):
    if spec.get("timed"):
        total = opts.outage_before + opts.outage_secs + opts.outage_after
        return (f"{int(total * opts.outage_rate)} orders arriving at {opts.outage_rate:g}/s, served by {spec['workers']} workers; "
                f"{opts.outage_before:g} s normal, {opts.outage_secs:g} s of 503 on every call, {opts.outage_after:g} s "
                f"normal; latency counts from arrival; double: `{' '.join(spec['double'])}`")
    extra = f"; lock_timeout share {opts.lock_rate:g}" if spec.get("op") == "refund" else ""
    return f"{spec['orders_now']} orders, {spec['workers']} workers; double: `{' '.join(spec['double'])}`{extra}"


def header(opts, diff, versions):
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml", "config.toml"],
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            commit += " (plus uncommitted changes in src/, Cargo.toml or config.toml)"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        "## bench/scenarios",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
        f"- commit: {commit}",
        f"- machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}",
        f"- command: `{opts.command}`",
        f"- clients: {', '.join(f'{k} {v}' for k, v in sorted(versions.items()))}",
        f"- double seed {opts.seed}; payguard: the shipped config.toml, changed only as below (ports vary per run)",
        "",
        "```diff",
        diff.rstrip("\n") or "(no payguard run)",
        "```",
        "",
        "Columns: completed = orders whose client saw a succeeded object; charged twice = orders with more than",
        "one charge in the double's ledger; charged, told failed = orders charged while the client recorded a",
        "failure other than payguard's outcome unknown; charged, told outcome unknown = orders charged whose",
        "client's last answer was payguard's 502/504 payguard_outcome_unknown (\"retry with the same key\"): the",
        "charge is the resolver settling it, or the attempt that executed; provider calls/order = requests the double answered (or reset) per order, payguard's retries",
        "included; client attempts/order = HTTP requests the client sent itself; provider 429s = 429s the double",
        "sent (injected and its own limiter); payguard refused = orders whose final answer was payguard's own 429",
        "or 503 (Payguard-Error header), and in brackets the attempts its limiter and breaker refused without",
        "sending (payguard_ratelimit_rejected_total + payguard_breaker_refused_total).",
        "",
    ]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenarios", default="mix,cap,outage,lock,slow")
    p.add_argument("--clients", default=",".join(CLIENTS))
    p.add_argument("--orders", type=int, default=0, help="orders per run, all but outage; 0: each scenario's default")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--lock-rate", type=float, default=0.3)
    p.add_argument("--outage-before", type=float, default=5.0)
    p.add_argument("--outage-secs", type=float, default=60.0)
    p.add_argument("--outage-after", type=float, default=15.0)
    p.add_argument("--outage-rate", type=float, default=5.0, help="orders started per second")
    p.add_argument("--client-timeout", type=float, default=3600.0)
    p.add_argument("--provider", required=True)
    p.add_argument("--payguard", required=True)
    p.add_argument("--config", default=os.path.join(ROOT, "config.toml"))
    p.add_argument("--out-dir", default=os.path.join(ROOT, "bench", "out"))
    p.add_argument("--command", default=" ".join(sys.argv))
    opts = p.parse_args()
    opts.scenarios = [s for s in opts.scenarios.split(",") if s]
    opts.clients = [c for c in opts.clients.split(",") if c]
    for s in opts.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s}: {', '.join(SCENARIOS)}")
    for c in opts.clients:
        if c not in CLIENTS:
            p.error(f"unknown client {c}: {', '.join(CLIENTS)}")
    with open(opts.config) as f:
        opts.shipped_config = f.read()
    os.makedirs(opts.out_dir, exist_ok=True)

    def interrupted(signum, _frame):
        raise SystemExit(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    results = {"scenarios": {}}
    diff = ""
    versions = {}
    sections = []
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="payguard-scenarios-") as work:
        try:
            for name in opts.scenarios:
                spec = dict(SCENARIOS[name])
                spec["orders_now"] = opts.orders or spec.get("orders")
                summaries = []
                started = time.time()
                for client in opts.clients:
                    for path in PATHS:
                        t = time.time()
                        summary, written = run_one(opts, name, spec, client, path, work)
                        if written and not diff:
                            diff = config_diff(opts.shipped_config, written)
                        versions.update(summary.pop("versions"))
                        summaries.append(summary)
                        log(f"{name} {client} {path}: {summary['completed']}/{summary['orders']} completed, "
                            f"{summary['charged_twice']} twice, {summary['charged_told_failed']} told failed, "
                            f"{summary['provider_calls_per_order']:.2f} calls/order ({time.time() - t:.0f} s)")
                results["scenarios"][name] = {
                    "title": spec["title"],
                    "settings": {k: v for k, v in spec.items() if k != "title"},
                    "seconds": time.time() - started,
                    "runs": summaries,
                }
                sections.append(table(name, spec, summaries, opts))
                log(f"{name} took {time.time() - started:.0f} s")
        finally:
            PROCS.stop_all()
    doc_head = header(opts, diff, versions)
    report = doc_head + "\n" + "\n".join(sections)
    results.update(
        command=opts.command,
        config_diff=diff,
        versions=versions,
        seconds=time.time() - began,
        header=doc_head,
    )
    with open(os.path.join(opts.out_dir, "scenarios.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(opts.out_dir, "scenarios.md"), "w") as f:
        f.write(report)
    print(report)
    log(f"all done in {time.time() - began:.0f} s: {opts.out_dir}/scenarios.json, {opts.out_dir}/scenarios.md")


if __name__ == "__main__":
    main()
