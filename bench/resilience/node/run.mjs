// The `stripe-node` strategy of bench/resilience: the official SDK, unchanged apart from its base
// URL, creating payment intents against the provider double. Spawned by bench/resilience/main.rs
// with the double's port; prints one JSON document to stdout and nothing else there.
//
//   node run.mjs --port 12111 --orders 1000 --concurrency 32 [--max-network-retries 2]
//
// Each order is `paymentIntents.create({amount: 1999, currency: 'usd', confirm: true,
// metadata: {order_id: 'order-<i>'}})`. The SDK chooses its own idempotency key (one per call,
// reused on its retries) and its own retry delays (0.5 s start, 5 s cap, not scalable). The
// number of HTTP attempts per order is not visible here; main.rs counts what the double saw.

import { performance } from 'node:perf_hooks';
import Stripe from 'stripe';

function parseArgs(argv) {
  const opts = { port: 0, orders: 0, concurrency: 1, maxNetworkRetries: 2 };
  const names = {
    '--port': 'port',
    '--orders': 'orders',
    '--concurrency': 'concurrency',
    '--max-network-retries': 'maxNetworkRetries',
  };
  for (let i = 2; i < argv.length; i += 2) {
    const key = names[argv[i]];
    const value = Number(argv[i + 1]);
    if (!key || !Number.isInteger(value) || value < 0) {
      throw new Error(`bad argument ${argv[i]} ${argv[i + 1]}`);
    }
    opts[key] = value;
  }
  if (opts.port < 1 || opts.port > 65535) throw new Error('--port is required');
  if (opts.orders < 1) throw new Error('--orders must be at least 1');
  if (opts.concurrency < 1) throw new Error('--concurrency must be at least 1');
  return opts;
}

/// What went wrong, in a few words: the HTTP status and Stripe error code, or the network error.
function describe(err) {
  if (err && typeof err.statusCode === 'number') {
    return `${err.statusCode} ${err.code ?? err.type ?? 'error'}`;
  }
  const cause = err?.detail?.code ?? err?.code ?? err?.type ?? 'unknown';
  return `network ${cause}`;
}

async function main() {
  const opts = parseArgs(process.argv);
  const version = Stripe.PACKAGE_VERSION;
  const stripe = new Stripe('sk_test_bench', {
    host: '127.0.0.1',
    port: opts.port,
    protocol: 'http',
    maxNetworkRetries: opts.maxNetworkRetries,
  });

  const results = new Array(opts.orders);
  let next = 0;
  // C workers pull order numbers from a shared counter: at most C orders in flight, and each
  // worker's loop ends when the counter passes the order count.
  async function worker() {
    while (next < opts.orders) {
      const i = next++;
      const started = performance.now();
      let ok = false;
      let outcome = '200';
      try {
        const intent = await stripe.paymentIntents.create({
          amount: 1999,
          currency: 'usd',
          confirm: true,
          metadata: { order_id: `order-${i}` },
        });
        ok = intent.status === 'succeeded';
        if (!ok) outcome = `200 status=${intent.status}`;
      } catch (err) {
        outcome = describe(err);
      }
      results[i] = { ok, ms: performance.now() - started, outcome };
    }
  }
  const began = performance.now();
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  const wallMs = performance.now() - began;
  process.stdout.write(
    JSON.stringify({
      stripe_version: version,
      node_version: process.version,
      max_network_retries: opts.maxNetworkRetries,
      wall_ms: wallMs,
      orders: results,
    }) + '\n',
    // Idle keep-alive sockets (with the SDK's 80 s timeout armed) would hold the event loop
    // open long after the last order; the work is done once the output is flushed.
    () => process.exit(0),
  );
}

main().catch((err) => {
  console.error(`run.mjs: ${err?.stack ?? err}`);
  process.exit(1);
});
