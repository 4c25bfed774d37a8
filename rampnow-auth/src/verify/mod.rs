//! The other side: [`RampnowVerifyLayer`] checks Rampnow signatures on a server.
//!
//! It checks each request exactly as Rampnow's documentation describes, from the request
//! target and body bytes *as received*:
//!
//! - a request target that starts with `/` (origin form, or an absolute URI with a path):
//!   `CONNECT`, a bare host (authority form) and `*` (asterisk form) carry nothing a signature
//!   could cover as received, and are refused;
//! - each of the three headers present exactly once, from one header set (both
//!   [`HeaderNames::RN`] and [`HeaderNames::X_RAMPNOW`] are accepted by default, since an
//!   account may be on either version of the docs; [`header_names`](RampnowVerifyLayer::header_names)
//!   narrows it to one set);
//! - a known API key ([`KeyStore`]);
//! - a timestamp of plain ASCII digits (at most 20), within the tolerance of the server's clock
//!   (60 s either way by default);
//! - a signature of exactly 64 hex digits in either case, equal, compared in constant time,
//!   to the HMAC-SHA256 of timestamp, method, target and body;
//! - optionally, a signature not seen before ([`reject_replays`](RampnowVerifyLayer::reject_replays)
//!   or [`replay_store`](RampnowVerifyLayer::replay_store)).
//!
//! The target and header checks come first, so a request that fails them is refused without
//! its body being read. A refused request never reaches the inner service: the layer answers
//! with a JSON body `{"code": "<code>", "error": "<code>", "reason": "<what to fix>"}` (`code`
//! as Rampnow's error bodies carry it, `error` the same value; never revealing the expected
//! signature), and the [`Rejection`] in the response's extensions for logging. The
//! status, by [`RejectionKind`]:
//!
//! | status | codes |
//! |---|---|
//! | 400 | `invalid_target` (CONNECT, a target without a path), `body_error` (a body that fails to read, or has trailers) |
//! | 401 | `missing_header`, `duplicate_header`, `unknown_api_key`, `invalid_timestamp`, `stale_timestamp`, `invalid_signature`, `signature_mismatch`, `replayed` |
//! | 408 | `body_timeout` (the body did not arrive whole in time), with `Connection: close` |
//! | 413 | `body_too_large` |
//! | 500 | `server_clock` (the server's clock is before 1970), `server_timer` (a body read timeout without a Tokio timer) |
//! | 503 | `replay_memory_full`, `replay_store_unavailable`, with `Retry-After` |
//!
//! # Reading the body
//!
//! The body is read whole (up to [`max_body_size`](RampnowVerifyLayer::max_body_size)) before
//! the signature is checked, within [`body_read_timeout`](RampnowVerifyLayer::body_read_timeout)
//! (30 s by default) for the whole body, so a client trickling it a byte at a time cannot hold
//! the request open. The timer is Tokio's and is made only for a body that is not ready at
//! once: a body already in memory needs no runtime, and with the timeout off the verifier runs
//! on any executor (see [`body_read_timeout`](RampnowVerifyLayer::body_read_timeout) for what
//! happens without a Tokio timer).
//!
//! # Replay protection
//!
//! With replay protection on, each request whose signature verified is checked against a
//! [`ReplayStore`], and only such requests are remembered (a client without the secret cannot
//! fill the memory). The store never forgets a signature while its timestamp is within the
//! tolerance: when it has no room it says so, and the request is refused with `503` and a
//! `Retry-After` of the seconds until the oldest signature expires, rather than accepted
//! unchecked. [`MemoryReplayStore`] (what
//! [`reject_replays`](RampnowVerifyLayer::reject_replays) builds) keeps any one API key to half
//! of its capacity by default, so one busy key cannot get the others refused; its docs say how
//! to size it (a signature stays remembered for up to 2 × tolerance + 1 s).
//!
//! A `#fragment` never reaches the verifier: the `http` crate drops it while parsing a URI
//! (and clients do not send one), so the target checked is the path and query alone.
//!
//! An accepted request reaches the inner service with its body as a
//! [`SignedBody`](crate::SignedBody) and the [`VerifiedApiKey`] in its extensions.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use rampnow_auth::verify::{RampnowVerifyLayer, Rejection, VerifiedApiKey};
//! use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv")?;
//! let server = RampnowVerifyLayer::new(credentials.clone()).layer(service_fn(
//!     |req: Request<SignedBody>| async move {
//!         let key = req.extensions().get::<VerifiedApiKey>().unwrap().as_str().to_owned();
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(key))))
//!     },
//! ));
//! // A client signs...
//! let client = RampnowAuthLayer::new(credentials).layer(server.clone());
//! let ok = client.oneshot(Request::get("https://api.rampnow.io/x").body(SignedBody::empty())?).await?;
//! assert_eq!(ok.status(), StatusCode::OK);
//!
//! // ...an unsigned request is refused, and the inner service never sees it.
//! let refused = server.oneshot(Request::get("/x").body(SignedBody::empty())?).await?;
//! assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
//! let rejection = refused.extensions().get::<Rejection>().unwrap();
//! assert_eq!(rejection.code(), "missing_header");
//! # Ok::<(), tower::BoxError>(())
//! # }).unwrap();
//! ```

mod future;
mod layer;
#[cfg(feature = "redis")]
mod redis;
mod replay;
mod service;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::RedisReplayStore;
pub use future::ResponseFuture;
pub use layer::RampnowVerifyLayer;
pub use replay::{MemoryReplayStore, ReplayCheck, ReplayFuture, ReplayStore};
pub use service::RampnowVerify;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};

use crate::body::BodyFailure;
use crate::clock::{unix_seconds, Clock, SystemClock, MAX_TIMESTAMP_DIGITS};
use crate::credentials::Credentials;
use crate::headers::HeaderNames;
use crate::keys::KeyStore;
use crate::signer::message_signature;
use crate::signer::Signature;

/// The default [`tolerance`](RampnowVerifyLayer::tolerance): 60 seconds, as Rampnow's.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(60);

/// The default [`body_read_timeout`](RampnowVerifyLayer::body_read_timeout): 30 seconds for
/// the whole body. Rampnow request bodies are small JSON documents (a quote, an order), sent
/// in well under a second even on a slow link; 30 s leaves room for a stalled mobile
/// connection while still cutting a body trickled a byte at a time to hold the server.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request was refused. Attached to the refusal's response extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// One of the three headers is missing (401).
    MissingHeader,
    /// One of the three headers is present more than once (401).
    DuplicateHeader,
    /// The API key is not in the key store (401).
    UnknownApiKey,
    /// The timestamp is not plain ASCII digits, or has more than 20 (401).
    InvalidTimestamp,
    /// The timestamp is further from the server's clock than the tolerance (401).
    StaleTimestamp,
    /// The signature is not 64 hex digits (401).
    InvalidSignature,
    /// The signature does not match the request (401).
    SignatureMismatch,
    /// The signature was already used (with replay protection on) (401).
    Replayed,
    /// The body is larger than the limit (413).
    BodyTooLarge,
    /// The body failed to read, or had trailers (400).
    Body,
    /// The server's own clock is before 1970 (500).
    ServerClock,
    /// The replay memory has no room for the signature, so it cannot be accepted safely;
    /// sent with `Retry-After` (503).
    ReplayMemoryFull,
    /// The replay memory could not be asked (a shared store such as Redis down or slow), so
    /// the request cannot be checked for replays; sent with `Retry-After` (503).
    ReplayStoreUnavailable,
    /// The body did not arrive whole within the
    /// [`body_read_timeout`](RampnowVerifyLayer::body_read_timeout) (408, sent with
    /// `Connection: close`).
    BodyTimeout,
    /// A body read timeout is set but there is no Tokio timer to run it: the server's fault
    /// (500).
    ServerTimer,
    /// The request target has no path starting with `/` (authority form, asterisk form), or
    /// the method is `CONNECT`: nothing the signature could cover as received (400).
    InvalidTarget,
}

impl RejectionKind {
    /// The HTTP status the refusal is sent with.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            RejectionKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RejectionKind::Body | RejectionKind::InvalidTarget => StatusCode::BAD_REQUEST,
            RejectionKind::ServerClock | RejectionKind::ServerTimer => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            RejectionKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            RejectionKind::ReplayMemoryFull | RejectionKind::ReplayStoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The machine-readable code, the `error` field of the JSON body.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            RejectionKind::MissingHeader => "missing_header",
            RejectionKind::DuplicateHeader => "duplicate_header",
            RejectionKind::UnknownApiKey => "unknown_api_key",
            RejectionKind::InvalidTimestamp => "invalid_timestamp",
            RejectionKind::StaleTimestamp => "stale_timestamp",
            RejectionKind::InvalidSignature => "invalid_signature",
            RejectionKind::SignatureMismatch => "signature_mismatch",
            RejectionKind::Replayed => "replayed",
            RejectionKind::BodyTooLarge => "body_too_large",
            RejectionKind::Body => "body_error",
            RejectionKind::ServerClock => "server_clock",
            RejectionKind::InvalidTarget => "invalid_target",
            RejectionKind::BodyTimeout => "body_timeout",
            RejectionKind::ServerTimer => "server_timer",
            RejectionKind::ReplayMemoryFull => "replay_memory_full",
            RejectionKind::ReplayStoreUnavailable => "replay_store_unavailable",
        }
    }
}

/// A refused request: its kind and a reason for people. Found in the extensions of the
/// response the verifier sends instead of calling the inner service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    reason: Cow<'static, str>,
    retry_after: Option<u64>,
}

impl Rejection {
    fn new(kind: RejectionKind, reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection {
            kind,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// Why the request was refused.
    #[must_use]
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The machine-readable code (`self.kind().code()`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The status it is sent with (`self.kind().status()`).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// What was wrong and what the client should do, in words.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// When the client may try again, in whole seconds (at least one): the `Retry-After`
    /// header sent with the refusal. Only for
    /// [`ReplayMemoryFull`](RejectionKind::ReplayMemoryFull).
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after.map(Duration::from_secs)
    }

    /// The refusal as a response: status, `application/json` body, and `self` in extensions.
    pub(crate) fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let body = format!(
            "{{\"code\":\"{code}\",\"error\":\"{code}\",\"reason\":\"{reason}\"}}",
            code = self.code(),
            reason = json_escape(&self.reason)
        );
        let mut response = Response::new(B::from(Bytes::from(body)));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.kind == RejectionKind::BodyTimeout {
            // The rest of the body may still be trickling in: do not keep the connection for it.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.reason)
    }
}

/// A `Retry-After` in whole seconds: rounded up, at least one.
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

/// Reasons are the crate's own sentences; escape them anyway so the body is always JSON.
fn json_escape(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The API key that a request was verified with, in the extensions of the request the inner
/// service receives.
///
/// It shares the key store's [`Credentials`] (a reference count, no copy of the key); `Debug`
/// shows the key only.
#[derive(Clone)]
pub struct VerifiedApiKey(Credentials);

impl VerifiedApiKey {
    /// The API key.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.api_key()
    }
}

impl PartialEq for VerifiedApiKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for VerifiedApiKey {}

impl fmt::Debug for VerifiedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifiedApiKey")
            .field(&self.as_str())
            .finish()
    }
}

/// Configuration shared by a verify layer and its services.
#[derive(Clone)]
pub(crate) struct VerifyConfig {
    keys: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    names: Vec<HeaderNames>,
    tolerance: Duration,
    pub(crate) max_body_size: usize,
    pub(crate) body_read_timeout: Option<Duration>,
    replay: Option<Arc<dyn ReplayStore>>,
    /// The same store as `replay` when it is a [`MemoryReplayStore`], for its counts.
    replay_memory: Option<Arc<MemoryReplayStore>>,
}

/// What the headers claim, checked as far as it can be before the body is read.
pub(crate) struct Claim {
    credentials: Credentials,
    /// The timestamp header's digits as received (they are signed as sent, leading zeros
    /// included), kept inline rather than as a clone of the header value.
    digits: [u8; MAX_TIMESTAMP_DIGITS],
    digits_len: usize,
    seconds: u64,
    signature: Signature,
}

impl VerifyConfig {
    fn new(keys: Arc<dyn KeyStore>) -> VerifyConfig {
        VerifyConfig {
            keys,
            clock: Arc::new(SystemClock),
            names: vec![HeaderNames::RN, HeaderNames::X_RAMPNOW],
            tolerance: DEFAULT_TOLERANCE,
            max_body_size: crate::sign::DEFAULT_MAX_BODY_SIZE,
            body_read_timeout: Some(DEFAULT_BODY_READ_TIMEOUT),
            replay: None,
            replay_memory: None,
        }
    }

    /// Checks that the request target is one a signature can cover as received: a path (and
    /// query) starting with `/`, and not a `CONNECT` tunnel.
    pub(crate) fn check_target(method: &Method, uri: &Uri) -> Result<(), Rejection> {
        if method == Method::CONNECT {
            return Err(Rejection::new(
                RejectionKind::InvalidTarget,
                "CONNECT asks for a tunnel, which a Rampnow signature cannot cover; send the API \
                 request itself (such as GET or POST /api/partner/v1/...) straight to this \
                 server, signed over that path",
            ));
        }
        match uri.path_and_query().map(PathAndQuery::as_str) {
            Some(target) if target.starts_with('/') => Ok(()),
            Some("*") => Err(Rejection::new(
                RejectionKind::InvalidTarget,
                "the request target is `*` (asterisk form), which has no path to sign; send the \
                 request to a path starting with /, such as /api/partner/v1/..., signed over \
                 that path",
            )),
            _ => Err(Rejection::new(
                RejectionKind::InvalidTarget,
                "the request target has no path (a bare host, as CONNECT uses, or an absolute \
                 URI without one); send a target starting with /, such as \
                 /api/partner/v1/..., signed over exactly that path and query",
            )),
        }
    }

    /// Checks the headers: presence, key, timestamp, signature format.
    pub(crate) fn check_headers(
        &self,
        headers: &HeaderMap,
        body_lower_bound: u64,
    ) -> Result<Claim, Rejection> {
        // The header set in use is the one whose API key header is there (one lookup for the
        // usual request); without any, the one with any of its headers, for the message.
        let found = self.names.iter().find_map(|names| {
            let mut values = headers.get_all(names.api_key()).iter();
            values
                .next()
                .map(|first| (names, first, values.next().is_some()))
        });
        let (names, api_key) = match found {
            Some((names, value, false)) => (names, value),
            Some((names, _, true)) => return Err(duplicate(names.api_key())),
            None => {
                let names = self
                    .names
                    .iter()
                    .find(|n| {
                        headers.contains_key(n.timestamp()) || headers.contains_key(n.signature())
                    })
                    .unwrap_or(&self.names[0]);
                return Err(missing(names.api_key()));
            }
        };
        let timestamp = one(headers, names.timestamp())?;
        let signature = one(headers, names.signature())?;

        let credentials = api_key
            .to_str()
            .ok()
            .and_then(|key| self.keys.credentials(key))
            .ok_or_else(|| {
                Rejection::new(
                    RejectionKind::UnknownApiKey,
                    format!(
                        "the {} header holds an API key this server does not know; send the \
                         key shown in the Rampnow Partner Dashboard",
                        names.api_key()
                    ),
                )
            })?;

        let digits = timestamp.as_bytes();
        if digits.is_empty()
            || digits.len() > MAX_TIMESTAMP_DIGITS
            || !digits.iter().all(u8::is_ascii_digit)
        {
            return Err(Rejection::new(
                RejectionKind::InvalidTimestamp,
                format!(
                    "the {} header must be whole seconds since the Unix epoch in plain decimal \
                     digits (at most {MAX_TIMESTAMP_DIGITS}, no sign or spaces)",
                    names.timestamp()
                ),
            ));
        }
        // Digits only, so the one failure left is a value past u64::MAX: far in the future.
        let seconds = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        self.check_fresh(seconds)?;

        let signature = signature
            .to_str()
            .ok()
            .and_then(Signature::from_hex)
            .ok_or_else(|| {
                Rejection::new(
                    RejectionKind::InvalidSignature,
                    format!(
                        "the {} header must be the 64 hex digits of the HMAC-SHA256, keyed with the API \
                         secret, of timestamp + METHOD + path and query + body, as sent",
                        names.signature()
                    ),
                )
            })?;

        if body_lower_bound > self.max_body_size as u64 {
            return Err(self.body_rejection(BodyFailure::TooLarge));
        }
        let mut inline = [0u8; MAX_TIMESTAMP_DIGITS];
        inline[..digits.len()].copy_from_slice(digits);
        Ok(Claim {
            credentials,
            digits: inline,
            digits_len: digits.len(),
            seconds,
            signature,
        })
    }

    /// Checks the signature over the request as received; with replay protection on, asks the
    /// replay memory (the answer is for [`replay_rejection`](Self::replay_rejection)).
    /// The server's clock in Unix seconds, if `seconds` (a request's timestamp) is within the
    /// tolerance of it.
    fn check_fresh(&self, seconds: u64) -> Result<u64, Rejection> {
        let now = unix_seconds(self.clock.now()).map_err(|_| {
            Rejection::new(
                RejectionKind::ServerClock,
                "the server's clock reads a time before 1970, so no timestamp can be checked; this \
                 is the server's fault: send the request again once its operator has fixed the \
                 server's clock",
            )
        })?;
        let tolerance = self.tolerance.as_secs();
        if seconds.abs_diff(now) > tolerance {
            let (distance, direction) = if seconds < now {
                (now - seconds, "behind")
            } else {
                (seconds - now, "ahead of")
            };
            return Err(Rejection::new(
                RejectionKind::StaleTimestamp,
                format!(
                    "the timestamp is {distance} s {direction} the server's clock ({now}); it \
                     must be within {tolerance} s. Sign each request (and each retry) when it is \
                     sent, send its body at once, and keep the client's clock in sync"
                ),
            ));
        }
        Ok(now)
    }

    pub(crate) fn check_signature(
        &self,
        claim: Claim,
        method: &Method,
        target: Option<&PathAndQuery>,
        body: &[u8],
    ) -> Result<(VerifiedApiKey, Option<ReplayFuture>), Rejection> {
        // The message the signer signs, defined once in the signing core.
        let expected = message_signature(
            &claim.credentials,
            &claim.digits[..claim.digits_len],
            method,
            target.map_or("/", PathAndQuery::as_str),
            body,
        );
        // Constant-time comparison (`Signature`'s `PartialEq`).
        if expected != claim.signature {
            return Err(Rejection::new(
                RejectionKind::SignatureMismatch,
                "the signature does not match the request; sign timestamp + METHOD + path and \
                 query exactly as sent + the body bytes exactly as sent, with the API secret",
            ));
        }
        // Only now, with the signature verified, is anything remembered: a client without the
        // secret cannot fill the replay memory.
        let replay = match &self.replay {
            None => None,
            Some(store) => {
                // The clock again, now that the body is in: a replay whose body was held back
                // until the original left the window (and the memory) is stale by now, and the
                // store is asked with the time it is asked at.
                let now = self.check_fresh(claim.seconds)?;
                let until = claim.seconds.saturating_add(self.tolerance.as_secs());
                Some(store.check(claim.credentials.api_key(), &claim.signature, now, until))
            }
        };
        Ok((VerifiedApiKey(claim.credentials), replay))
    }

    /// The refusal for a replay memory's answer, or `None` to go on.
    pub(crate) fn replay_rejection(check: ReplayCheck) -> Option<Rejection> {
        match check {
            ReplayCheck::First => None,
            ReplayCheck::Replayed => Some(Rejection::new(
                RejectionKind::Replayed,
                "this signature was already used; sign every request afresh, retries included",
            )),
            ReplayCheck::Full { retry_after } => {
                let seconds = whole_seconds(retry_after);
                let mut rejection = Rejection::new(
                    RejectionKind::ReplayMemoryFull,
                    format!(
                        "the server's memory of recent signatures is full, so this request \
                         cannot be checked for replays and was not processed; send it again \
                         after {seconds} s (Retry-After), signed afresh"
                    ),
                );
                rejection.retry_after = Some(seconds);
                Some(rejection)
            }
            ReplayCheck::Unavailable { retry_after } => {
                let seconds = whole_seconds(retry_after);
                let mut rejection = Rejection::new(
                    RejectionKind::ReplayStoreUnavailable,
                    format!(
                        "the server's shared memory of recent signatures did not answer, so \
                         this request cannot be checked for replays and was not processed; \
                         send it again after {seconds} s (Retry-After), signed afresh"
                    ),
                );
                rejection.retry_after = Some(seconds);
                Some(rejection)
            }
        }
    }

    pub(crate) fn body_timeout_rejection(timeout: Duration) -> Rejection {
        Rejection::new(
            RejectionKind::BodyTimeout,
            format!(
                "the request body did not arrive whole within this server's limit of {}; \
                 send the whole body at once, right after the headers (sign it again if the \
                 retry comes later)",
                if timeout.subsec_nanos() == 0 {
                    format!("{} s", timeout.as_secs())
                } else {
                    format!("{} ms", timeout.as_millis())
                }
            ),
        )
    }

    pub(crate) fn no_timer_rejection() -> Rejection {
        Rejection::new(
            RejectionKind::ServerTimer,
            "the server cannot time the reading of this request body: its verifier has a body \
             read timeout but runs without a Tokio runtime with the time driver. This is the \
             server's fault: send the request again once its operator has enabled Tokio's time \
             driver or turned the timeout off",
        )
    }

    pub(crate) fn body_rejection(&self, failure: BodyFailure) -> Rejection {
        match failure {
            BodyFailure::TooLarge => Rejection::new(
                RejectionKind::BodyTooLarge,
                format!(
                    "the request body is larger than this server's limit of {} bytes; send a smaller \
                     body",
                    self.max_body_size
                ),
            ),
            BodyFailure::Trailers => Rejection::new(
                RejectionKind::Body,
                "the request body has trailers, which the signature cannot cover; send it \
                 without trailers",
            ),
            BodyFailure::Failed(_) => Rejection::new(
                RejectionKind::Body,
                "the request body could not be read to the end; send the request again",
            ),
        }
    }
}

fn one<'h>(headers: &'h HeaderMap, name: &http::HeaderName) -> Result<&'h HeaderValue, Rejection> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(value),
        (None, _) => Err(missing(name)),
        (Some(_), Some(_)) => Err(duplicate(name)),
    }
}

fn missing(name: &http::HeaderName) -> Rejection {
    Rejection::new(
        RejectionKind::MissingHeader,
        format!(
            "the {name} header is missing; every Rampnow request carries the API key, timestamp \
             and signature headers"
        ),
    )
}

fn duplicate(name: &http::HeaderName) -> Rejection {
    Rejection::new(
        RejectionKind::DuplicateHeader,
        format!("the {name} header is sent more than once; send it exactly once"),
    )
}

impl fmt::Debug for VerifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyConfig")
            .field("header_names", &self.names)
            .field("tolerance", &self.tolerance)
            .field("max_body_size", &self.max_body_size)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("replay", &self.replay.is_some())
            .field(
                "replay_capacity",
                &self.replay_memory.as_ref().map(|r| r.capacity()),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_body_is_json_with_code_error_and_reason() {
        let reasons = [
            "plain",
            "with \"quotes\" and \\ backslash",
            "control \u{1} char\nnewline",
        ];
        for reason in reasons {
            let response: Response<Bytes> =
                Rejection::new(RejectionKind::SignatureMismatch, reason.to_owned()).into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(json["code"], "signature_mismatch");
            assert_eq!(json["error"], "signature_mismatch");
            assert_eq!(json["reason"], reason);
            assert!(response.extensions().get::<Rejection>().is_some());
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(
            RejectionKind::BodyTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(RejectionKind::Body.status(), StatusCode::BAD_REQUEST);
        assert_eq!(RejectionKind::Replayed.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            RejectionKind::InvalidTarget.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(RejectionKind::InvalidTarget.code(), "invalid_target");
        assert_eq!(
            RejectionKind::ReplayMemoryFull.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(RejectionKind::ReplayMemoryFull.code(), "replay_memory_full");
        assert_eq!(
            RejectionKind::BodyTimeout.status(),
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(RejectionKind::BodyTimeout.code(), "body_timeout");
        assert_eq!(
            RejectionKind::ServerTimer.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(RejectionKind::ServerTimer.code(), "server_timer");
    }

    #[test]
    fn an_unavailable_replay_store_is_its_own_503() {
        let rejection = VerifyConfig::replay_rejection(ReplayCheck::Unavailable {
            retry_after: Duration::from_millis(1_500),
        })
        .unwrap();
        assert_eq!(rejection.kind(), RejectionKind::ReplayStoreUnavailable);
        assert_eq!(rejection.code(), "replay_store_unavailable");
        assert!(rejection.reason().contains("did not answer"));
        let response: Response<Bytes> = rejection.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
    }

    #[test]
    fn a_full_replay_memory_is_a_503_with_retry_after_rounded_up() {
        for (wait, header) in [(0, "1"), (1_000, "1"), (1_001, "2"), (61_000, "61")] {
            let rejection = VerifyConfig::replay_rejection(ReplayCheck::Full {
                retry_after: Duration::from_millis(wait),
            })
            .unwrap();
            let response: Response<Bytes> = rejection.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[RETRY_AFTER], header, "{wait} ms");
        }
        assert!(VerifyConfig::replay_rejection(ReplayCheck::First).is_none());
    }

    #[test]
    fn a_body_timeout_is_a_408_that_closes_the_connection() {
        for (timeout, shown) in [
            (Duration::from_secs(30), "30 s"),
            (Duration::from_millis(1_500), "1500 ms"),
        ] {
            let rejection = VerifyConfig::body_timeout_rejection(timeout);
            assert!(rejection.reason().contains(shown), "{}", rejection.reason());
            let response: Response<Bytes> = rejection.into_response();
            assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
            assert_eq!(response.headers()[CONNECTION], "close");
        }
    }
}
