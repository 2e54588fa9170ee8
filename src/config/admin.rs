//! The `[admin]` table: the token that authorises the admin listener's one write,
//! `POST /unresolved/<id>/give-up` (enforced in [`crate::admin::access`]).
//!
//! Why a token: the admin listener serves probes and scrapes, so in a pod it listens on every
//! interface, and whoever reaches it (the scraper's network, any pod a NetworkPolicy lets in)
//! could otherwise tell payguard to stop settling a payment. The reads stay open; the write
//! needs `Authorization: Bearer <token>`. Without a token the write is allowed only on a
//! loopback listener, which nothing off the machine (or out of the pod) reaches.
//!
//! The token comes from a file (`token_file`, e.g. a mounted Kubernetes Secret; relative to the
//! config's directory like every file the config names) or from an environment variable
//! (`token_env`), never from the config text itself, which sits in a ConfigMap. It is read
//! and checked when the config is loaded, so `payguard check` reports a missing or short one:
//! at least [`MIN_TOKEN_LEN`] characters of visible ASCII (it travels in a header),
//! surrounding whitespace trimmed. Its `Debug` never shows it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The shortest token accepted: `openssl rand -hex 24` gives 48 characters.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
}

/// The token admin writes must carry. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(Vec<u8>);

impl AdminToken {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(redacted)")
    }
}

/// The validated `[admin]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminSpec {
    /// The token of admin writes; `None`: writes only on a loopback listener.
    pub token: Option<AdminToken>,
}

pub(super) fn spec(
    raw: &RawAdmin,
    base_dir: &Path,
    issue: &mut impl FnMut(String, String),
) -> AdminSpec {
    resolve(raw, base_dir, &|name| std::env::var_os(name), issue)
}

/// [`spec`] with the environment given, so tests need not change the process's.
fn resolve(
    raw: &RawAdmin,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
    issue: &mut impl FnMut(String, String),
) -> AdminSpec {
    let read = match (&raw.token_file, raw.token_env.as_deref()) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(("token_env", "set token_file or token_env, not both".into())),
        (Some(file), None) => {
            let path = base_dir.join(file);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|text| token(&text, &path.display().to_string()))
                .map(Some)
                .map_err(|e| ("token_file", e))
        }
        (None, Some("")) => Err(("token_env", "must name an environment variable".into())),
        (None, Some(name)) => match env(name).map(OsString::into_string) {
            Some(Ok(text)) => token(&text, &format!("environment variable {name}")).map(Some),
            Some(Err(_)) => Err(format!("{name} does not hold UTF-8 text")),
            None => Err(format!(
                "environment variable {name} is not set (payguard check needs it too)"
            )),
        }
        .map_err(|e| ("token_env", e)),
    };
    match read {
        Ok(token) => AdminSpec { token },
        Err((key, message)) => {
            issue(format!("admin.{key}"), message);
            AdminSpec::default()
        }
    }
}

/// The token in `text`, trimmed; `source` names where it was read, for the message.
fn token(text: &str, source: &str) -> Result<AdminToken, String> {
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "{source} must hold a token of at least {MIN_TOKEN_LEN} characters \
             (e.g. `openssl rand -hex 24`)"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{source} must hold visible ASCII characters only, no spaces: the token is sent \
             in an HTTP header"
        ));
    }
    Ok(AdminToken(token.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const TOKEN: &str = "adm_0123456789abcdef";

    fn parse(dir: &Path, admin: &str) -> Result<Config, String> {
        let text = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n\n[admin]\n{admin}");
        Config::parse(&text, "test", Some(dir)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_token_file_is_read_from_the_config_directory_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin-token"), format!("  {TOKEN}\n")).unwrap();
        let config = parse(dir.path(), "token_file = \"admin-token\"\n").unwrap();
        let token = config.admin.token.clone().expect("a token");
        assert_eq!(token.as_bytes(), TOKEN.as_bytes());
        assert_eq!(format!("{token:?}"), "AdminToken(redacted)");
        assert!(!format!("{:?}", config.admin).contains(TOKEN));
        // No [admin] table: no token.
        let text = "[upstream]\nurl = \"http://127.0.0.1:1\"\n";
        assert_eq!(Config::parse(text, "test", None).unwrap().admin.token, None);
    }

    #[test]
    fn bad_tokens_are_reported_with_their_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short"), "tiny\n").unwrap();
        std::fs::write(dir.path().join("spaced"), "two words of a token\n").unwrap();
        for (admin, line, key, says) in [
            (
                "token_file = \"short\"\n",
                5,
                "admin.token_file",
                "at least 16",
            ),
            (
                "token_file = \"spaced\"\n",
                5,
                "admin.token_file",
                "no spaces",
            ),
            (
                "token_file = \"missing\"\n",
                5,
                "admin.token_file",
                "cannot read",
            ),
            ("token_env = \"\"\n", 5, "admin.token_env", "must name"),
            (
                "token_env = \"PAYGUARD_TEST_UNSET_4f1c9\"\n",
                5,
                "admin.token_env",
                "is not set",
            ),
            (
                "token_file = \"short\"\ntoken_env = \"X\"\n",
                6,
                "admin.token_env",
                "not both",
            ),
            (
                "tokenfile = \"short\"\n",
                5,
                "admin.tokenfile",
                "unknown field",
            ),
        ] {
            let err = parse(dir.path(), admin).unwrap_err();
            assert!(
                err.contains(&format!("line {line}: `{key}`")),
                "{admin}: {err}"
            );
            assert!(err.contains(says), "{admin}: {err}");
        }
    }

    #[test]
    fn a_token_env_names_a_variable() {
        let raw = RawAdmin {
            token_file: None,
            token_env: Some("PAYGUARD_ADMIN_TOKEN".into()),
        };
        let mut issues = Vec::new();
        let env =
            |name: &str| (name == "PAYGUARD_ADMIN_TOKEN").then(|| format!("{TOKEN}\n").into());
        let spec = resolve(&raw, Path::new("."), &env, &mut |k, m| issues.push((k, m)));
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(spec.token.unwrap().as_bytes(), TOKEN.as_bytes());
        let short = |_: &str| Some(OsString::from("short"));
        resolve(&raw, Path::new("."), &short, &mut |k, m| {
            issues.push((k, m))
        });
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].0, "admin.token_env");
        assert!(
            issues[0].1.contains("PAYGUARD_ADMIN_TOKEN must hold"),
            "{issues:?}"
        );
        assert!(!issues[0].1.contains("short"), "the value never shows");
    }
}
