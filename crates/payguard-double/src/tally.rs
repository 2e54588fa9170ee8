//! How each request was answered, in all and per `metadata[order_id]`: what a benchmark needs
//! to count provider calls per order and the provider's 429s while the double runs, without
//! keeping the request log (which long runs turn off).
//!
//! An answer is its status (`"200"`, `"429"`...) or `"reset"` when the connection was reset
//! instead of answered (before or after processing). A truncated body counts under the status
//! it started. The control endpoints (`/_double/faults`, `/_double/ledger`) are never counted.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::form::parse_form;

/// Answers counted by kind, for the whole double or one order.
pub(crate) type Answers = BTreeMap<String, u64>;

#[derive(Default)]
pub(crate) struct Tally {
    // A std Mutex: one short update per request, never held across an await.
    inner: Mutex<Counts>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Counts {
    pub all: Answers,
    pub orders: BTreeMap<String, Answers>,
}

impl Tally {
    /// Counts one answer, under the order the form body names, if it names one.
    pub(crate) fn record(&self, body: &[u8], answer: &str) {
        let order = order_id(body);
        let mut counts = self.lock();
        *counts.all.entry(answer.to_owned()).or_default() += 1;
        if let Some(order) = order {
            let answers = counts.orders.entry(order).or_default();
            *answers.entry(answer.to_owned()).or_default() += 1;
        }
    }

    pub(crate) fn snapshot(&self) -> Counts {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // Poison is harmless: each update is a pair of increments.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The last non-empty `metadata[order_id]` of a form body, as Stripe keeps the last value.
fn order_id(body: &[u8]) -> Option<String> {
    // Skip the parse for the bodies (most, in a benchmark of another kind) that cannot hold one.
    if !body.windows(8).any(|w| w == b"order_id") {
        return None;
    }
    parse_form(body)
        .into_iter()
        .rev()
        .find(|(name, value)| name == "metadata[order_id]" && !value.is_empty())
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_all_and_per_order() {
        let tally = Tally::default();
        tally.record(b"amount=1&metadata[order_id]=o1", "reset");
        tally.record(b"amount=1&metadata%5Border_id%5D=o1", "200");
        tally.record(b"metadata[order_id]=o2&metadata[order_id]=o3", "429");
        tally.record(b"", "200");
        tally.record(b"metadata[order_id]=", "503");
        let counts = tally.snapshot();
        let answers = |pairs: &[(&str, u64)]| -> Answers {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
        };
        assert_eq!(
            counts.all,
            answers(&[("200", 2), ("429", 1), ("503", 1), ("reset", 1)])
        );
        assert_eq!(counts.orders.len(), 2, "{:?}", counts.orders);
        assert_eq!(counts.orders["o1"], answers(&[("200", 1), ("reset", 1)]));
        assert_eq!(
            counts.orders["o3"],
            answers(&[("429", 1)]),
            "the last value wins"
        );
    }
}
