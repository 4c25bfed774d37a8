//! The pure, synchronous signing core: request parts in, signature out.
//!
//! ```text
//! signature = lowercase_hex(HMAC-SHA256(secret, timestamp || METHOD || path_and_query || body))
//! ```
//!
//! [`Signer`] needs no runtime and no tower: use it from any HTTP client, a CLI or a test. The
//! HMAC key schedule is computed once per [`Credentials`] and cloned for each signature, and the
//! parts are streamed into the MAC, so signing allocates nothing.
//!
//! `Signer` signs exactly the bytes it is given. Getting those right is the caller's job (the
//! middleware does it for you): `path_and_query` is the request target as it goes on the wire
//! (starting with `/`, query kept byte for byte), and `body` the body bytes as sent.
//!
//! # Example
//!
//! ```
//! use rampnow_auth::{Credentials, Signer};
//! use http::Method;
//!
//! let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv")?;
//! let signer = Signer::new(&credentials);
//! let signature = signer.sign(
//!     1727759033,
//!     &Method::POST,
//!     "/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC",
//!     br#"{"dummy": "value"}"#,
//! );
//! assert_eq!(
//!     signature.to_string(),
//!     "558629fe8e7f4555ddbe63dd8d1523921eef1f8763ccc142e63d84c227f2ab5e"
//! );
//! # Ok::<(), rampnow_auth::Error>(())
//! ```

use std::fmt;

use hmac::digest::block_api::{Buffer, FixedOutputCore, UpdateCore};
use hmac::digest::{CtOutput, Output};
use http::Method;

use crate::credentials::{Credentials, HmacSha256, HmacSha256Core};

/// Length of a signature in bytes (HMAC-SHA256).
pub(crate) const SIGNATURE_LEN: usize = 32;
/// Length of a signature in hex digits, as it appears in the header.
pub const SIGNATURE_HEX_LEN: usize = 2 * SIGNATURE_LEN;

/// Computes Rampnow signatures for one set of [`Credentials`].
///
/// Cheap to clone; holds the keyed HMAC state shared with the credentials.
#[derive(Clone, Debug)]
pub struct Signer {
    credentials: Credentials,
}

impl Signer {
    /// A signer for these credentials.
    #[must_use]
    pub fn new(credentials: &Credentials) -> Signer {
        Signer {
            credentials: credentials.clone(),
        }
    }

    /// The credentials this signer signs with.
    #[must_use]
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Signs one request: `timestamp` (seconds since the Unix epoch, written in decimal),
    /// `method` (as its `as_str()`), `path_and_query` and `body`, all exactly as sent.
    #[must_use]
    pub fn sign(
        &self,
        timestamp: u64,
        method: &Method,
        path_and_query: &str,
        body: &[u8],
    ) -> Signature {
        let mut digits = itoa::Buffer::new();
        message_signature(
            &self.credentials,
            digits.format(timestamp).as_bytes(),
            method,
            path_and_query,
            body,
        )
    }
}

/// One HMAC over the parts, streamed into a clone of the prepared keyed state.
///
/// It drives `hmac`'s block-level state with a block buffer, as `Hmac::update` and
/// `Hmac::finalize` do, but finalizes in place: `Hmac` moves its whole state (about 150 bytes)
/// by value on the way to finalizing, which costs more than the work around one compression.
pub(crate) fn sign_parts(
    credentials: &Credentials,
    timestamp: &[u8],
    method: &[u8],
    target: &[u8],
    body: &[u8],
) -> Signature {
    let mut core = credentials.mac().clone();
    let mut buffer = Buffer::<HmacSha256Core>::default();
    for part in [timestamp, method, target, body] {
        buffer.digest_blocks(part, |blocks| core.update_blocks(blocks));
    }
    let mut out = Output::<HmacSha256>::default();
    core.finalize_fixed_core(&mut buffer, &mut out);
    Signature(CtOutput::new(out))
}

/// An HMAC-SHA256 request signature.
///
/// `Display` writes the 64 lowercase hex digits sent in the signature header. Equality is
/// compared in constant time. `Debug` shows only the first 8 digits, so a signature logged by
/// accident cannot be replayed.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature(CtOutput<HmacSha256>);

impl Signature {
    /// Parses a signature header value: exactly 64 hex digits, in either case (servers compare
    /// case-insensitively). Returns `None` for anything else.
    ///
    /// Compare the result with `==`, which runs in constant time.
    ///
    /// # Example
    ///
    /// ```
    /// use rampnow_auth::Signature;
    ///
    /// let lower = "558629fe8e7f4555ddbe63dd8d1523921eef1f8763ccc142e63d84c227f2ab5e";
    /// let upper = lower.to_ascii_uppercase();
    /// assert_eq!(Signature::from_hex(lower), Signature::from_hex(&upper));
    /// assert!(Signature::from_hex(&lower[1..]).is_none());
    /// assert!(Signature::from_hex(&lower.replace('e', "g")).is_none());
    /// ```
    #[must_use]
    pub fn from_hex(hex: &str) -> Option<Signature> {
        let mut bytes = Output::<HmacSha256>::default();
        if hex.len() != SIGNATURE_HEX_LEN {
            return None;
        }
        hex::decode_to_slice(hex, bytes.as_mut_slice()).ok()?;
        Some(Signature(CtOutput::new(bytes)))
    }

    /// The 32 raw bytes of the signature.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes().as_slice()
    }

    /// Writes the lowercase hex form into `buf` and returns it, without allocating.
    pub fn encode_hex<'a>(&self, buf: &'a mut [u8; SIGNATURE_HEX_LEN]) -> &'a str {
        // Cannot fail: the buffer is exactly twice the signature's length.
        if hex::encode_to_slice(self.as_bytes(), buf).is_err() {
            unreachable!("hex buffer has the right length");
        }
        // Hex digits are ASCII, so this is valid UTF-8 whatever happens.
        std::str::from_utf8(buf).unwrap_or_default()
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; SIGNATURE_HEX_LEN];
        f.write_str(self.encode_hex(&mut buf))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; SIGNATURE_HEX_LEN];
        let hex = self.encode_hex(&mut buf);
        write!(f, "Signature({}…)", &hex[..8])
    }
}

/// The signature of one request message: HMAC-SHA256 over the timestamp digits (as sent), the
/// method, the target and the body. The one definition of the message, for the signer and the
/// verifier alike.
#[inline]
pub(crate) fn message_signature(
    credentials: &Credentials,
    timestamp_digits: &[u8],
    method: &Method,
    target: &str,
    body: &[u8],
) -> Signature {
    sign_parts(
        credentials,
        timestamp_digits,
        method.as_str().as_bytes(),
        target.as_bytes(),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{KeyInit, Mac};

    fn signer() -> Signer {
        Signer::new(&Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv").unwrap())
    }

    #[test]
    fn docs_example_signs_the_body_as_sent() {
        let sig = signer().sign(
            1727759033,
            &Method::POST,
            "/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC",
            br#"{"dummy": "value"}"#,
        );
        assert_eq!(
            sig.to_string(),
            "558629fe8e7f4555ddbe63dd8d1523921eef1f8763ccc142e63d84c227f2ab5e"
        );
    }

    #[test]
    fn streaming_the_parts_equals_one_mac_over_the_concatenation() {
        let s = signer();
        let sig = s.sign(5, &Method::GET, "/api/x", b"");
        let whole = HmacSha256::new_from_slice(b"pk_live_asjhdvcjahsgvjqhwcasdv")
            .unwrap()
            .chain_update(b"5GET/api/x")
            .finalize();
        assert!(sig.0 == whole);
    }

    #[test]
    fn display_is_lowercase_hex() {
        let sig = signer().sign(1, &Method::GET, "/", b"");
        let text = sig.to_string();
        assert_eq!(text.len(), SIGNATURE_HEX_LEN);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn debug_shows_only_a_prefix() {
        let sig = signer().sign(1, &Method::GET, "/", b"");
        let full = sig.to_string();
        let debug = format!("{sig:?}");
        assert!(debug.starts_with("Signature("));
        assert!(debug.contains(&full[..8]));
        assert!(!debug.contains(&full[..9]));
    }

    #[test]
    fn signatures_differ_when_any_part_differs() {
        let s = signer();
        let base = s.sign(1, &Method::GET, "/a", b"x");
        assert_ne!(base, s.sign(2, &Method::GET, "/a", b"x"));
        assert_ne!(base, s.sign(1, &Method::POST, "/a", b"x"));
        assert_ne!(base, s.sign(1, &Method::GET, "/b", b"x"));
        assert_ne!(base, s.sign(1, &Method::GET, "/a", b"y"));
        assert_eq!(base, s.sign(1, &Method::GET, "/a", b"x"));
    }
}
