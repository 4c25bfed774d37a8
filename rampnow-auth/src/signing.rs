//! The signing core: every rule of what is signed and what is refused, as plain synchronous
//! functions. The tower layer, the reqwest middleware and the verifier all call it.
//!
//! Modelled on aws-sigv4's `http_request` module: a [`SignableRequest`] (method, URI, body
//! bytes) and [`SigningParams`] (credentials, time, [`SigningSettings`]) go into [`sign`],
//! which either refuses the request with an [`Error`] or returns [`SigningInstructions`]: the
//! three header values to set, which [`SigningInstructions::apply`] (or
//! [`apply_to_request`](SigningInstructions::apply_to_request)) puts on the request. No
//! runtime, no tower, no I/O.
//!
//! What [`sign`] refuses, before computing anything:
//!
//! - a URI that is not absolute (`/api/...` with no scheme and host: the transport would pick
//!   the destination, perhaps over plain TCP);
//! - a scheme other than `https` ([`allow_http`](SigningSettings::allow_http) allows `http` to
//!   a loopback host only);
//! - an origin that is not [pinned](SigningSettings::pin_origins), when origins are pinned;
//! - a target that is not a path (`*`, a bare host), and a method not in upper case;
//! - a body over [`max_body_size`](SigningSettings::max_body_size).
//!
//! What it signs: the timestamp (whole seconds since the Unix epoch, in decimal), the method,
//! the request target exactly as it goes on the wire (an absolute URI with no path is sent and
//! signed as `/`; the query is kept byte for byte) and the body bytes:
//!
//! ```text
//! signature = lowercase_hex(HMAC-SHA256(secret, timestamp || METHOD || path_and_query || body))
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use http::{Method, Uri};
//! use rampnow_auth::signing::{sign, SignableRequest, SigningParams, SigningSettings};
//! use rampnow_auth::Credentials;
//!
//! let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv")?;
//! let settings = SigningSettings::new();
//! let uri: Uri = "https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC".parse()?;
//! let body = br#"{"dummy": "value"}"#;
//! let time = UNIX_EPOCH + Duration::from_secs(1727759033);
//!
//! let request = SignableRequest::new(&Method::POST, &uri, body);
//! let instructions = sign(&request, &SigningParams::new(&credentials, time, &settings))?;
//!
//! let mut headers = http::HeaderMap::new();
//! instructions.apply(&mut headers);
//! assert_eq!(headers["rn-api-key"], "ak_live_3f9a1c");
//! assert_eq!(headers["rn-access-timestamp"], "1727759033");
//! assert_eq!(
//!     headers["rn-access-sign"],
//!     "558629fe8e7f4555ddbe63dd8d1523921eef1f8763ccc142e63d84c227f2ab5e"
//! );
//! assert!(headers["rn-access-sign"].is_sensitive());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use http::header::CONTENT_LENGTH;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

use crate::clock::{unix_seconds, MAX_TIMESTAMP_DIGITS};
use crate::credentials::Credentials;
use crate::error::{Error, ErrorKind};
use crate::headers::HeaderNames;
use crate::receipt::{SignaturePrefix, RECEIPT_SIGNATURE_BYTES};
use crate::signer::{message_signature, Signature, SIGNATURE_HEX_LEN};

/// The default [`max_body_size`](SigningSettings::max_body_size): 10 MiB.
pub(crate) const DEFAULT_MAX_BODY_SIZE: usize = 10 * 1024 * 1024;

/// The request to sign, borrowed: its method, URI and the exact body bytes that will be sent.
///
/// # Example
///
/// ```
/// use http::{Method, Uri};
/// use rampnow_auth::signing::SignableRequest;
///
/// let uri = Uri::from_static("https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote");
/// let request = SignableRequest::new(&Method::GET, &uri, b"");
/// assert_eq!(request.target(), "/api/partner/v1/ext/ramp_order/quote");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SignableRequest<'a> {
    method: &'a Method,
    uri: &'a Uri,
    body: &'a [u8],
}

impl<'a> SignableRequest<'a> {
    /// A request of this method, URI and body.
    #[must_use]
    pub fn new(method: &'a Method, uri: &'a Uri, body: &'a [u8]) -> SignableRequest<'a> {
        SignableRequest { method, uri, body }
    }

    /// The request target as the URI holds it (`/` when it has none). [`sign`] signs its wire
    /// form, which differs only for an absolute URI with a query and no path (`?a=1` is sent
    /// as `/?a=1`).
    #[must_use]
    pub fn target(&self) -> &'a str {
        self.uri.path_and_query().map_or("/", PathAndQuery::as_str)
    }
}

/// What decides how a request is signed and what is refused: header names, the body limit,
/// plain HTTP to loopback, pinned origins. The builder methods of
/// [`RampnowAuthLayer`](crate::RampnowAuthLayer) set the same settings.
///
/// # Example
///
/// ```
/// use rampnow_auth::signing::SigningSettings;
/// use rampnow_auth::HeaderNames;
///
/// let settings = SigningSettings::new()
///     .header_names(HeaderNames::X_RAMPNOW)
///     .max_body_size(1024)
///     .pin_origins(["https://api.rampnow.io"])?;
/// assert_eq!(settings.names(), &HeaderNames::X_RAMPNOW);
/// # Ok::<(), rampnow_auth::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SigningSettings {
    pub(crate) names: HeaderNames,
    pub(crate) max_body_size: usize,
    pub(crate) allow_http: bool,
    pub(crate) origins: Option<Arc<[Origin]>>,
}

impl Default for SigningSettings {
    fn default() -> SigningSettings {
        SigningSettings {
            names: HeaderNames::RN,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            allow_http: false,
            origins: None,
        }
    }
}

impl SigningSettings {
    /// The defaults: [`HeaderNames::RN`], a 10 MiB body limit, HTTPS only, any origin.
    pub fn new() -> SigningSettings {
        SigningSettings::default()
    }

    /// Sends the credentials under these header names (default [`HeaderNames::RN`]).
    pub fn header_names(mut self, names: HeaderNames) -> SigningSettings {
        self.names = names;
        self
    }

    /// The largest body, in bytes, that is signed (default 10 MiB); a larger one is refused
    /// with [`ErrorKind::BodyTooLarge`].
    pub fn max_body_size(mut self, limit: usize) -> SigningSettings {
        self.max_body_size = limit;
        self
    }

    /// Whether `http://` URIs to a loopback host (`localhost`, `127.0.0.0/8`, `::1`) may be
    /// signed (default `false`). Any other `http://` URI is refused whatever this says.
    pub fn allow_http(mut self, allow: bool) -> SigningSettings {
        self.allow_http = allow;
        self
    }

    /// Signs only requests to these origins (`scheme://host[:port]`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidOrigin`] for an origin that is not `scheme://host[:port]`.
    pub fn pin_origins<I>(mut self, origins: I) -> Result<SigningSettings, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let origins = origins
            .into_iter()
            .map(|o| Origin::parse(o.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        self.origins = Some(origins.into());
        Ok(self)
    }

    /// The header names the credentials are sent under.
    #[must_use]
    pub fn names(&self) -> &HeaderNames {
        &self.names
    }

    /// Every check that needs no body bytes (scheme, origin, target, method, and the body's
    /// known lower bound against the limit), and the URI's target put in wire form in place,
    /// so the URI carries exactly the target that is signed. The adapters call it before they
    /// read the body; [`sign`] runs the same checks.
    #[inline]
    pub(crate) fn prepare(
        &self,
        method: &Method,
        uri: &mut Uri,
        body_lower_bound: u64,
    ) -> Result<(), Error> {
        let rewritten = match self.check(method, uri, body_lower_bound)? {
            Cow::Owned(target) => Some(target),
            Cow::Borrowed(_) => None,
        };
        if let Some(target) = rewritten {
            set_target(uri, target)?;
        }
        Ok(())
    }

    /// The checks, in order: the target's form first (`*` and authority form are refused as
    /// such), then where the request goes (an absolute https:// URI, or http:// to loopback
    /// when allowed; one of the pinned origins, if any), the method, the body's size. Returns
    /// the target in wire form.
    fn check<'u>(
        &self,
        method: &Method,
        uri: &'u Uri,
        body_lower_bound: u64,
    ) -> Result<Cow<'u, str>, Error> {
        let target = wire_target(uri)?;
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
            return Err(body_too_large(self.max_body_size));
        }
        Ok(target)
    }
}

/// The refusal of a body over `limit`, wherever it is found (the size hint, the collector).
pub(crate) fn body_too_large(limit: usize) -> Error {
    Error::new(
        ErrorKind::BodyTooLarge,
        format!(
            "the request body is larger than the signing limit of {limit} bytes, so nothing was \
             sent; raise the limit with `RampnowAuthLayer::max_body_size` if the API accepts \
             bodies this large"
        ),
    )
}

/// Who signs, when, and under which [`SigningSettings`].
///
/// # Example
///
/// ```
/// use std::time::SystemTime;
/// use rampnow_auth::signing::{SigningParams, SigningSettings};
/// use rampnow_auth::Credentials;
///
/// let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_secret")?;
/// let settings = SigningSettings::new();
/// let params = SigningParams::new(&credentials, SystemTime::now(), &settings);
/// assert_eq!(params.credentials().api_key(), "ak_live_3f9a1c");
/// # Ok::<(), rampnow_auth::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    credentials: &'a Credentials,
    time: SystemTime,
    settings: &'a SigningSettings,
}

impl<'a> SigningParams<'a> {
    /// Sign with `credentials` at `time`, under `settings`.
    #[must_use]
    pub fn new(
        credentials: &'a Credentials,
        time: SystemTime,
        settings: &'a SigningSettings,
    ) -> SigningParams<'a> {
        SigningParams {
            credentials,
            time,
            settings,
        }
    }

    /// The credentials signing.
    #[must_use]
    pub fn credentials(&self) -> &'a Credentials {
        self.credentials
    }

    /// The signing time.
    #[must_use]
    pub fn time(&self) -> SystemTime {
        self.time
    }
}

/// What to put on a signed request: the three header values (API key, timestamp, signature),
/// and the target in wire form when the URI did not hold it so.
///
/// [`apply`](SigningInstructions::apply) sets the headers, replacing (never appending) any
/// value already there; the API key and the signature are marked sensitive.
pub struct SigningInstructions {
    names: [HeaderName; 3],
    api_key: HeaderValue,
    timestamp: HeaderValue,
    signature: HeaderValue,
    body_len: usize,
    target: Option<PathAndQuery>,
    timestamp_secs: u64,
    signature_head: [u8; RECEIPT_SIGNATURE_BYTES],
}

impl SigningInstructions {
    /// The headers to set, in order: API key, timestamp, signature.
    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.names
            .iter()
            .zip([&self.api_key, &self.timestamp, &self.signature])
    }

    /// The timestamp signed, in seconds since the Unix epoch.
    #[must_use]
    pub fn timestamp(&self) -> u64 {
        self.timestamp_secs
    }

    /// The signature header value (64 lowercase hex digits, marked sensitive).
    #[must_use]
    pub fn signature(&self) -> &HeaderValue {
        &self.signature
    }

    /// The target that was signed, when it differs from the URI's (an absolute URI with a query
    /// and no path); [`apply_to_request`](SigningInstructions::apply_to_request) sets it.
    #[must_use]
    pub fn rewritten_target(&self) -> Option<&str> {
        self.target.as_ref().map(PathAndQuery::as_str)
    }

    /// Sets the three headers in `headers`, replacing any value already there. A
    /// `Content-Length` already present is set to the length of the body signed, so that the
    /// transport does not send something other than what was signed.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use http::{HeaderMap, HeaderValue, Method, Uri};
    /// use rampnow_auth::signing::{sign, SignableRequest, SigningParams, SigningSettings};
    /// use rampnow_auth::Credentials;
    ///
    /// let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_secret")?;
    /// let settings = SigningSettings::new();
    /// let uri = Uri::from_static("https://api.rampnow.io/x");
    /// let request = SignableRequest::new(&Method::POST, &uri, b"{}");
    /// let params = SigningParams::new(&credentials, SystemTime::now(), &settings);
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("rn-api-key", HeaderValue::from_static("old"));
    /// headers.insert("content-length", HeaderValue::from_static("99"));
    /// sign(&request, &params)?.apply(&mut headers);
    /// assert_eq!(headers.get_all("rn-api-key").iter().count(), 1);
    /// assert_eq!(headers["rn-api-key"], "ak_live_3f9a1c");
    /// assert!(headers["rn-api-key"].is_sensitive());
    /// assert_eq!(headers["content-length"], "2");
    /// # Ok::<(), rampnow_auth::Error>(())
    /// ```
    pub fn apply(self, headers: &mut HeaderMap) {
        insert_headers(
            headers,
            self.names,
            [self.api_key, self.timestamp, self.signature],
            self.body_len,
        );
    }

    /// [`apply`](SigningInstructions::apply) to the request's headers, and puts the signed
    /// target into its URI when it was not in wire form.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when the URI cannot be rebuilt with the signed target
    /// (nothing is changed then).
    pub fn apply_to_request<B>(mut self, request: &mut Request<B>) -> Result<(), Error> {
        if let Some(target) = self.target.take() {
            set_target(request.uri_mut(), target.as_str().to_owned())?;
        }
        self.apply(request.headers_mut());
        Ok(())
    }
}

impl fmt::Debug for SigningInstructions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningInstructions")
            .field("names", &self.names)
            .field("timestamp", &self.timestamp_secs)
            .field(
                "signature",
                &format_args!("{}…", SignaturePrefix(&self.signature_head)),
            )
            .field("rewritten_target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Checks `request` against every rule of `params`' settings and signs it.
///
/// # Errors
///
/// The refusals listed in [the module docs](self): [`ErrorKind::RelativeUri`],
/// [`ErrorKind::InsecureScheme`], [`ErrorKind::OriginNotAllowed`],
/// [`ErrorKind::InvalidRequest`], [`ErrorKind::BodyTooLarge`]; [`ErrorKind::Clock`] for a
/// time before 1970.
///
/// # Example
///
/// ```
/// use std::time::SystemTime;
/// use http::{Method, Uri};
/// use rampnow_auth::signing::{sign, SignableRequest, SigningParams, SigningSettings};
/// use rampnow_auth::{Credentials, ErrorKind};
///
/// let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_secret")?;
/// let settings = SigningSettings::new();
/// let params = SigningParams::new(&credentials, SystemTime::now(), &settings);
/// let plain = Uri::from_static("http://api.rampnow.io/x");
/// let refused = sign(&SignableRequest::new(&Method::GET, &plain, b""), &params).unwrap_err();
/// assert_eq!(refused.kind(), ErrorKind::InsecureScheme);
/// # Ok::<(), rampnow_auth::Error>(())
/// ```
pub fn sign(
    request: &SignableRequest<'_>,
    params: &SigningParams<'_>,
) -> Result<SigningInstructions, Error> {
    let settings = params.settings;
    let target = settings.check(request.method, request.uri, request.body.len() as u64)?;
    let mut instructions = sign_checked(
        settings,
        params.credentials,
        params.time,
        request.method,
        &target,
        request.body,
    )?;
    if let Cow::Owned(target) = target {
        instructions.target = Some(path_and_query(target)?);
    }
    Ok(instructions)
}

/// [`sign`] for a request that [`SigningSettings::prepare`] has checked and whose target is in
/// wire form, with a body within the limit.
fn sign_checked(
    settings: &SigningSettings,
    credentials: &Credentials,
    time: SystemTime,
    method: &Method,
    target: &str,
    body: &[u8],
) -> Result<SigningInstructions, Error> {
    let signed = compute(settings, credentials, time, method, target, body)?;
    Ok(SigningInstructions {
        names: settings.names.to_owned_names(),
        api_key: credentials.header_value().clone(),
        timestamp: signed.timestamp,
        signature: signed.signature,
        body_len: body.len(),
        target: None,
        timestamp_secs: signed.timestamp_secs,
        signature_head: signed.signature_head,
    })
}

/// What [`sign_into`] tells the adapter, for the receipt.
pub(crate) struct Signed {
    pub(crate) timestamp_secs: u64,
    pub(crate) signature_head: [u8; RECEIPT_SIGNATURE_BYTES],
}

/// [`sign`] then [`SigningInstructions::apply`], for the adapters, which check a request with
/// [`SigningSettings::prepare`] before reading its body (so the target is in wire form and the
/// body within the limit): the same steps, with the values going straight into `headers`
/// rather than through a `SigningInstructions` (moving that whole costs more than the
/// middleware's own work, measured with callgrind).
#[inline]
pub(crate) fn sign_into(
    settings: &SigningSettings,
    credentials: &Credentials,
    time: SystemTime,
    method: &Method,
    target: &str,
    body: &[u8],
    headers: &mut HeaderMap,
) -> Result<Signed, Error> {
    let computed = compute(settings, credentials, time, method, target, body)?;
    insert_headers(
        headers,
        settings.names.to_owned_names(),
        [
            credentials.header_value().clone(),
            computed.timestamp,
            computed.signature,
        ],
        body.len(),
    );
    Ok(Signed {
        timestamp_secs: computed.timestamp_secs,
        signature_head: computed.signature_head,
    })
}

/// Sets the three headers, replacing any value already there, and a `Content-Length` already
/// present to the length of the body signed (a stale one would make the transport send
/// something other than what was signed).
#[inline(always)]
fn insert_headers(
    headers: &mut HeaderMap,
    names: [HeaderName; 3],
    values: [HeaderValue; 3],
    body_len: usize,
) {
    // Looked up before the three inserts, and not at all in an empty map (the usual case).
    let stale_length = !headers.is_empty() && headers.contains_key(CONTENT_LENGTH);
    let [api_key, timestamp, signature] = names;
    let [api_key_value, timestamp_value, signature_value] = values;
    headers.insert(api_key, api_key_value);
    headers.insert(timestamp, timestamp_value);
    headers.insert(signature, signature_value);
    if stale_length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body_len));
    }
}

/// The timestamp and signature of one request, as header values.
struct Computed {
    timestamp_secs: u64,
    timestamp: HeaderValue,
    signature: HeaderValue,
    signature_head: [u8; RECEIPT_SIGNATURE_BYTES],
}

#[inline(always)]
fn compute(
    // Read by the `tracing` event only.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))] settings: &SigningSettings,
    credentials: &Credentials,
    time: SystemTime,
    method: &Method,
    target: &str,
    body: &[u8],
) -> Result<Computed, Error> {
    let timestamp_secs = unix_seconds(time)?;
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(timestamp_secs);
    let signature = message_signature(credentials, digits.as_bytes(), method, target, body);
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "rampnow_auth",
        timestamp = timestamp_secs,
        method = %method,
        path_and_query = target,
        body_len = body.len(),
        body_sha256 = %crate::receipt::BodySha256(body),
        api_key_header = %settings.names.api_key(),
        timestamp_header = %settings.names.timestamp(),
        signature_header = %settings.names.signature(),
        signature = %SignaturePrefix(&SignaturePrefix::head(&signature)),
        "signed a Rampnow request"
    );
    let (timestamp, signature_value) = header_values(digits, &signature);
    Ok(Computed {
        timestamp_secs,
        timestamp,
        signature: signature_value,
        signature_head: SignaturePrefix::head(&signature),
    })
}

/// The timestamp and signature header values, sharing one allocation: both are written into
/// one buffer on the stack, moved once to the heap, and sliced (where two `HeaderValue`s made
/// separately would allocate twice, and `HeaderValue::from(u64)` twice on its own).
#[inline]
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

/// The request target as it goes on the wire: the URI's, with a leading `/` when the `http`
/// crate left it out (an absolute URI with no path). `*` and a bare host are refused.
fn wire_target(uri: &Uri) -> Result<Cow<'_, str>, Error> {
    let current = uri.path_and_query().map_or("", PathAndQuery::as_str);
    if current.starts_with('/') {
        return Ok(Cow::Borrowed(current));
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
    Ok(Cow::Owned(format!("/{current}")))
}

/// `target` (in wire form, with its leading `/`) as a path and query.
fn path_and_query(target: String) -> Result<PathAndQuery, Error> {
    PathAndQuery::try_from(target).map_err(|e| {
        Error::new(
            ErrorKind::InvalidRequest,
            "the request target cannot be written with a leading `/`; use a path such as \
             /api/partner/v1/...",
        )
        .with_source(e)
    })
}

/// Puts `target` into `uri` as its path and query.
fn set_target(uri: &mut Uri, target: String) -> Result<(), Error> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query(target)?);
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
    use crate::signer::sign_parts;

    fn target_of(uri: &str) -> Result<String, ErrorKind> {
        let mut uri: Uri = uri.parse().unwrap();
        if let Cow::Owned(target) = wire_target(&uri).map_err(|e| e.kind())? {
            set_target(&mut uri, target).map_err(|e| e.kind())?;
        }
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
    fn sign_rewrites_a_target_without_a_path_and_signs_it() {
        let credentials = Credentials::new("k", "s").unwrap();
        let settings = SigningSettings::new();
        let uri: Uri = "https://h?a=1".parse().unwrap();
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(5);
        let params = SigningParams::new(&credentials, time, &settings);
        let signed = sign(&SignableRequest::new(&Method::GET, &uri, b""), &params).unwrap();
        assert_eq!(signed.rewritten_target(), Some("/?a=1"));
        let expected = crate::Signer::new(&credentials).sign(5, &Method::GET, "/?a=1", b"");
        assert_eq!(signed.signature(), expected.to_string().as_str());
        let mut request = Request::get(uri).body(()).unwrap();
        signed.apply_to_request(&mut request).unwrap();
        assert_eq!(request.uri(), "https://h/?a=1");
    }

    #[test]
    fn sign_checks_the_body_size() {
        let credentials = Credentials::new("k", "s").unwrap();
        let settings = SigningSettings::new().max_body_size(2);
        let uri = Uri::from_static("https://h/");
        let params = SigningParams::new(&credentials, SystemTime::now(), &settings);
        let err = sign(&SignableRequest::new(&Method::POST, &uri, b"abc"), &params).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BodyTooLarge);
        assert!(sign(&SignableRequest::new(&Method::POST, &uri, b"ab"), &params).is_ok());
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
