//! Rampnow API credentials: an API key and its secret.
//!
//! [`Credentials`] is validated when it is made, cheap to clone (clones share one allocation),
//! and careful with the secret: the secret is used once, to prepare the keyed HMAC-SHA256
//! state, and never stored as such; that keyed state is zeroized when the last clone is
//! dropped. `Debug` shows the API key and never the secret.
//!
//! # Example
//!
//! ```
//! use rampnow_auth::Credentials;
//!
//! let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv")?;
//! assert_eq!(credentials.api_key(), "ak_live_3f9a1c");
//! assert!(!format!("{credentials:?}").contains("pk_live"));
//! # Ok::<(), rampnow_auth::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;

use hmac::block_api::HmacCore;
use hmac::{Hmac, KeyInit};
use http::HeaderValue;
use sha2::Sha256;

use crate::error::{Error, ErrorKind};

pub(crate) type HmacSha256 = Hmac<Sha256>;
/// The block-level HMAC-SHA256 state inside [`HmacSha256`]: what is cloned per signature.
pub(crate) type HmacSha256Core = HmacCore<Sha256>;

/// The environment variable [`Credentials::from_env`] reads the API key from.
pub const API_KEY_ENV: &str = "RAMPNOW_API_KEY";
/// The environment variable [`Credentials::from_env`] reads the secret from.
pub const API_SECRET_ENV: &str = "RAMPNOW_API_SECRET";

/// A Rampnow API key and its secret, ready to sign with.
///
/// Clones share the same state, so cloning is an atomic increment.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    api_key: Box<str>,
    /// The API key as a header value, marked sensitive, built once.
    header: HeaderValue,
    /// HMAC-SHA256 keyed with the secret; cloned for every signature. Zeroized on drop (the
    /// `zeroize` feature of `hmac` and `sha2`).
    mac: HmacSha256Core,
}

impl Credentials {
    /// Makes credentials from an API key and its secret (used as its bytes; a `&str` secret is
    /// used as UTF-8).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidCredentials`] when the key or the secret is empty, when the key has a
    /// character other than visible ASCII (spaces and control characters included, which is
    /// what a stray newline from a file or a copy-paste looks like), or when the secret starts
    /// or ends with white space.
    ///
    /// # Example
    ///
    /// ```
    /// use rampnow_auth::{Credentials, ErrorKind};
    ///
    /// assert!(Credentials::new("ak_live_3f9a1c", "pk_live_secret").is_ok());
    /// let err = Credentials::new("ak_live_3f9a1c\n", "pk_live_secret").unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
    /// ```
    pub fn new(api_key: impl Into<String>, secret: impl AsRef<[u8]>) -> Result<Credentials, Error> {
        let api_key = api_key.into();
        let secret = secret.as_ref();
        if api_key.is_empty() {
            return Err(invalid(
                "the Rampnow API key is empty; pass the key shown in the Rampnow Partner Dashboard",
            ));
        }
        if let Some(position) = api_key.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(invalid(format!(
                "the Rampnow API key has a character that cannot be sent in a header \
                 (byte {position}: white space, a control character or non-ASCII); \
                 copy the key again from the Rampnow Partner Dashboard, without surrounding \
                 spaces or newlines"
            )));
        }
        if secret.is_empty() {
            return Err(invalid(
                "the Rampnow API secret is empty; pass the secret shown when the API key was \
                 created in the Rampnow Partner Dashboard",
            ));
        }
        if secret.first().is_some_and(u8::is_ascii_whitespace)
            || secret.last().is_some_and(u8::is_ascii_whitespace)
        {
            return Err(invalid(
                "the Rampnow API secret starts or ends with white space (often a newline read \
                 from a file); trim it before passing it, or every signature will be rejected",
            ));
        }
        let mut header = HeaderValue::from_str(&api_key).map_err(|_| {
            invalid(
                "the Rampnow API key cannot be sent in a header; pass the key exactly as the \
                     Rampnow Partner Dashboard shows it",
            )
        })?;
        header.set_sensitive(true);
        let mac = HmacSha256Core::new_from_slice(secret).map_err(|_| {
            // HMAC takes a key of any length, so this does not happen.
            invalid(
                "the Rampnow API secret cannot key HMAC-SHA256; this is a bug in \
                     rampnow-auth, please report it (without the secret)",
            )
        })?;
        Ok(Credentials {
            inner: Arc::new(Inner {
                api_key: api_key.into_boxed_str(),
                header,
                mac,
            }),
        })
    }

    /// Reads the credentials from the `RAMPNOW_API_KEY` and `RAMPNOW_API_SECRET` environment
    /// variables.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidCredentials`] naming the variable that is missing or not valid
    /// Unicode, or any error of [`Credentials::new`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use rampnow_auth::Credentials;
    ///
    /// let credentials = Credentials::from_env()?;
    /// # Ok::<(), rampnow_auth::Error>(())
    /// ```
    pub fn from_env() -> Result<Credentials, Error> {
        let api_key = env_var(API_KEY_ENV, "API key")?;
        let secret = zeroize::Zeroizing::new(env_var(API_SECRET_ENV, "API secret")?);
        Credentials::new(api_key, secret.as_bytes())
    }

    /// The API key (it is not secret; it is sent in clear in a header over TLS).
    #[must_use]
    pub fn api_key(&self) -> &str {
        &self.inner.api_key
    }

    /// The API key as a sensitive header value.
    pub(crate) fn header_value(&self) -> &HeaderValue {
        &self.inner.header
    }

    /// The keyed HMAC state, to clone for one signature.
    pub(crate) fn mac(&self) -> &HmacSha256Core {
        &self.inner.mac
    }
}

fn env_var(name: &str, what: &str) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => Err(invalid(format!(
            "{name} is not set; export it with your Rampnow {what} \
             (RAMPNOW_API_KEY and RAMPNOW_API_SECRET are both needed)"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(invalid(format!(
            "{name} is not valid Unicode; set it to your Rampnow {what} as shown in the \
             Partner Dashboard"
        ))),
    }
}

fn invalid(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::InvalidCredentials, message)
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.api_key())
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "pk_live_asjhdvcjahsgvjqhwcasdv";

    #[test]
    fn valid_credentials_keep_the_key_and_mark_the_header_sensitive() {
        let c = Credentials::new("ak_live_3f9a1c", SECRET).unwrap();
        assert_eq!(c.api_key(), "ak_live_3f9a1c");
        assert_eq!(c.header_value(), "ak_live_3f9a1c");
        assert!(c.header_value().is_sensitive());
    }

    #[test]
    fn clones_share_state() {
        let c = Credentials::new("k", SECRET).unwrap();
        let d = c.clone();
        assert!(Arc::ptr_eq(&c.inner, &d.inner));
    }

    #[test]
    fn bad_keys_and_secrets_are_refused_with_a_reason() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("", b"s", "API key is empty"),
            ("k", b"", "API secret is empty"),
            ("ak live", b"s", "byte 2"),
            ("ak\n", b"s", "byte 2"),
            ("\0", b"s", "byte 0"),
            ("clé", b"s", "byte 2"),
            ("k", b"secret\n", "white space"),
            ("k", b" secret", "white space"),
        ];
        for (key, secret, reason) in cases {
            let err = Credentials::new(*key, secret).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidCredentials, "{key:?}");
            assert!(err.to_string().contains(reason), "{err} for {key:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credentials::new("ak_live_3f9a1c", SECRET).unwrap();
        let debug = format!("{c:?} {c:#?}");
        assert!(debug.contains("ak_live_3f9a1c"));
        assert!(!debug.contains(SECRET));
    }
}
