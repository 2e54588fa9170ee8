// stripe-node, unchanged but for its host, driven through payguard by tests/sdk.rs.
//
//   node sdk.mjs <port> flow <maxNetworkRetries> <orders> <order-prefix>
//     For each order: create a payment intent, confirm it, read it back, refund it. Prints one
//     JSON line per order: the ids, or the error that stopped it.
//   node sdk.mjs <port> error <call>
//     Makes one call (with retries off) that payguard answers with its own error, and prints
//     the exception the SDK raised: `create` creates a payment intent; `in_use` sends two
//     identical creates under one key, the second while the first is in flight.
import Stripe from 'stripe';

const [port, mode, ...rest] = process.argv.slice(2);

function client(maxNetworkRetries) {
  return new Stripe('sk_test_payguard_sdk_node', {
    host: '127.0.0.1',
    port: Number(port),
    protocol: 'http',
    maxNetworkRetries,
    // A hung run should fail the test, not wait out the SDK's default 80 s.
    timeout: 30000,
  });
}

function describe(err) {
  return {
    ok: false,
    class: err.constructor.name,
    type: err.type,
    status: err.statusCode ?? null,
    code: err.code ?? null,
    payguard_error: err.headers?.['payguard-error'] ?? null,
  };
}

async function flow(retries, orders, prefix) {
  const stripe = client(Number(retries));
  for (let i = 0; i < Number(orders); i++) {
    const order = `${prefix}-${i}`;
    try {
      const created = await stripe.paymentIntents.create({
        amount: 1000 + i,
        currency: 'usd',
        metadata: { order_id: order },
      });
      const confirmed = await stripe.paymentIntents.confirm(created.id);
      const read = await stripe.paymentIntents.retrieve(created.id);
      const refund = await stripe.refunds.create({ payment_intent: created.id });
      console.log(JSON.stringify({
        ok: true, order, intent: created.id, confirmed: confirmed.status, read: read.status,
        refund: refund.id, refunded_intent: refund.payment_intent,
      }));
    } catch (err) {
      console.log(JSON.stringify({ order, ...describe(err) }));
    }
  }
}

async function error(call) {
  const stripe = client(0);
  const params = { amount: 2000, currency: 'usd', metadata: { order_id: `err-${call}` } };
  try {
    if (call === 'in_use') {
      const options = { idempotencyKey: 'sdk-node-in-use' };
      const first = stripe.paymentIntents.create(params, options);
      await new Promise((resolve) => setTimeout(resolve, 300));
      try {
        await stripe.paymentIntents.create(params, options);
      } finally {
        await first.catch(() => {});
      }
    } else {
      await stripe.paymentIntents.create(params);
    }
    console.log(JSON.stringify({ ok: true }));
  } catch (err) {
    console.log(JSON.stringify(describe(err)));
  }
}

if (mode === 'flow') {
  await flow(...rest);
} else if (mode === 'error') {
  await error(...rest);
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
// The SDK's idle keep-alive sockets carry its request timeout and would hold the process open
// until it fires (30 s here). Everything is printed (stdout to a pipe is synchronous on Linux).
process.exit(0);
