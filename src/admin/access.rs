//! Who may write through the admin listener. Reads (`GET`, `HEAD`) are open to whoever
//! reaches it: the kubelet's probes and the scraper must not need a secret. Every other
//! method is a write (today only `POST /unresolved/<id>/give-up`, which stops payguard from
//! settling a payment) and is decided here before any handler runs, so a refused write has
//! changed nothing:
//!
//! - with a token configured (`[admin] token_file` or `token_env`), a write must carry
//!   `Authorization: Bearer <token>`, wherever the listener is bound;
//! - without one, a write is allowed only when the listener is bound to a loopback address,
//!   which only processes on the same host (or in the same pod) reach; on any other address
//!   writes are refused, with a message saying how to configure a token.
//!
//! Tokens are compared in constant time, and without revealing their length: both sides go
//! through HMAC-SHA256 under a key drawn at start-up, and `ring` compares the two tags. The
//! token is never logged; a refusal logs only why.

use std::net::SocketAddr;

use http::{HeaderMap, Method, header};
use ring::hmac;
use ring::rand::SystemRandom;

use crate::config::AdminSpec;

/// The admin listener's rule for writes, fixed for the life of the process (a changed token
/// needs a restart, as a changed `listen.admin` does).
pub struct Access {
    rule: Rule,
}

enum Rule {
    /// The HMAC of the configured token, and its key.
    Token { key: hmac::Key, tag: Vec<u8> },
    /// No token, a loopback listener: writes allowed.
    Loopback,
    /// No token, a listener others can reach: writes refused.
    Closed,
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A token is configured and the request carries no bearer token.
    Missing,
    /// A token is configured and the request's does not match it.
    Wrong,
    /// No token is configured and the listener is not on loopback.
    NoTokenConfigured,
}

impl Access {
    /// The rule for an admin listener bound to `bound`.
    pub fn new(spec: &AdminSpec, bound: SocketAddr) -> anyhow::Result<Access> {
        let rule = match &spec.token {
            Some(token) => {
                let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
                    .map_err(|_| anyhow::anyhow!("no randomness for the admin token's key"))?;
                let tag = hmac::sign(&key, token.as_bytes()).as_ref().to_vec();
                Rule::Token { key, tag }
            }
            None if bound.ip().to_canonical().is_loopback() => Rule::Loopback,
            None => Rule::Closed,
        };
        Ok(Access { rule })
    }

    /// Whether a request with this method is a write.
    pub fn is_write(method: &Method) -> bool {
        method != Method::GET && method != Method::HEAD
    }

    /// Whether a write with these headers may go ahead.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match &self.rule {
            Rule::Loopback => Ok(()),
            Rule::Closed => Err(Refusal::NoTokenConfigured),
            Rule::Token { key, tag } => match bearer(headers) {
                None => Err(Refusal::Missing),
                Some(given) => hmac::verify(key, given, tag).map_err(|_| Refusal::Wrong),
            },
        }
    }

    /// The rule in words, for the start-up log.
    pub fn describe(&self) -> &'static str {
        match self.rule {
            Rule::Token { .. } => "admin writes need the [admin] bearer token",
            Rule::Loopback => "admin writes allowed without a token: the listener is on loopback",
            Rule::Closed => {
                "admin writes (give-up) refused: no [admin] token is configured and the \
                 listener is not on loopback"
            }
        }
    }
}

impl Refusal {
    /// A short label for the log.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "no bearer token",
            Refusal::Wrong => "wrong bearer token",
            Refusal::NoTokenConfigured => "no token configured, listener not on loopback",
        }
    }

    /// The body of the 401 answer: what was wrong and what to do.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "this write needs `Authorization: Bearer <token>` with the token configured in \
                 [admin] (token_file or token_env); `payguard unresolved give-up` sends it with \
                 --token-file or PAYGUARD_ADMIN_TOKEN. Nothing was changed.\n"
            }
            Refusal::Wrong => {
                "the bearer token does not match the token configured in [admin]. Nothing was \
                 changed.\n"
            }
            Refusal::NoTokenConfigured => {
                "admin writes are refused: no token is configured and the admin listener \
                 (listen.admin) is not on loopback. Put a token of at least 16 characters \
                 (`openssl rand -hex 24`) in a file and set [admin] token_file to it (or name an \
                 environment variable with token_env), then send it as `Authorization: Bearer \
                 <token>` (`payguard unresolved give-up --token-file FILE`). Nothing was \
                 changed.\n"
            }
        }
    }
}

/// The credentials of an `Authorization: Bearer <token>` header (scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    let token = rest.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn spec(token: Option<&str>) -> AdminSpec {
        let dir = tempfile::tempdir().unwrap();
        let admin = match token {
            Some(token) => {
                std::fs::write(dir.path().join("t"), token).unwrap();
                "[admin]\ntoken_file = \"t\"\n"
            }
            None => "",
        };
        let text = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{admin}");
        Config::parse(&text, "test", Some(dir.path()))
            .unwrap()
            .admin
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn a_configured_token_is_needed_wherever_the_listener_is() {
        for bound in ["127.0.0.1:9090", "0.0.0.0:9090"] {
            let access = Access::new(&spec(Some(TOKEN)), bound.parse().unwrap()).unwrap();
            assert_eq!(access.check(&HeaderMap::new()), Err(Refusal::Missing));
            let ok = access.check(&headers(&format!("Bearer {TOKEN}")));
            assert_eq!(ok, Ok(()));
            assert_eq!(access.check(&headers(&format!("bearer  {TOKEN} "))), Ok(()));
            for wrong in [
                format!("Bearer {TOKEN}4"),
                format!("Bearer {}", &TOKEN[1..]),
                format!("Basic {TOKEN}"),
                "Bearer".to_owned(),
                "Bearer ".to_owned(),
            ] {
                let refused = access.check(&headers(&wrong));
                assert!(refused.is_err(), "{wrong}");
            }
            let wrong = access.check(&headers("Bearer 0123456789abcdef0124"));
            assert_eq!(wrong, Err(Refusal::Wrong));
        }
    }

    #[test]
    fn without_a_token_only_a_loopback_listener_takes_writes() {
        let loopback = [
            "127.0.0.1:9090",
            "127.8.0.1:0",
            "[::1]:9090",
            "[::ffff:127.0.0.1]:1",
        ];
        for bound in loopback {
            let access = Access::new(&spec(None), bound.parse().unwrap()).unwrap();
            assert_eq!(access.check(&HeaderMap::new()), Ok(()), "{bound}");
        }
        for bound in ["0.0.0.0:9090", "[::]:9090", "10.1.2.3:9090"] {
            let access = Access::new(&spec(None), bound.parse().unwrap()).unwrap();
            let refused = access.check(&headers(&format!("Bearer {TOKEN}")));
            assert_eq!(refused, Err(Refusal::NoTokenConfigured), "{bound}");
            assert!(Refusal::NoTokenConfigured.message().contains("token_file"));
        }
        assert!(Access::is_write(&Method::POST) && Access::is_write(&Method::DELETE));
        assert!(!Access::is_write(&Method::GET) && !Access::is_write(&Method::HEAD));
    }
}
