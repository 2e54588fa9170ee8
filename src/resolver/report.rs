//! The operator's view of the journal: what `GET /unresolved` serves and `payguard
//! unresolved` prints. Never a payload, an API key or a body; the path without its query.

use serde::{Deserialize, Serialize};

use crate::journal::{Entry, Id, State, short_id};

/// Every entry still listed: unresolved ones first, oldest first, then recent outcomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub entries: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub route: String,
    pub method: String,
    pub path: String,
    pub key: String,
    /// `pending`, `in_flight`, `resolved` or `gave_up`.
    pub state: String,
    /// For `resolved`, the provider's status; for `gave_up`, the reason.
    pub outcome: Option<String>,
    pub age_seconds: u64,
    pub attempts: u32,
    pub rounds: u32,
    pub last_error: Option<String>,
    /// Whether payguard re-sends it, or only reports it.
    pub resend: bool,
}

impl Listing {
    pub fn new(entries: &[(Id, Entry)], now: u64) -> Listing {
        let mut rows: Vec<(bool, u64, Row)> = entries
            .iter()
            .map(|(id, e)| {
                // An open entry past its lease is pending: its process is gone.
                let state = match e.unresolved(now) {
                    true => "pending",
                    false => e.state.label(),
                };
                let outcome = match e.state {
                    State::Resolved { status } => Some(status.to_string()),
                    State::GaveUp { reason } => Some(reason.label().to_owned()),
                    _ => None,
                };
                let row = Row {
                    id: short_id(id),
                    route: e.route.clone(),
                    method: e.method.clone(),
                    path: e.target.split('?').next().unwrap_or("/").to_owned(),
                    key: e.key.clone(),
                    state: state.to_owned(),
                    outcome,
                    age_seconds: now.saturating_sub(e.created_ms) / 1000,
                    attempts: e.attempts,
                    rounds: e.rounds,
                    last_error: e.last_error.clone(),
                    resend: e.resend,
                };
                (e.state.finished(), e.created_ms, row)
            })
            .collect();
        rows.sort_by_key(|(finished, created, _)| (*finished, *created));
        Listing {
            entries: rows.into_iter().map(|(_, _, row)| row).collect(),
        }
    }

    /// A plain table for people.
    pub fn table(&self) -> String {
        if self.entries.is_empty() {
            return "no unresolved or recently resolved requests\n".into();
        }
        let header = [
            "ID",
            "ROUTE",
            "STATE",
            "OUTCOME",
            "AGE",
            "ATTEMPTS",
            "KEY",
            "LAST ERROR",
        ];
        let rows: Vec<[String; 8]> = self
            .entries
            .iter()
            .map(|r| {
                [
                    r.id.clone(),
                    r.route.clone(),
                    match r.resend {
                        true => r.state.clone(),
                        false => format!("{} (report only)", r.state),
                    },
                    r.outcome.clone().unwrap_or_else(|| "-".into()),
                    humantime::format_duration(std::time::Duration::from_secs(r.age_seconds))
                        .to_string(),
                    r.attempts.to_string(),
                    r.key.clone(),
                    r.last_error.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = line(header.to_vec());
        for row in &rows {
            out += &line(row.iter().map(String::as_str).collect());
        }
        out
    }
}
