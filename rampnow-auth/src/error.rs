//! The crate's error type: what went wrong, and what to do about it.
//!
//! Every error the crate raises itself is an [`Error`]. Its [`kind`](Error::kind) is for
//! code to match on; its `Display` is for people, and always says what to do next. No error
//! ever contains a secret, a signature or a request body.
//!
//! When the signing middleware fails, it returns a [`tower::BoxError`]; errors it raised
//! itself downcast to [`Error`], while errors of the inner service pass through unchanged.
//!
//! # Example
//!
//! ```
//! use rampnow_auth::{Credentials, ErrorKind};
//!
//! let err = Credentials::new("", "secret").unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
//! assert!(err.to_string().contains("API key is empty"));
//! ```

use std::borrow::Cow;
use std::fmt;

use tower::BoxError;

/// The category of an [`Error`].
///
/// New kinds may be added in minor releases, so a `match` needs a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The API key or secret is empty, missing from the environment, or not usable in a
    /// header.
    InvalidCredentials,
    /// A custom header-name triple is not valid (a name that is not a header name, or the same
    /// name twice).
    InvalidHeaderNames,
    /// The request would have gone out over plain `http://` (or another scheme that is not
    /// `https`), which would send the API key in clear; or, with
    /// [`allow_http(true)`](crate::RampnowAuthLayer::allow_http), over `http://` to a host that
    /// is not loopback.
    InsecureScheme,
    /// The request URI is not absolute: it has no scheme and host (origin form, such as
    /// `/api/partner/v1/...`), so the transport, not the signer, would decide where the API key
    /// goes and whether over TLS. Nothing is signed; use an absolute `https://` URI.
    RelativeUri,
    /// The request cannot be signed as it stands: its target is not a path (`*` or authority
    /// form), or its method is not in upper case.
    InvalidRequest,
    /// A pinned origin is not of the form `scheme://host[:port]`.
    InvalidOrigin,
    /// Origin pinning is on and the request goes elsewhere (or has no origin to check).
    OriginNotAllowed,
    /// The request body is larger than the configured maximum.
    BodyTooLarge,
    /// The request body failed while it was being read, or carries trailers, which the
    /// signature cannot cover.
    Body,
    /// The clock returned a time that cannot be a Unix timestamp (before 1970).
    Clock,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidCredentials => "invalid credentials",
            ErrorKind::InvalidHeaderNames => "invalid header names",
            ErrorKind::InsecureScheme => "insecure scheme",
            ErrorKind::RelativeUri => "relative uri",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::InvalidOrigin => "invalid origin",
            ErrorKind::OriginNotAllowed => "origin not allowed",
            ErrorKind::BodyTooLarge => "body too large",
            ErrorKind::Body => "body error",
            ErrorKind::Clock => "clock error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error raised by this crate.
///
/// Use [`kind`](Error::kind) to tell errors apart; the message (`Display`) explains the cause
/// and the fix. [`source`](std::error::Error::source) returns the underlying error where there
/// is one (for example the request body's own error).
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of error this is.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_and_static() {
        fn assert<T: Send + Sync + 'static + std::error::Error>() {}
        assert::<Error>();
    }

    #[test]
    fn display_is_the_message_and_source_is_kept() {
        let io = std::io::Error::other("connection reset");
        let err = Error::new(ErrorKind::Body, "failed to read the request body").with_source(io);
        assert_eq!(err.to_string(), "failed to read the request body");
        let source = std::error::Error::source(&err).expect("source kept");
        assert_eq!(source.to_string(), "connection reset");
        assert_eq!(ErrorKind::Body.to_string(), "body error");
    }
}
