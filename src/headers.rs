//! Which headers cross the proxy. payguard is transparent: everything passes unchanged except
//! the hop-by-hop headers of RFC 9110 section 7.6.1, which describe one connection and must not
//! be forwarded to the next, and `Host`, which names the upstream on the way out.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Headers that belong to a single connection (RFC 9110 7.6.1, plus the legacy ones every
/// proxy still strips).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
];

/// Removes hop-by-hop headers, including any that `Connection` lists by name.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Runs twice per request (the app's request, the provider's answer), and most messages
    // carry none of these: one pass over their few names, comparing, is far cheaper than a
    // hashed removal per hop-by-hop name (the profile put those at 4% of a GET). A listed
    // name only counts when `Connection` is present, which is itself hop-by-hop.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == "proxy-connection"
}

/// Prepares the app's headers for the upstream. `Host` is dropped so the client sets the
/// upstream's; `Expect` is dropped because payguard has already read the whole body.
pub fn for_upstream(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    headers.remove(header::EXPECT);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private-hop"),
        );
        h.insert("x-private-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk_test"),
        );
        h.insert("stripe-account", HeaderValue::from_static("acct_1"));
        for_upstream(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "stripe-account"]);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        let names = HOP_BY_HOP
            .into_iter()
            .chain([HeaderName::from_static("proxy-connection")]);
        for name in names {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
            h.insert(name.clone(), HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name} stayed");
            assert!(h.contains_key(header::AUTHORIZATION));
        }
    }
}
