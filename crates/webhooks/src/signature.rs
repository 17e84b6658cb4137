//! Signatures as the Standard Webhooks specification defines them.
//!
//! Three headers travel with every delivery:
//!
//! ```text
//! webhook-id: msg_...            the same on every retry of one event
//! webhook-timestamp: 1674087231  seconds since 1970, at this attempt
//! webhook-signature: v1,<base64 of HMAC-SHA256(key, id + "." + timestamp + "." + body)>
//! ```
//!
//! The key is the secret's bytes: the part after `whsec_`, base64-decoded.
//! Signing the id and the timestamp with the body is what makes both
//! trustworthy: change either and the signature no longer matches, so an
//! attacker who captured a delivery can neither re-date it nor give it a new
//! id to slip past deduplication.
//!
//! During a secret rotation the sender signs with the new and the old secret
//! and sends both signatures, space-separated; a receiver accepts if any one
//! matches a secret it holds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The three header names, lower case as the specification writes them.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Seconds since the Unix epoch, at the moment this attempt was signed.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// One or more `v1,<base64>` signatures, separated by spaces.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// How secrets are written for people: a prefix says what kind of key this
/// is, so one pasted into the wrong place is recognised.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a fresh secret. The specification asks for 24 to 64;
/// 32 is what HMAC-SHA256 uses in full (its block is longer, its output is
/// 32 bytes, and more key adds nothing an attacker could feel).
pub const SECRET_BYTES: usize = 32;

/// How far a timestamp may be from the receiver's clock, either way. The
/// specification's own libraries use five minutes: wide enough for clocks
/// that drift and a request that queues, narrow enough that a captured
/// delivery is useless soon after. Deduplication covers the window.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The most signatures a receiver looks at in one header. Rotation needs
/// two; a header with hundreds is someone making us compute HMACs for free.
pub const MAX_SIGNATURES: usize = 8;

type HmacSha256 = Hmac<Sha256>;

/// A signing secret: random bytes, shown as `whsec_<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    // A secret in a log line is a leaked secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh secret of [`SECRET_BYTES`] from the operating system's
    /// random source.
    pub fn generate() -> Self {
        let mut key = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut key).expect("the OS random source is available");
        Self(key)
    }

    /// Reads `whsec_<base64>` (or the base64 alone, as the libraries do).
    pub fn parse(text: &str) -> Result<Self, String> {
        let b64 = text.trim().strip_prefix(SECRET_PREFIX).unwrap_or(text.trim());
        let key = STANDARD.decode(b64).map_err(|e| format!("secret is not base64: {e}"))?;
        if key.is_empty() {
            return Err("secret is empty".into());
        }
        Ok(Self(key))
    }

    /// The secret as people see it: `whsec_` and the key in base64.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 signature>` of this delivery.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }
}

/// The `webhook-signature` value for a delivery signed with every secret in
/// `secrets` (the current one first; the previous one too during a rotation).
pub fn signature_header(secrets: &[&Secret], id: &str, timestamp: u64, body: &[u8]) -> String {
    let signatures: Vec<String> = secrets.iter().map(|s| s.sign(id, timestamp, body)).collect();
    signatures.join(" ")
}

/// Why a delivery was refused. Each is logged by the receiver with its
/// reason; none is told to the sender beyond the status code, so a forger
/// learns nothing about which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// One of the three headers is absent or not text.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not a whole number of seconds.
    #[error("webhook-timestamp {0:?} is not a number")]
    BadTimestamp(String),
    /// The timestamp is further in the past than [`TOLERANCE`]: a replay of
    /// an old capture, or a very wrong clock.
    #[error("timestamp is {0} s old, beyond the tolerance")]
    TooOld(u64),
    /// The timestamp is further in the future than [`TOLERANCE`].
    #[error("timestamp is {0} s in the future, beyond the tolerance")]
    TooNew(u64),
    /// No `v1` signature in the header matches any secret we hold: the body,
    /// id or timestamp was changed, or it was signed with another secret.
    #[error("no signature matches")]
    NoMatch,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Checks one delivery: the timestamp within `tolerance` of `now`, and a
/// signature that matches one of `secrets` over the raw `body`.
///
/// The comparison is constant time (`Mac::verify_slice`): a plain `==`
/// stops at the first differing byte, and by timing many tries an attacker
/// could learn a valid signature for a body of their choosing byte by byte.
pub fn verify(
    secrets: &[Secret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> Result<(), Rejection> {
    let id = id.ok_or(Rejection::MissingHeader(WEBHOOK_ID))?;
    let timestamp = timestamp.ok_or(Rejection::MissingHeader(WEBHOOK_TIMESTAMP))?;
    let signatures = signatures.ok_or(Rejection::MissingHeader(WEBHOOK_SIGNATURE))?;
    let ts: u64 =
        timestamp.trim().parse().map_err(|_| Rejection::BadTimestamp(timestamp.to_owned()))?;
    // The clock check comes before the HMAC: it is cheaper, and a replay is
    // refused without spending a hash on it.
    let tolerance = tolerance.as_secs();
    if now > ts && now - ts > tolerance {
        return Err(Rejection::TooOld(now - ts));
    }
    if ts > now && ts - now > tolerance {
        return Err(Rejection::TooNew(ts - now));
    }
    for candidate in signatures.split(' ').take(MAX_SIGNATURES) {
        // Other schemes (`v1a`, asymmetric) are not ours: skip them.
        let Some(b64) = candidate.strip_prefix("v1,") else { continue };
        let Ok(tag) = STANDARD.decode(b64) else { continue };
        for secret in secrets {
            if secret.mac(id, ts, body).verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
    }
    Err(Rejection::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector every Standard Webhooks library checks itself against
    /// (libraries/*/tests in the specification's repository).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: u64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_spec_test_vector_signs_and_verifies() {
        let secret = Secret::parse(SPEC_SECRET).expect("the spec's secret parses");
        assert_eq!(secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
        let ok = verify(
            &[secret],
            Some(SPEC_ID),
            Some(&SPEC_TIMESTAMP.to_string()),
            Some(SPEC_SIGNATURE),
            SPEC_BODY,
            SPEC_TIMESTAMP + 10,
            TOLERANCE,
        );
        assert_eq!(ok, Ok(()));
    }

    fn check(secret: &Secret, sig: &str, body: &[u8], now: u64) -> Result<(), Rejection> {
        let ts = SPEC_TIMESTAMP.to_string();
        verify(
            std::slice::from_ref(secret),
            Some(SPEC_ID),
            Some(&ts),
            Some(sig),
            body,
            now,
            TOLERANCE,
        )
    }

    #[test]
    fn tampered_body_wrong_secret_and_old_timestamps_are_refused() {
        let secret = Secret::parse(SPEC_SECRET).expect("parses");
        let now = SPEC_TIMESTAMP;
        assert_eq!(
            check(&secret, SPEC_SIGNATURE, br#"{"test": 2432232315}"#, now),
            Err(Rejection::NoMatch)
        );
        assert_eq!(
            check(&Secret::generate(), SPEC_SIGNATURE, SPEC_BODY, now),
            Err(Rejection::NoMatch)
        );
        let late = now + TOLERANCE.as_secs() + 1;
        assert_eq!(check(&secret, SPEC_SIGNATURE, SPEC_BODY, late), Err(Rejection::TooOld(301)));
        let early = now - TOLERANCE.as_secs() - 1;
        assert_eq!(check(&secret, SPEC_SIGNATURE, SPEC_BODY, early), Err(Rejection::TooNew(301)));
        // Exactly at the edge still passes.
        assert_eq!(check(&secret, SPEC_SIGNATURE, SPEC_BODY, now + 300), Ok(()));
    }

    #[test]
    fn any_one_of_two_signatures_is_enough_during_a_rotation() {
        let (old, new) = (Secret::generate(), Secret::generate());
        let header = signature_header(&[&new, &old], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(check(&old, &header, SPEC_BODY, SPEC_TIMESTAMP), Ok(()));
        assert_eq!(check(&new, &header, SPEC_BODY, SPEC_TIMESTAMP), Ok(()));
        assert_eq!(
            check(&Secret::generate(), &header, SPEC_BODY, SPEC_TIMESTAMP),
            Err(Rejection::NoMatch)
        );
    }

    #[test]
    fn secrets_round_trip_and_hide_in_debug() {
        let s = Secret::generate();
        assert_eq!(Secret::parse(&s.to_whsec()), Ok(s.clone()));
        assert!(s.to_whsec().starts_with("whsec_"));
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert!(Secret::parse("whsec_").is_err());
        assert!(Secret::parse("whsec_!!").is_err());
    }
}
