//! Announcing a finished entry: the one place a resolution is counted and sent to the
//! webhook, whether the request path settled it or the resolver did.

use super::webhook::{Event, Webhook};
use super::{Entry, Id, State};
use crate::metrics::Metrics;

/// Reports an entry that just finished: counted by outcome, and sent to the webhook.
pub fn finished(metrics: &Metrics, webhook: Option<&Webhook>, id: &Id, entry: &Entry) {
    let outcome = match entry.state {
        State::Resolved { .. } => "resolved".to_owned(),
        State::GaveUp { reason } => format!("gave_up_{}", reason.label()),
        _ => return,
    };
    metrics
        .resolver
        .resolutions
        .with_label_values(&[entry.route.as_str(), &outcome])
        .inc();
    if let (Some(webhook), Some(event)) = (webhook, Event::new(id, entry)) {
        webhook.notify(event);
    }
}
