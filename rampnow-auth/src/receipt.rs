//! [`SigningReceipt`]: what was signed, attached to `401` responses.

use std::fmt;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::Method;
use sha2::{Digest, Sha256};

use crate::headers::{HeaderNames, Preset};
use crate::signer::Signature;

/// How many hex digits of the signature a receipt keeps.
pub(crate) const RECEIPT_SIGNATURE_PREFIX: usize = 12;

/// What the middleware signed for one request, for debugging a rejected request.
///
/// When the response to a signed request is `401 Unauthorized`, the signing middleware attaches
/// a [`SigningReceipt`] to the response's extensions: the timestamp, method, path and query,
/// the body's length and SHA-256, the header names used, and the first characters of the
/// signature — never the secret or the body. Compare it with what the server says it received.
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode};
/// use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody, SigningReceipt};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let refuse = service_fn(|_req: Request<SignedBody>| async {
///     let mut response = Response::new(());
///     *response.status_mut() = StatusCode::UNAUTHORIZED;
///     Ok::<_, Infallible>(response)
/// });
/// let client = RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?)
///     .layer(refuse);
/// let response = client
///     .oneshot(Request::post("https://api.rampnow.io/api/x?a=1").body(SignedBody::from("{}"))?)
///     .await?;
/// let receipt = response.extensions().get::<SigningReceipt>().expect("attached to a 401");
/// assert_eq!(receipt.path_and_query(), "/api/x?a=1");
/// assert_eq!(receipt.body_len(), 2);
/// println!("{receipt}");
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningReceipt {
    timestamp: u64,
    method: Method,
    path_and_query: String,
    body_len: usize,
    body_sha256: String,
    header_names: HeaderNames,
    signature_prefix: String,
}

impl SigningReceipt {
    /// The timestamp signed and sent.
    #[must_use]
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The method signed.
    #[must_use]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request target signed (path and query, as sent).
    #[must_use]
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The number of body bytes signed.
    #[must_use]
    pub fn body_len(&self) -> usize {
        self.body_len
    }

    /// The SHA-256 of the body bytes signed, lowercase hex.
    #[must_use]
    pub fn body_sha256(&self) -> &str {
        &self.body_sha256
    }

    /// The header names the credentials were sent under.
    #[must_use]
    pub fn header_names(&self) -> &HeaderNames {
        &self.header_names
    }

    /// The first 12 hex digits of the signature.
    #[must_use]
    pub fn signature_prefix(&self) -> &str {
        &self.signature_prefix
    }
}

impl fmt::Display for SigningReceipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "signed {} {} at {} with a body of {} bytes (sha256 {}), headers {} / {} / {}, \
             signature {}…",
            self.method,
            self.path_and_query,
            self.timestamp,
            self.body_len,
            self.body_sha256,
            self.header_names.api_key(),
            self.header_names.timestamp(),
            self.header_names.signature(),
            self.signature_prefix
        )
    }
}

/// The bytes of the signature a receipt shows.
pub(crate) const RECEIPT_SIGNATURE_BYTES: usize = RECEIPT_SIGNATURE_PREFIX / 2;

/// What the middleware keeps of a signed request until its response arrives: cheap clones, and
/// only the part of the signature a receipt shows (it is moved with every response future).
pub(crate) struct Seed {
    pub(crate) timestamp: u64,
    pub(crate) method: Method,
    pub(crate) target: Option<PathAndQuery>,
    pub(crate) body: Bytes,
    pub(crate) signature_head: [u8; RECEIPT_SIGNATURE_BYTES],
    /// The header names used, when they are a preset (a receipt then needs no configuration).
    pub(crate) names: Preset,
}

/// Displays the lowercase hex SHA-256 of a body, computed only when formatted.
pub(crate) struct BodySha256<'a>(pub(crate) &'a [u8]);

impl fmt::Display for BodySha256<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex::<64>(f, &Sha256::digest(self.0))
    }
}

/// Displays the first [`RECEIPT_SIGNATURE_PREFIX`] hex digits of a signature.
pub(crate) struct SignaturePrefix<'a>(pub(crate) &'a [u8; RECEIPT_SIGNATURE_BYTES]);

impl SignaturePrefix<'_> {
    /// The bytes of `signature` a receipt shows.
    pub(crate) fn head(signature: &Signature) -> [u8; RECEIPT_SIGNATURE_BYTES] {
        let mut head = [0u8; RECEIPT_SIGNATURE_BYTES];
        head.copy_from_slice(&signature.as_bytes()[..RECEIPT_SIGNATURE_BYTES]);
        head
    }
}

impl fmt::Display for SignaturePrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex::<RECEIPT_SIGNATURE_PREFIX>(f, self.0)
    }
}

/// Writes `bytes` as lowercase hex through a buffer of `N` bytes on the stack (`N` is twice
/// their length; anything else writes nothing).
fn write_hex<const N: usize>(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut hex = [0u8; N];
    let text = hex::encode_to_slice(bytes, &mut hex)
        .ok()
        .and_then(|()| std::str::from_utf8(&hex).ok())
        .unwrap_or_default();
    f.write_str(text)
}

impl Seed {
    pub(crate) fn to_receipt(&self, header_names: &HeaderNames) -> SigningReceipt {
        SigningReceipt {
            timestamp: self.timestamp,
            method: self.method.clone(),
            path_and_query: self
                .target
                .as_ref()
                .map_or("/", PathAndQuery::as_str)
                .to_owned(),
            body_len: self.body.len(),
            body_sha256: BodySha256(&self.body).to_string(),
            header_names: header_names.clone(),
            signature_prefix: SignaturePrefix(&self.signature_head).to_string(),
        }
    }
}
