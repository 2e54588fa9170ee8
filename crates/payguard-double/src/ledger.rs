//! The ledger of side effects: what the provider actually did, in order.
//!
//! Tests prove "charged exactly once" by reading this, not by trusting responses: a reply can be
//! lost (a reset after processing) while its effect stands. Every effect carries the request's
//! idempotency key and the caller's `metadata[order_id]`, so [`Ledger::duplicates`] can find an
//! effect that happened twice for one logical operation even when each had its own key.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// What kind of side effect happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EffectKind {
    /// A payment intent was created.
    PaymentIntentCreated,
    /// Money moved: a payment intent was confirmed and succeeded.
    Charge,
    /// A refund was created.
    RefundCreated,
}

/// One side effect, as recorded when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    /// Position in the ledger, from 1, strictly increasing.
    pub seq: u64,
    pub kind: EffectKind,
    /// The object the effect made or changed: `pi_...` for creations and charges, `re_...` for
    /// refunds.
    pub object_id: String,
    /// For charges and refunds, the payment intent the money belongs to.
    pub payment_intent: Option<String>,
    /// In the currency's smallest unit.
    pub amount: u64,
    pub currency: String,
    /// The API key, plus `/` and the dialect's account header (`Stripe-Account`,
    /// `PayPal-Auth-Assertion`) when one was named. Raw, not hashed: tests compare scopes.
    pub scope: String,
    pub idempotency_key: Option<String>,
    /// `metadata[order_id]` of the request; a charge inherits its payment intent's.
    pub order_id: Option<String>,
}

/// Why a group of effects counts as one logical effect that happened more than once.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DuplicateBy {
    /// The same object got the same effect twice (e.g. one payment intent charged twice).
    Object(String),
    /// Effects of one kind for the same `metadata[order_id]`.
    Order(String),
}

/// Effects that should have happened once but happened `seqs.len()` times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate {
    pub kind: EffectKind,
    pub by: DuplicateBy,
    /// The ledger positions of the repeated effects, in order.
    pub seqs: Vec<u64>,
}

/// A shared, append-only record of side effects. Cloning is cheap; clones see the same ledger.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    // A std Mutex: every critical section is a push or a copy, never held across an await.
    effects: Arc<Mutex<Vec<Effect>>>,
}

impl Ledger {
    /// Appends an effect, assigning its sequence number, and returns that number.
    pub(crate) fn record(&self, mut effect: Effect) -> u64 {
        let mut effects = self.lock();
        effect.seq = effects.len() as u64 + 1;
        let seq = effect.seq;
        effects.push(effect);
        seq
    }

    /// Every effect so far, in order.
    pub fn entries(&self) -> Vec<Effect> {
        self.lock().clone()
    }

    /// How many effects of this kind happened.
    pub fn count(&self, kind: EffectKind) -> usize {
        self.lock().iter().filter(|e| e.kind == kind).count()
    }

    /// The effects made by requests carrying this idempotency key, in any scope.
    pub fn effects_for_key(&self, key: &str) -> Vec<Effect> {
        let effects = self.lock();
        effects
            .iter()
            .filter(|e| e.idempotency_key.as_deref() == Some(key))
            .cloned()
            .collect()
    }

    /// The effects tied to this `metadata[order_id]`.
    pub fn effects_for_order(&self, order_id: &str) -> Vec<Effect> {
        let effects = self.lock();
        effects
            .iter()
            .filter(|e| e.order_id.as_deref() == Some(order_id))
            .cloned()
            .collect()
    }

    /// Logically duplicated effects: the same (kind, object) more than once, or the same
    /// (kind, order id) more than once. Empty means every effect happened at most once.
    ///
    /// Two partial refunds of one order are legitimate in real life; a test that makes them on
    /// purpose should give them different order ids or read [`Ledger::effects_for_order`].
    pub fn duplicates(&self) -> Vec<Duplicate> {
        let mut groups: BTreeMap<(EffectKind, DuplicateBy), Vec<u64>> = BTreeMap::new();
        for effect in self.lock().iter() {
            let by_object = DuplicateBy::Object(effect.object_id.clone());
            groups
                .entry((effect.kind, by_object))
                .or_default()
                .push(effect.seq);
            if let Some(order) = &effect.order_id {
                let by_order = DuplicateBy::Order(order.clone());
                groups
                    .entry((effect.kind, by_order))
                    .or_default()
                    .push(effect.seq);
            }
        }
        groups
            .into_iter()
            .filter(|(_, seqs)| seqs.len() > 1)
            .map(|((kind, by), seqs)| Duplicate { kind, by, seqs })
            .collect()
    }

    /// Counts per kind and the duplicates, for printing.
    pub fn summary(&self) -> LedgerSummary {
        LedgerSummary {
            payment_intents: self.count(EffectKind::PaymentIntentCreated),
            charges: self.count(EffectKind::Charge),
            refunds: self.count(EffectKind::RefundCreated),
            duplicates: self.duplicates(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Effect>> {
        // A panic while holding the lock cannot leave a half-pushed Vec, so poison is harmless.
        self.effects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What [`Ledger::summary`] returns; its `Display` is one line per fact.
#[derive(Clone, Debug)]
pub struct LedgerSummary {
    pub payment_intents: usize,
    pub charges: usize,
    pub refunds: usize,
    pub duplicates: Vec<Duplicate>,
}

impl fmt::Display for LedgerSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "payment intents created: {}", self.payment_intents)?;
        writeln!(f, "charges: {}", self.charges)?;
        writeln!(f, "refunds: {}", self.refunds)?;
        write!(f, "duplicate effects: {}", self.duplicates.len())?;
        for dup in &self.duplicates {
            write!(
                f,
                "\n  {:?} x{} by {:?} (seq {:?})",
                dup.kind,
                dup.seqs.len(),
                dup.by,
                dup.seqs
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effect(kind: EffectKind, object: &str, key: Option<&str>, order: Option<&str>) -> Effect {
        Effect {
            seq: 0,
            kind,
            object_id: object.into(),
            payment_intent: None,
            amount: 100,
            currency: "usd".into(),
            scope: "sk_test_a".into(),
            idempotency_key: key.map(Into::into),
            order_id: order.map(Into::into),
        }
    }

    #[test]
    fn sequences_counts_and_keys() {
        let ledger = Ledger::default();
        let copy = ledger.clone();
        assert_eq!(
            ledger.record(effect(
                EffectKind::PaymentIntentCreated,
                "pi_1",
                Some("k1"),
                None
            )),
            1
        );
        assert_eq!(
            copy.record(effect(EffectKind::Charge, "pi_1", Some("k2"), None)),
            2
        );
        assert_eq!(ledger.count(EffectKind::Charge), 1);
        assert_eq!(ledger.effects_for_key("k2")[0].seq, 2);
        assert!(ledger.duplicates().is_empty());
    }

    #[test]
    fn duplicates_by_object_and_by_order() {
        let ledger = Ledger::default();
        ledger.record(effect(EffectKind::Charge, "pi_1", None, Some("o1")));
        ledger.record(effect(EffectKind::Charge, "pi_1", None, None));
        ledger.record(effect(
            EffectKind::RefundCreated,
            "re_1",
            Some("a"),
            Some("o2"),
        ));
        ledger.record(effect(
            EffectKind::RefundCreated,
            "re_2",
            Some("b"),
            Some("o2"),
        ));
        ledger.record(effect(
            EffectKind::PaymentIntentCreated,
            "pi_2",
            None,
            Some("o2"),
        ));
        let dups = ledger.duplicates();
        assert_eq!(dups.len(), 2, "{dups:?}");
        assert!(dups.contains(&Duplicate {
            kind: EffectKind::Charge,
            by: DuplicateBy::Object("pi_1".into()),
            seqs: vec![1, 2]
        }));
        assert!(dups.contains(&Duplicate {
            kind: EffectKind::RefundCreated,
            by: DuplicateBy::Order("o2".into()),
            seqs: vec![3, 4]
        }));
        assert!(
            ledger
                .summary()
                .to_string()
                .contains("duplicate effects: 2")
        );
    }
}
