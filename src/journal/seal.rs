//! Payloads at rest: AES-256-GCM when `resolver.encryption_key_file` is set, clear otherwise.
//!
//! A payload holds what a re-send needs, the `Authorization` header (the API key) and the
//! body included, so on disk it is sealed whenever a key is configured. Each payload gets a
//! fresh random 96-bit nonce, stored in front of the ciphertext; with random nonces one key
//! safely seals far more payloads (billions) than a journal ever holds. The entry's id is the
//! associated data, so a sealed payload cannot be moved to another entry unnoticed.
//!
//! Without a key the payload is stored in clear, in a file payguard creates with mode 0600:
//! anyone who can read the file can read API keys and bodies of unresolved requests. That is
//! the trade-off documented in the README.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::store::JournalError;
use super::{Id, Payload};

/// The AES-256 key that seals journal payloads. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey(pub [u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(redacted)")
    }
}

pub struct Sealer {
    key: Option<LessSafeKey>,
    random: SystemRandom,
}

impl Sealer {
    pub fn new(key: Option<&EncryptionKey>) -> Sealer {
        Sealer {
            // A 32-byte key is always valid for AES-256.
            key: key.and_then(|k| {
                UnboundKey::new(&AES_256_GCM, &k.0)
                    .ok()
                    .map(LessSafeKey::new)
            }),
            random: SystemRandom::new(),
        }
    }

    /// Whether payloads are encrypted.
    pub fn seals(&self) -> bool {
        self.key.is_some()
    }

    /// Encodes `payload`, and seals it when a key is configured.
    pub fn seal(&self, id: &Id, payload: &Payload) -> Result<Vec<u8>, JournalError> {
        let mut plain = postcard::to_stdvec(payload)
            .map_err(|e| JournalError::Backend(format!("encoding a payload: {e}")))?;
        let Some(key) = &self.key else {
            return Ok(plain);
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| JournalError::Backend("no randomness for a nonce".into()))?;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(id),
            &mut plain,
        )
        .map_err(|_| JournalError::Backend("sealing a payload failed".into()))?;
        let mut out = nonce.to_vec();
        out.append(&mut plain);
        Ok(out)
    }

    /// Opens a payload written by [`Sealer::seal`]; `sealed` says whether it was encrypted.
    pub fn open(&self, id: &Id, bytes: &[u8], sealed: bool) -> Result<Payload, JournalError> {
        let plain = match (sealed, &self.key) {
            (false, _) => bytes.to_vec(),
            (true, None) => {
                return Err(JournalError::Unreadable(
                    "it was sealed and no encryption key is configured".into(),
                ));
            }
            (true, Some(key)) => {
                if bytes.len() < NONCE_LEN {
                    return Err(JournalError::Unreadable("too short".into()));
                }
                let (nonce, sealed) = bytes.split_at(NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(nonce)
                    .map_err(|_| JournalError::Unreadable("bad nonce".into()))?;
                let mut buffer = sealed.to_vec();
                let plain = key
                    .open_in_place(nonce, Aad::from(id), &mut buffer)
                    .map_err(|_| JournalError::Unreadable("wrong key or altered data".into()))?;
                plain.to_vec()
            }
        };
        postcard::from_bytes(&plain).map_err(|e| JournalError::Unreadable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Payload {
        Payload {
            headers: vec![("authorization".into(), b"Bearer sk_test_secret".to_vec())],
            body: b"amount=100&currency=usd".to_vec(),
        }
    }

    #[test]
    fn sealed_payloads_hide_the_secret_and_open_only_with_their_key_and_id() {
        let sealer = Sealer::new(Some(&EncryptionKey([7; 32])));
        let sealed = sealer.seal(&[1; 32], &payload()).unwrap();
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains("sk_test_secret") && !text.contains("amount"));
        assert_eq!(sealer.open(&[1; 32], &sealed, true).unwrap(), payload());
        // Another entry's id, another key, or no key: refused.
        assert!(sealer.open(&[2; 32], &sealed, true).is_err());
        let other = Sealer::new(Some(&EncryptionKey([8; 32])));
        assert!(other.open(&[1; 32], &sealed, true).is_err());
        assert!(Sealer::new(None).open(&[1; 32], &sealed, true).is_err());
        // Two seals of the same payload differ (fresh nonces).
        assert_ne!(sealed, sealer.seal(&[1; 32], &payload()).unwrap());
    }

    #[test]
    fn without_a_key_payloads_are_encoded_in_clear() {
        let sealer = Sealer::new(None);
        assert!(!sealer.seals());
        let clear = sealer.seal(&[1; 32], &payload()).unwrap();
        assert!(String::from_utf8_lossy(&clear).contains("sk_test_secret"));
        assert_eq!(sealer.open(&[1; 32], &clear, false).unwrap(), payload());
    }
}
