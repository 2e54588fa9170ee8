//! TLS to the upstream: verified against the webpki roots plus an extra CA file, never skipped.

mod support;

use std::sync::Arc;

use payguard_double::{self as double, DoubleConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use support::*;

/// A throwaway CA and a `localhost` server certificate it signed.
struct TestPki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn test_pki() -> TestPki {
    test_pki_speaking(&[])
}

/// The same, with the server's ALPN protocols (none: HTTP/1.1 without ALPN).
fn test_pki_speaking(alpn: &[&[u8]]) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .unwrap();
    let mut server = server;
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TestPki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

#[tokio::test]
async fn forwards_over_tls_to_an_upstream_signed_by_a_configured_ca() {
    let pki = test_pki();
    let provider = double::spawn(DoubleConfig {
        tls: Some(pki.server.clone()),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    assert!(
        provider.url().starts_with("https://localhost:"),
        "{}",
        provider.url()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();

    // With the CA file, the request goes through over TLS.
    let toml = config_toml(&provider.url(), "")
        .replace("[upstream]\n", "[upstream]\nca_file = \"ca.pem\"\n");
    let config = payguard::config::Config::parse(&toml, "tls test", Some(dir.path())).unwrap();
    let proxy = start_proxy_with(&config).await;
    let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=900&currency=usd").await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.json()["id"].as_str().unwrap().starts_with("pi_"));
    assert_eq!(provider.ledger().entries().len(), 1);

    // Without it, the unknown CA is refused: verification is on, and nothing was executed.
    let untrusting = start_proxy(&config_toml(&provider.url(), "")).await;
    let reply = post_form(
        &untrusting.url("/v1/payment_intents"),
        "amount=900&currency=usd",
    )
    .await;
    assert_payguard_error(&reply, 502, "payguard_upstream_unreachable");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("certificate")
    );
    assert_eq!(provider.ledger().entries().len(), 1);
}

/// An upstream that speaks only HTTP/2 (its ALPN offers nothing else, so a client that did
/// not choose h2 would be refused in the handshake): payguard's pool multiplexes requests
/// over its one h2 connection, keyed POSTs included, each executed once.
#[tokio::test]
async fn forwards_over_http2_when_the_upstream_chooses_it() {
    let pki = test_pki_speaking(&[b"h2"]);
    let provider = double::spawn(DoubleConfig {
        tls: Some(pki.server.clone()),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let toml = config_toml(&provider.url(), "")
        .replace("[upstream]\n", "[upstream]\nca_file = \"ca.pem\"\n");
    let config = payguard::config::Config::parse(&toml, "h2 test", Some(dir.path())).unwrap();
    let proxy = start_proxy_with(&config).await;
    let url = proxy.url("/v1/payment_intents");
    let replies = eight_keyed_posts(&url).await;
    for reply in &replies {
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    assert_eq!(provider.ledger().entries().len(), replies.len());
}

/// Eight keyed POSTs at once, each with its own key.
async fn eight_keyed_posts(url: &str) -> Vec<Reply> {
    let sends = (0..8).map(|i| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let key = format!("h2-key-{i}");
            let form = "amount=900&currency=usd";
            send(double::client::post(url, "sk_test_h2", Some(&key), form)).await
        })
    });
    let mut replies = Vec::new();
    for send in sends.collect::<Vec<_>>() {
        replies.push(send.await.unwrap());
    }
    replies
}

#[tokio::test]
async fn a_bad_ca_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    let toml = "[upstream]\nurl = \"https://localhost:1\"\nca_file = \"ca.pem\"\n";
    let err = payguard::config::Config::parse(toml, "t", Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3: `upstream.ca_file`"), "{err}");
    assert!(err.contains("no CERTIFICATE"), "{err}");
}
