//! `[resolver.webhook]`: the optional signed notification of finished unresolved requests
//! (see [`crate::journal::webhook`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::journal::webhook::{WebhookSecret, WebhookSpec};

/// `[resolver.webhook]`: where signed notifications of finished entries go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub url: String,
    pub secret_file: PathBuf,
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_webhook_delay", with = "duration")]
    pub base_delay: Duration,
}

fn default_webhook_attempts() -> u32 {
    8
}
fn default_webhook_delay() -> Duration {
    Duration::from_secs(1)
}

pub(super) fn webhook(
    raw: &RawWebhook,
    base_dir: &Path,
    issue: &mut impl FnMut(String, String),
) -> Option<WebhookSpec> {
    let url = match raw.url.parse::<http::Uri>() {
        Ok(url) if matches!(url.scheme_str(), Some("http" | "https")) && url.host().is_some() => {
            Some(url)
        }
        _ => {
            issue(
                "resolver.webhook.url".into(),
                format!("expected an http:// or https:// URL, got {:?}", raw.url),
            );
            None
        }
    };
    let path = base_dir.join(&raw.secret_file);
    let secret = match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 16 => Some(WebhookSecret(text.trim().as_bytes().to_vec())),
        Ok(_) => {
            issue(
                "resolver.webhook.secret_file".into(),
                format!(
                    "{} must hold a secret of at least 16 characters",
                    path.display()
                ),
            );
            None
        }
        Err(e) => {
            issue(
                "resolver.webhook.secret_file".into(),
                format!("cannot read {}: {e}", path.display()),
            );
            None
        }
    };
    if raw.max_attempts == 0 || raw.max_attempts > 100 {
        issue(
            "resolver.webhook.max_attempts".into(),
            "must be from 1 to 100".into(),
        );
    }
    if raw.base_delay.is_zero() || raw.base_delay > Duration::from_secs(3600) {
        issue(
            "resolver.webhook.base_delay".into(),
            "must be from 1ms to 1h".into(),
        );
    }
    Some(WebhookSpec {
        url: url?,
        secret: secret?,
        max_attempts: raw.max_attempts,
        base_delay: raw.base_delay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_needs_a_url_and_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short"), "tiny").unwrap();
        std::fs::write(dir.path().join("ok"), "whsec_0123456789abcdef\n").unwrap();
        let parse = |hook: &str| {
            let text =
                format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n[resolver.webhook]\n{hook}");
            crate::config::Config::parse(&text, "test", Some(dir.path()))
        };
        let config = parse("url = \"https://ops.example/h\"\nsecret_file = \"ok\"\n").unwrap();
        let hook = config.resolver.webhook.unwrap();
        assert_eq!(hook.secret.0, b"whsec_0123456789abcdef");
        assert_eq!(
            (hook.max_attempts, hook.base_delay),
            (8, Duration::from_secs(1))
        );
        assert!(
            !format!("{hook:?}").contains("whsec"),
            "the secret never prints"
        );
        let err = parse("url = \"ftp://x\"\nsecret_file = \"short\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("resolver.webhook.url") && text.contains("at least 16"),
            "{text}"
        );
        assert!(parse("url = \"http://x\"\nsecret_file = \"nope\"\n").is_err());
    }
}
