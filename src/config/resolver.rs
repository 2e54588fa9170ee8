//! The `[resolver]` table (how payguard settles requests left without a definitive answer)
//! and the `[route.resolver]` override, which turns re-sending off for one route.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use super::webhook::{RawWebhook, webhook};
use crate::journal::seal::EncryptionKey;
use crate::journal::webhook::WebhookSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResolver {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_base_delay", with = "duration")]
    pub base_delay: Duration,
    #[serde(default = "default_max_delay", with = "duration")]
    pub max_delay: Duration,
    /// Unset: each route's upstream key window (its profile's, or `key_window` there).
    #[serde(default, with = "duration::option")]
    pub key_window: Option<Duration>,
    #[serde(default = "default_keep_finished", with = "duration")]
    pub keep_finished: Duration,
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    pub encryption_key_file: Option<PathBuf>,
    /// Accept payloads in clear where they would be kept at rest ([`super::payloads`]).
    #[serde(default)]
    pub allow_plaintext_journal: bool,
    pub webhook: Option<RawWebhook>,
}

impl Default for RawResolver {
    fn default() -> Self {
        RawResolver {
            enabled: true,
            interval: default_interval(),
            base_delay: default_base_delay(),
            max_delay: default_max_delay(),
            key_window: None,
            keep_finished: default_keep_finished(),
            max_entries: default_max_entries(),
            encryption_key_file: None,
            allow_plaintext_journal: false,
            webhook: None,
        }
    }
}

/// `[route.resolver]`: only whether payguard re-sends this route's unresolved requests.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteResolver {
    pub enabled: Option<bool>,
}

fn yes() -> bool {
    true
}
fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_base_delay() -> Duration {
    Duration::from_secs(30)
}
fn default_max_delay() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_keep_finished() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_entries() -> usize {
    10_000
}

/// The validated `[resolver]` table plus every route's override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSpec {
    /// Whether routes may re-send; with it off payguard only records and reports. A route
    /// re-sends by default only the requests its duplicate window covers across keys
    /// ([`crate::journal::open`]).
    pub enabled: bool,
    /// How often the resolver looks for due entries.
    pub interval: Duration,
    /// The wait before an entry's first re-send, doubled each round up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// How long the provider keeps a key; no re-send may end after it. `None`: the key
    /// window of the entry's route's upstream.
    pub key_window: Option<Duration>,
    /// How long resolved and given-up summaries stay listed.
    pub keep_finished: Duration,
    pub max_entries: usize,
    pub encryption_key: Option<EncryptionKey>,
    pub webhook: Option<WebhookSpec>,
    /// Routes whose `[route.resolver] enabled` is set.
    pub overrides: BTreeMap<String, bool>,
}

impl ResolverSpec {
    /// `[route.resolver] enabled` for `route`, when its config says.
    fn route_override(&self, route: &str) -> Option<bool> {
        self.overrides.get(route).copied()
    }

    /// Whether `route` re-sends its unresolved requests, for a request that a duplicate window
    /// across keys covers (`windowed`) or not: the one rule of [`crate::journal::open`],
    /// which keeps a payload exactly when it holds, and of [`super::payloads`].
    pub fn resends(&self, route: &str, windowed: bool) -> bool {
        self.route_override(route)
            .unwrap_or(self.enabled && windowed)
    }
}

pub(super) fn spec(
    raw: &RawResolver,
    base_dir: &Path,
    issue: &mut impl FnMut(String, String),
) -> ResolverSpec {
    let mut within = |key: &str, d: Duration, min: Duration, max: Duration| {
        if d < min || d > max {
            issue(
                format!("resolver.{key}"),
                format!("must be from {min:?} to {max:?}"),
            );
        }
    };
    let (ms, hour) = (Duration::from_millis(1), Duration::from_secs(3600));
    within("interval", raw.interval, ms, hour);
    within("base_delay", raw.base_delay, ms, 24 * hour);
    within("max_delay", raw.max_delay, raw.base_delay, 24 * hour);
    within(
        "key_window",
        raw.key_window.unwrap_or(Duration::from_secs(1)),
        Duration::from_secs(1),
        7 * 24 * hour,
    );
    within("keep_finished", raw.keep_finished, ms, 30 * 24 * hour);
    if raw.max_entries == 0 {
        issue(
            "resolver.max_entries".into(),
            "must be greater than 0".into(),
        );
    }
    let encryption_key = raw.encryption_key_file.as_ref().and_then(|file| {
        read_key(&base_dir.join(file))
            .map_err(|e| issue("resolver.encryption_key_file".into(), e))
            .ok()
    });
    let webhook = raw
        .webhook
        .as_ref()
        .and_then(|w| webhook(w, base_dir, issue));
    ResolverSpec {
        webhook,
        enabled: raw.enabled,
        interval: raw.interval,
        base_delay: raw.base_delay,
        max_delay: raw.max_delay,
        key_window: raw.key_window,
        keep_finished: raw.keep_finished,
        max_entries: raw.max_entries,
        encryption_key,
        overrides: BTreeMap::new(),
    }
}

/// Records a route's override, when it has one.
pub(super) fn route_override(spec: &mut ResolverSpec, route: &str, raw: &RawRouteResolver) {
    if let Some(enabled) = raw.enabled {
        spec.overrides.insert(route.to_owned(), enabled);
    }
}

/// The key file holds 64 hex digits (`openssl rand -hex 32`), surrounding whitespace allowed.
fn read_key(path: &Path) -> Result<EncryptionKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let hex = text.trim();
    let bad = || {
        format!(
            "{} must hold exactly 64 hex digits (a 256-bit key, e.g. `openssl rand -hex 32`)",
            path.display()
        )
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(EncryptionKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_may_turn_resending_off() {
        let text = "[upstream]\nurl = \"http://127.0.0.1:1\"\n[resolver]\nkey_window = \"2h\"\n\
                    [[route]]\nname = \"refunds\"\nmatch = \"POST /v1/refunds\"\n\
                    [route.resolver]\nenabled = false\n";
        let config = crate::config::Config::parse(text, "test", None).unwrap();
        let spec = &config.resolver;
        assert!(!spec.resends("refunds", true) && spec.resends("default", true));
        assert_eq!(spec.route_override("refunds"), Some(false));
        assert_eq!(spec.route_override("default"), None);
        assert_eq!(spec.key_window, Some(Duration::from_secs(7200)));
        assert_eq!(spec.base_delay, Duration::from_secs(30));
        let bad = text.replace("enabled = false", "enabled = false\nresend = 1");
        let err = crate::config::Config::parse(&bad, "test", None).unwrap_err();
        assert!(
            err.to_string().contains("route[0].resolver.resend"),
            "{err}"
        );
    }

    #[test]
    fn no_window_may_outlast_the_providers() {
        let parse = |extra: &str| {
            let text = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{extra}");
            crate::config::Config::parse(&text, "test", None)
        };
        let err = parse("key_window = \"48h\"\n").unwrap_err().to_string();
        assert!(
            err.contains("`upstream.key_window`") && err.contains("stripe"),
            "{err}"
        );
        let err = parse("[resolver]\nkey_window = \"25h\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`resolver.key_window`"), "{err}");
        // Shorter is allowed; PayPal's Payments v2 keeps ids for 45 days.
        assert!(parse("key_window = \"12h\"\n[resolver]\nkey_window = \"6h\"\n").is_ok());
        assert!(parse("profile = \"paypal\"\nkey_window = \"30d\"\n").is_ok());
    }

    #[test]
    fn key_files_need_64_hex_digits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(read_key(&path).unwrap(), EncryptionKey([0xab; 32]));
        std::fs::write(&path, "abcd").unwrap();
        assert!(read_key(&path).unwrap_err().contains("64 hex digits"));
        std::fs::write(&path, "zz".repeat(32)).unwrap();
        assert!(read_key(&path).is_err());
        assert_eq!(
            format!("{:?}", EncryptionKey([1; 32])),
            "EncryptionKey(redacted)"
        );
    }
}
