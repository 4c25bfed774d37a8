//! The signing middleware: [`RampnowAuthLayer`] and the service it builds, [`RampnowAuth`].
//!
//! For each request the service
//!
//! 1. refuses, before anything is read or sent, a URI that is not absolute (`/api/...` with no
//!    scheme and host: the transport would pick the destination, perhaps over plain TCP), a
//!    scheme other than `https` (with [`allow_http`](RampnowAuthLayer::allow_http), `http`
//!    to a loopback host only), an origin that is not [pinned](RampnowAuthLayer::pin_origins)
//!    (when origins are pinned), a target that is not a path, and a method that is not in
//!    upper case;
//! 2. reads the whole body, up to [`max_body_size`](RampnowAuthLayer::max_body_size). A body
//!    already in memory — a [`SignedBody`](crate::SignedBody), an `http_body_util::Full<Bytes>`
//!    or `Empty<Bytes>`, a `String`, or any body that says it has ended — is taken as it is,
//!    without a copy, and signed in `call`: the inner service made ready for the request is
//!    called at once, and is not cloned. Any other body is read by the response future, which
//!    then calls a clone of the inner service (a body in several frames is copied once);
//! 3. only then reads the clock, so a slow body never makes a stale signature;
//! 4. signs the timestamp, the method, the request target exactly as it goes on the wire (an
//!    absolute URI with no path is sent and signed as `/`; the query is kept byte for byte) and
//!    the body bytes;
//! 5. sets the three headers, replacing any value already there (never duplicating it), with
//!    the API key and the signature marked sensitive;
//! 6. calls the inner service with the body as a [`SignedBody`](crate::SignedBody) of exactly
//!    the signed bytes.
//!
//! Errors the middleware raises itself are [`crate::Error`]s inside a [`tower::BoxError`];
//! errors of the inner service pass through unchanged.
//!
//! # Where it goes in a stack
//!
//! Outside the layer (listed before it in a `ServiceBuilder`): retries, so each attempt is
//! signed afresh; timeouts; redirect following; anything that decides *whether* and *where* to
//! send. Inside it (after it): only the transport. Nothing inside the layer may change the
//! body, the method or the URI — no compression, no body rewriting — or the signature no
//! longer matches what is sent.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use http::Request;
//! use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio_test_block_on(async {
//! let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv")?;
//! let client = ServiceBuilder::new()
//!     .layer(
//!         RampnowAuthLayer::new(credentials)
//!             .with_clock(|| UNIX_EPOCH + Duration::from_secs(1727759033)),
//!     )
//!     .service(service_fn(|req: Request<SignedBody>| async move {
//!         // A real client (hyper, ...) goes here; this one returns the headers it got.
//!         Ok::<_, std::convert::Infallible>(http::Response::new(req.headers().clone()))
//!     }));
//!
//! let request = Request::post("https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC")
//!     .body(SignedBody::from(r#"{"dummy": "value"}"#))?;
//! let headers = client.oneshot(request).await?.into_body();
//! assert_eq!(headers["rn-api-key"], "ak_live_3f9a1c");
//! assert_eq!(headers["rn-access-timestamp"], "1727759033");
//! assert_eq!(
//!     headers["rn-access-sign"],
//!     "558629fe8e7f4555ddbe63dd8d1523921eef1f8763ccc142e63d84c227f2ab5e"
//! );
//! # Ok::<(), tower::BoxError>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::RampnowAuthLayer;
pub use service::RampnowAuth;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::{Buf, Bytes};
use http::header::CONTENT_LENGTH;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::clock::{unix_seconds, Clock, SystemClock, MAX_TIMESTAMP_DIGITS};
use crate::credentials::Credentials;
use crate::error::{Error, ErrorKind};
use crate::headers::{HeaderNames, Preset};
use crate::receipt::{Seed, SignaturePrefix, SigningReceipt};
use crate::signer::{sign_parts, Signature, SIGNATURE_HEX_LEN};
use crate::sync::{OriginTime, ServerTime};

/// The default [`max_body_size`](RampnowAuthLayer::max_body_size): 10 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 10 * 1024 * 1024;

/// Swaps the credentials of a layer, and of every service built from it, at once.
///
/// Got from [`RampnowAuthLayer::credentials_handle`]. A rotation takes effect from the next
/// request that starts signing; a request signs with one snapshot of the credentials (its API
/// key header and its signature always match). Reading the credentials on the signing path
/// takes no lock.
///
/// # Example
///
/// ```
/// use rampnow_auth::{Credentials, RampnowAuthLayer};
///
/// let layer = RampnowAuthLayer::new(Credentials::new("ak_live_old", "pk_live_old")?);
/// let handle = layer.credentials_handle();
/// handle.rotate(Credentials::new("ak_live_new", "pk_live_new")?);
/// assert_eq!(handle.current().api_key(), "ak_live_new");
/// # Ok::<(), rampnow_auth::Error>(())
/// ```
#[derive(Clone)]
pub struct CredentialsHandle {
    cell: Arc<ArcSwap<Credentials>>,
}

impl CredentialsHandle {
    /// Replaces the credentials for every clone of the layer and every service built from it.
    pub fn rotate(&self, credentials: Credentials) {
        self.cell.store(Arc::new(credentials));
    }

    /// The credentials signing now.
    #[must_use]
    pub fn current(&self) -> Credentials {
        Credentials::clone(&self.cell.load())
    }
}

impl fmt::Debug for CredentialsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsHandle")
            .field("current", &*self.cell.load())
            .finish()
    }
}

/// One origin a pinned layer may send credentials to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Origin {
    pub(crate) fn parse(text: &str) -> Result<Origin, Error> {
        let invalid = || {
            Error::new(
                ErrorKind::InvalidOrigin,
                format!(
                    "{text:?} is not an origin; write it as scheme://host[:port], such as \
                     https://api.rampnow.io"
                ),
            )
        };
        let uri: Uri = text.parse().map_err(|_| invalid())?;
        let has_path = uri
            .path_and_query()
            .is_some_and(|pq| pq.as_str() != "/" && !pq.as_str().is_empty());
        match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) if !has_path => {
                Origin::of(scheme, authority).ok_or_else(invalid)
            }
            _ => Err(invalid()),
        }
    }

    pub(crate) fn of(scheme: &Scheme, authority: &Authority) -> Option<Origin> {
        let port = port_of(scheme, authority)?;
        Some(Origin {
            scheme: scheme.clone(),
            host: authority.host().to_ascii_lowercase(),
            port,
        })
    }

    pub(crate) fn matches(&self, uri: &Uri) -> bool {
        match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                *scheme == self.scheme
                    && port_of(scheme, authority) == Some(self.port)
                    && authority.host().eq_ignore_ascii_case(&self.host)
            }
            _ => false,
        }
    }
}

/// The port a URI goes to: the explicit one, or the scheme's default (`None` for a scheme
/// without one).
fn port_of(scheme: &Scheme, authority: &Authority) -> Option<u16> {
    authority.port_u16().or(if *scheme == Scheme::HTTPS {
        Some(443)
    } else if *scheme == Scheme::HTTP {
        Some(80)
    } else {
        None
    })
}

/// Configuration shared by a layer and every service it builds.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) credentials: Arc<ArcSwap<Credentials>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) names: HeaderNames,
    pub(crate) max_body_size: usize,
    pub(crate) allow_http: bool,
    pub(crate) origins: Option<Arc<[Origin]>>,
    pub(crate) server_time: Option<ServerTime>,
}

/// What is kept of a signed request until its response arrives.
pub(crate) struct Sent {
    /// The local clock when the request was signed, for server-time sync.
    pub(crate) at: SystemTime,
    /// What server-time sync learns of the request's origin, when it is on.
    pub(crate) origin_time: Option<Arc<OriginTime>>,
    pub(crate) seed: Seed,
}

impl Sent {
    /// A 401's receipt, when the configuration was not kept (see [`Config::for_response`]):
    /// the header names are then a preset.
    pub(crate) fn receipt(&self, status: StatusCode) -> Option<SigningReceipt> {
        if status != StatusCode::UNAUTHORIZED {
            return None;
        }
        let names = HeaderNames::of_preset(self.seed.names)?;
        Some(self.seed.to_receipt(&names))
    }
}

impl Config {
    pub(crate) fn new(credentials: Credentials) -> Config {
        Config {
            credentials: Arc::new(ArcSwap::from_pointee(credentials)),
            clock: Arc::new(SystemClock),
            names: HeaderNames::RN,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            allow_http: false,
            origins: None,
            server_time: None,
        }
    }

    /// Checks what can be checked before the body is read, and puts the request target in the
    /// form it will go on the wire (starting with `/`), so that what is signed is what is sent.
    pub(crate) fn prepare(
        &self,
        method: &Method,
        uri: &mut Uri,
        body_lower_bound: u64,
    ) -> Result<(), Error> {
        // The target's form first (`*` and authority form are refused as such), then where the
        // request goes: an absolute https:// URI (or http:// to loopback, when allowed), and
        // one of the pinned origins, if any.
        normalize_target(uri)?;
        check_scheme(uri, self.allow_http)?;
        if let Some(origins) = &self.origins {
            check_origin(uri, origins)?;
        }
        let method = method.as_str();
        if method.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "the request method {method:?} is not in upper case; Rampnow signs the \
                     method as sent, in upper case: use http::Method::GET, POST, ..."
                ),
            ));
        }
        if body_lower_bound > self.max_body_size as u64 {
            return Err(self.body_too_large());
        }
        Ok(())
    }

    /// Signs the request whose body has been read, setting its headers in place; returns what
    /// is kept for the response (server-time sync, receipt). Works on the request's pieces, so
    /// the request itself (or its `Parts`) is not moved to be signed.
    pub(crate) fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        body: &Bytes,
    ) -> Result<Sent, Error> {
        let at = self.clock.now();
        let origin_time = self
            .server_time
            .as_ref()
            .and_then(|server_time| server_time.origin(uri));
        let now = origin_time.as_ref().map_or(at, |origin| origin.correct(at));
        let timestamp_secs = unix_seconds(now)?;
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(timestamp_secs);
        let target = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        // One snapshot: the key header and the signature come from the same credentials.
        let credentials = self.credentials.load();
        let signature = sign_parts(
            &credentials,
            digits.as_bytes(),
            method.as_str().as_bytes(),
            target.as_bytes(),
            body,
        );
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: "rampnow_auth",
            timestamp = timestamp_secs,
            method = %method,
            path_and_query = target,
            body_len = body.len(),
            body_sha256 = %crate::receipt::BodySha256(body),
            api_key_header = %self.names.api_key(),
            timestamp_header = %self.names.timestamp(),
            signature_header = %self.names.signature(),
            signature = %SignaturePrefix(&SignaturePrefix::head(&signature)),
            "signed a Rampnow request"
        );
        // Looked up before the three inserts, and not at all in an empty map (the usual case).
        let stale_length = !headers.is_empty() && headers.contains_key(CONTENT_LENGTH);
        let [api_key, timestamp, signature_name] = self.names.to_owned_names();
        let (timestamp_value, signature_value) = header_values(digits, &signature);
        headers.insert(api_key, credentials.header_value().clone());
        headers.insert(timestamp, timestamp_value);
        headers.insert(signature_name, signature_value);
        if stale_length {
            // A stale length would make the transport send something other than what was signed.
            headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let sent = Sent {
            at,
            origin_time,
            seed: Seed {
                timestamp: timestamp_secs,
                method: method.clone(),
                target: uri.path_and_query().cloned(),
                // No clone (a call through `Bytes`' vtable) for the usual empty body of a GET.
                body: if body.is_empty() {
                    Bytes::new()
                } else {
                    body.clone()
                },
                signature_head: SignaturePrefix::head(&signature),
                names: self.names.preset(),
            },
        };
        Ok(sent)
    }

    /// Learns from a response's status and headers (server-time sync), and explains a 401: the
    /// receipt it returns goes into the response's extensions. Takes the parts rather than an
    /// `http::Response`, so every client's response type (reqwest's too) goes through it.
    #[must_use = "a 401's receipt must be put into the response's extensions"]
    pub(crate) fn received(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        sent: &Sent,
    ) -> Option<SigningReceipt> {
        if let (Some(server_time), Some(origin)) = (&self.server_time, &sent.origin_time) {
            server_time.observe(origin, headers, sent.at, self.clock.now());
        }
        (status == StatusCode::UNAUTHORIZED).then(|| sent.seed.to_receipt(&self.names))
    }

    /// The configuration, when a response has something to tell it or needs it: server-time
    /// sync is on, or a 401's receipt needs custom header names. Otherwise `None`, and the
    /// response future keeps no reference to the configuration (an `Arc` clone that every
    /// thread sending requests would contend for).
    pub(crate) fn for_response(self: &Arc<Config>) -> Option<Arc<Config>> {
        self.needed_by_responses().then(|| Arc::clone(self))
    }

    /// [`Config::for_response`], from an `Arc` the caller no longer needs.
    pub(crate) fn into_for_response(self: Arc<Config>) -> Option<Arc<Config>> {
        self.needed_by_responses().then_some(self)
    }

    fn needed_by_responses(&self) -> bool {
        self.server_time.is_some() || self.names.preset() == Preset::Custom
    }

    pub(crate) fn body_too_large(&self) -> Error {
        Error::new(
            ErrorKind::BodyTooLarge,
            format!(
                "the request body is larger than the signing limit of {} bytes, so nothing was \
                 sent; raise the limit with `RampnowAuthLayer::max_body_size` if the API accepts \
                 bodies this large",
                self.max_body_size
            ),
        )
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("credentials", &*self.credentials.load())
            .field("header_names", &self.names)
            .field("max_body_size", &self.max_body_size)
            .field("allow_http", &self.allow_http)
            .field("origins", &self.origins)
            .field("server_time", &self.server_time)
            .finish_non_exhaustive()
    }
}

/// The timestamp and signature header values, sharing one allocation: both are written into
/// one buffer on the stack, moved once to the heap, and sliced (where two `HeaderValue`s made
/// separately would allocate twice, and `HeaderValue::from(u64)` twice on its own).
fn header_values(digits: &str, signature: &Signature) -> (HeaderValue, HeaderValue) {
    const DIGITS: usize = MAX_TIMESTAMP_DIGITS;
    let mut buf = [0u8; DIGITS + SIGNATURE_HEX_LEN];
    let (head, tail) = buf.split_at_mut(DIGITS);
    head[..digits.len()].copy_from_slice(digits.as_bytes());
    hex::encode_to_slice(signature.as_bytes(), tail).expect("64 hex digits fit 64 bytes");
    let mut shared = Bytes::from_owner(buf);
    // One reference count more for the timestamp; the signature keeps the original.
    let timestamp = HeaderValue::from_maybe_shared(shared.split_to(digits.len()))
        .expect("decimal digits are a valid header value");
    shared.advance(DIGITS - digits.len());
    let mut signature =
        HeaderValue::from_maybe_shared(shared).expect("hex digits are a valid header value");
    signature.set_sensitive(true);
    (timestamp, signature)
}

fn check_origin(uri: &Uri, origins: &[Origin]) -> Result<(), Error> {
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(Error::new(
            ErrorKind::OriginNotAllowed,
            "origin pinning is on, and this request has no scheme and host to check, so it was \
             not signed; use an absolute URI such as https://api.rampnow.io/api/partner/v1/...",
        ));
    }
    if origins.iter().any(|o| o.matches(uri)) {
        return Ok(());
    }
    let host = uri.authority().map_or("", Authority::as_str);
    Err(Error::new(
        ErrorKind::OriginNotAllowed,
        format!(
            "refusing to sign a request to {host}, which is not a pinned origin, so the API key \
             is not sent there; if a redirect led here, follow it only to the pinned origins, or \
             add this origin with `pin_origins`"
        ),
    ))
}

fn check_scheme(uri: &Uri, allow_http: bool) -> Result<(), Error> {
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        // Origin form: the transport would decide where the key goes, and whether over TLS.
        return Err(Error::new(
            ErrorKind::RelativeUri,
            "refusing to sign a request whose URI has no scheme and host (such as \
             /api/partner/v1/...): the transport would decide where the API key goes, and \
             whether over TLS. Use an absolute URI such as \
             https://api.rampnow.io/api/partner/v1/... (the layer does not complete relative \
             URIs, pinned origins or not)",
        ));
    };
    if *scheme == Scheme::HTTPS {
        return Ok(());
    }
    if *scheme != Scheme::HTTP {
        return Err(Error::new(
            ErrorKind::InsecureScheme,
            format!(
                "refusing to sign a request to a {scheme}:// URI: Rampnow credentials are only \
                 sent over https://"
            ),
        ));
    }
    if !allow_http {
        return Err(Error::new(
            ErrorKind::InsecureScheme,
            "refusing to sign a request to an http:// URI: the API key would cross the network \
             in clear. Use https:// (Rampnow refuses plain HTTP anyway), or `allow_http(true)` \
             for a test server on this machine (127.0.0.1, ::1 or localhost)",
        ));
    }
    if is_loopback(authority.host()) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InsecureScheme,
        format!(
            "refusing to sign a request to http://{host}: `allow_http(true)` allows plain HTTP \
             only to this machine (127.0.0.0/8, ::1, localhost), and {host} is not one of them, \
             so the API key would cross the network in clear. Use https://",
            host = authority.host()
        ),
    ))
}

/// Whether `host` (as in a URI's authority, IPv6 in brackets) is this machine: `localhost`, an
/// address in 127.0.0.0/8, `::1`, or `::ffff:127.x.y.z`. Written exactly: `127.1`, `0x7f.0.0.1`
/// and `localhost.` are not recognized, so they are refused rather than guessed at.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let ip = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Makes the target start with `/` when the `http` crate left the `/` out (an absolute URI with
/// no path), so the URI carries exactly the target that is signed, whatever the transport.
fn normalize_target(uri: &mut Uri) -> Result<(), Error> {
    let current = uri.path_and_query().map_or("", PathAndQuery::as_str);
    if current.starts_with('/') {
        return Ok(());
    }
    if current == "*" {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "the request target is `*` (asterisk form), which Rampnow cannot sign; use a path \
             such as /api/partner/v1/...",
        ));
    }
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "the request target is a bare host (authority form, as used by CONNECT), which \
             Rampnow cannot sign; use https://host/path or a /path",
        ));
    }
    let with_slash = format!("/{current}");
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(with_slash).map_err(|e| {
        Error::new(
            ErrorKind::InvalidRequest,
            "the request target cannot be written with a leading `/`; use a path such as \
             /api/partner/v1/...",
        )
        .with_source(e)
    })?);
    *uri = Uri::from_parts(parts).map_err(|e| {
        Error::new(
            ErrorKind::InvalidRequest,
            "the request URI cannot be rebuilt with a leading `/` in its path; use a path such \
             as /api/partner/v1/...",
        )
        .with_source(e)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_of(uri: &str) -> Result<String, ErrorKind> {
        let mut uri: Uri = uri.parse().unwrap();
        normalize_target(&mut uri).map_err(|e| e.kind())?;
        Ok(uri.path_and_query().unwrap().as_str().to_owned())
    }

    #[test]
    fn targets_are_put_in_wire_form() {
        assert_eq!(target_of("https://api.rampnow.io").unwrap(), "/");
        assert_eq!(target_of("https://api.rampnow.io/").unwrap(), "/");
        assert_eq!(target_of("https://api.rampnow.io?a=1").unwrap(), "/?a=1");
        assert_eq!(target_of("https://h:8443/x?y=1").unwrap(), "/x?y=1");
        assert_eq!(
            target_of("/a%2Bb?z=1&a=2&z=0").unwrap(),
            "/a%2Bb?z=1&a=2&z=0"
        );
        assert_eq!(target_of("https://h/p#frag").unwrap(), "/p");
        assert_eq!(target_of("*"), Err(ErrorKind::InvalidRequest));
        assert_eq!(
            target_of("api.rampnow.io:443"),
            Err(ErrorKind::InvalidRequest)
        );
    }

    #[test]
    fn header_values_carry_the_digits_and_the_lowercase_hex() {
        let credentials = Credentials::new("k", "s").unwrap();
        let signature = sign_parts(&credentials, b"5", b"GET", b"/", b"");
        for digits in ["0", "5", "1764288000", "18446744073709551615"] {
            let (timestamp, value) = header_values(digits, &signature);
            assert_eq!(timestamp, digits);
            assert!(!timestamp.is_sensitive());
            assert_eq!(value, signature.to_string().as_str());
            assert!(value.is_sensitive());
        }
    }

    #[test]
    fn schemes_other_than_https_are_refused() {
        let check = |uri: &str, allow| check_scheme(&uri.parse().unwrap(), allow);
        assert!(check("https://h/", false).is_ok());
        assert_eq!(
            check("/origin-form", false).unwrap_err().kind(),
            ErrorKind::RelativeUri
        );
        assert_eq!(
            check("/origin-form", true).unwrap_err().kind(),
            ErrorKind::RelativeUri
        );
        assert_eq!(
            check("http://h/", false).unwrap_err().kind(),
            ErrorKind::InsecureScheme
        );
        assert_eq!(
            check("http://127.0.0.1/", false).unwrap_err().kind(),
            ErrorKind::InsecureScheme
        );
        assert!(check("http://127.0.0.1:8080/", true).is_ok());
        assert_eq!(
            check("ws://h/", true).unwrap_err().kind(),
            ErrorKind::InsecureScheme
        );
    }

    #[test]
    fn allow_http_reaches_loopback_only() {
        let allowed = |uri: &str| check_scheme(&uri.parse().unwrap(), true).is_ok();
        for uri in [
            "http://127.0.0.1/",
            "http://127.255.0.9:1/",
            "http://localhost:8080/x",
            "http://LOCALHOST/",
            "http://[::1]:80/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(allowed(uri), "{uri}");
        }
        for uri in [
            "http://api.rampnow.io/",
            "http://10.0.0.1/",
            "http://128.0.0.1/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[::2]/",
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://localhost.attacker.example/",
            "http://localhost./",
            "http://127.0.0.1.nip.io/",
        ] {
            let err = check_scheme(&uri.parse().unwrap(), true).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InsecureScheme, "{uri}");
            assert!(
                err.to_string().contains("loopback") || err.to_string().contains("this machine")
            );
        }
    }
}
