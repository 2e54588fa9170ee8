//! The small wire formats the double has to read and write itself: form-encoded bodies, the
//! API key in `Authorization`, and Stripe-like object ids.
//!
//! These are written here rather than pulled in as dependencies because each is a few lines and
//! the double only needs the forgiving subset SDKs actually send.

use rand::Rng;
use rand::distr::Alphanumeric;

/// Decodes an `application/x-www-form-urlencoded` body into its pairs, in order.
///
/// Malformed percent escapes are kept literally rather than rejected: the double should
/// describe what it received, and Stripe itself is lenient here.
pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = match part.iter().position(|&b| b == b'=') {
                Some(at) => (&part[..at], &part[at + 1..]),
                None => (part, &b""[..]),
            };
            (decode_component(name), decode_component(value))
        })
        .collect()
}

/// Percent-decodes one form component, with `+` standing for a space.
fn decode_component(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The API key a request authenticates with, from `Bearer <key>` or from `Basic` with the
/// key as the user name (older SDKs and curl's `-u sk_...:` send that form).
///
/// Returns `None` when the header is missing or unreadable; the caller answers 401 either way.
pub(crate) fn api_key(authorization: Option<&str>) -> Option<String> {
    let value = authorization?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let key = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(base64_decode(rest.trim())?).ok()?;
        let user = decoded
            .split_once(':')
            .map_or(decoded.as_str(), |(user, _)| user);
        user.to_owned()
    } else {
        return None;
    };
    (!key.is_empty()).then_some(key)
}

/// Decodes standard base64, padding optional. Only `Authorization: Basic` needs it.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in digits {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Truncation to the low byte is the point: `acc >> bits` holds one decoded byte.
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A Stripe-like object id: the prefix, an underscore, then 24 random letters and digits.
pub(crate) fn new_id(prefix: &str) -> String {
    let tail: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{prefix}_{tail}")
}

/// Seconds since the Unix epoch, for the `created` field. A clock before 1970 reads as 0.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_percent_and_brackets() {
        let pairs =
            parse_form(b"amount=2000&currency=usd&metadata%5Border_id%5D=o+1%2F2&flag&bad=%zz%4");
        assert_eq!(
            pairs,
            vec![
                ("amount".into(), "2000".into()),
                ("currency".into(), "usd".into()),
                ("metadata[order_id]".into(), "o 1/2".into()),
                ("flag".into(), String::new()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
    }

    #[test]
    fn keys_come_from_bearer_or_basic() {
        assert_eq!(
            api_key(Some("Bearer sk_test_1")).as_deref(),
            Some("sk_test_1")
        );
        // "sk_test_1:" in base64.
        assert_eq!(
            api_key(Some("Basic c2tfdGVzdF8xOg==")).as_deref(),
            Some("sk_test_1")
        );
        assert_eq!(
            api_key(Some("Basic c2tfdGVzdF8x")).as_deref(),
            Some("sk_test_1")
        );
        assert_eq!(api_key(Some("Bearer ")), None);
        assert_eq!(api_key(Some("Token sk_test_1")), None);
        assert_eq!(api_key(None), None);
    }

    #[test]
    fn ids_have_the_prefix_and_differ() {
        let (a, b) = (new_id("pi"), new_id("pi"));
        assert!(a.starts_with("pi_") && a.len() == 27);
        assert_ne!(a, b);
    }
}
