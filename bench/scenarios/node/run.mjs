// stripe-node (npm `stripe`, pinned by package-lock.json) as a shop uses it, for bench/scenarios:
// one Stripe instance per worker, unchanged but for its host, port, protocol and
// `maxNetworkRetries`. The SDK chooses its idempotency key (one per call, reused on retries) and
// its delays (0.5 s start, 5 s cap, jittered); it retries connection errors, 409 and 5xx, and an
// ECONNRESET/EPIPE once even with retries off, never a 429 without `Stripe-Should-Retry`.
// Attempts are counted with the SDK's own `request` event, emitted for every HTTP request.
//
//   node run.mjs --base http://127.0.0.1:PORT --orders N --workers W --retries R --out FILE
//                [--op create|refund --payment-intent pi_...] [--rate PER_S] [--until UNIX_S]
//
// Writes the same JSON document as ../clients/common.py.

import { writeFileSync } from 'node:fs';
import Stripe from 'stripe';

function parseArgs(argv) {
  const opts = {
    base: '', orders: 0, workers: 4, retries: 0, op: 'create', paymentIntent: '', rate: 0,
    until: 0, out: '',
  };
  const names = {
    '--base': 'base', '--orders': 'orders', '--workers': 'workers', '--retries': 'retries',
    '--op': 'op', '--payment-intent': 'paymentIntent', '--rate': 'rate', '--until': 'until',
    '--out': 'out',
  };
  for (let i = 2; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    opts[key] = typeof opts[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!opts.base || !opts.out || !(opts.orders >= 1)) throw new Error('--base, --orders, --out');
  if (opts.op === 'refund' && !opts.paymentIntent) throw new Error('refund needs --payment-intent');
  return opts;
}

function params(opts, orderId) {
  if (opts.op === 'refund') {
    return { payment_intent: opts.paymentIntent, amount: 1, metadata: { order_id: orderId } };
  }
  return { amount: 1999, currency: 'usd', confirm: true, metadata: { order_id: orderId } };
}

/// The failure in a few words: the HTTP status and Stripe code, or the network error.
function describe(err) {
  if (err && typeof err.statusCode === 'number') {
    return `${err.statusCode} ${err.code ?? err.type ?? 'error'}`;
  }
  return 'network error';
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const opts = parseArgs(process.argv);
  const url = new URL(opts.base);
  const results = new Array(opts.orders).fill(null);
  const t0 = Date.now() / 1000;
  let next = 0;

  async function worker() {
    const stripe = new Stripe('sk_test_bench_scenarios', {
      host: url.hostname,
      port: Number(url.port),
      protocol: url.protocol.replace(':', ''),
      maxNetworkRetries: opts.retries,
    });
    let sent = 0;
    stripe.on('request', () => {
      sent += 1;
    });
    while (next < opts.orders) {
      const i = next++;
      let arrival = null;
      if (opts.rate > 0) {
        // Order i arrives at t0 + i/rate, a steady flow of orders, and waits for a free worker.
        arrival = t0 + i / opts.rate;
        const wait = arrival * 1000 - Date.now();
        if (wait > 0) await sleep(wait);
      }
      if (opts.until && Date.now() / 1000 >= opts.until) return;
      const orderId = `order-${i}`;
      sent = 0;
      const start = Date.now() / 1000;
      const row = { id: orderId, ok: false, error: null, status: null, payguard_error: null };
      try {
        const obj = opts.op === 'refund'
          ? await stripe.refunds.create(params(opts, orderId))
          : await stripe.paymentIntents.create(params(opts, orderId));
        row.status = 200;
        row.ok = obj.status === 'succeeded';
        if (!row.ok) row.error = `200 status=${obj.status}`;
      } catch (err) {
        row.error = describe(err);
        row.status = typeof err?.statusCode === 'number' ? err.statusCode : null;
        row.payguard_error = err?.headers?.['payguard-error'] ?? null;
      }
      row.attempts = sent;
      row.arrival = arrival ?? start;
      row.start = start;
      row.end = Date.now() / 1000;
      results[i] = row;
    }
  }

  await Promise.all(Array.from({ length: opts.workers }, worker));
  const doc = {
    client: 'stripe-node',
    versions: { 'stripe-node': Stripe.PACKAGE_VERSION, node: process.version },
    wall_s: Date.now() / 1000 - t0,
    orders: results.filter((r) => r !== null),
  };
  writeFileSync(opts.out, JSON.stringify(doc));
  // Idle keep-alive sockets (with the SDK's 80 s timeout armed) would hold the event loop open.
  process.exit(0);
}

main().catch((err) => {
  console.error(`run.mjs: ${err?.stack ?? err}`);
  process.exit(1);
});
