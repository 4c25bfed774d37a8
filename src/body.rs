//! [`SignedBody`]: a body whose bytes are known up front.
//!
//! The signing middleware reads the whole request body (it has to, to sign it) and hands the
//! inner service a `SignedBody` holding exactly those bytes. It is cheap to clone (a reference
//! count), so retry policies can clone requests, and it reports its exact size, so clients send
//! `Content-Length` instead of chunked encoding. It is also a handy body type for building
//! requests in the first place: the middleware takes it over without copying.
//!
//! # Example
//!
//! ```
//! use http_body::Body;
//! use rampnow_auth::SignedBody;
//!
//! let body = SignedBody::from(r#"{"srcCurrency":"USD"}"#);
//! assert_eq!(body.size_hint().exact(), Some(21));
//! assert_eq!(body.as_bytes(), br#"{"srcCurrency":"USD"}"#);
//! ```

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Collected, LengthLimitError, Limited};
use tower::BoxError;

/// A request body held in one piece, as it was signed.
#[derive(Clone, Default)]
pub struct SignedBody {
    data: Bytes,
}

impl SignedBody {
    /// A body of these bytes.
    pub fn new(data: impl Into<Bytes>) -> SignedBody {
        SignedBody { data: data.into() }
    }

    /// An empty body.
    #[must_use]
    pub fn empty() -> SignedBody {
        SignedBody::default()
    }

    /// The bytes not yet sent (all of them, until the body is polled).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The bytes, without copying.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.data
    }
}

impl Body for SignedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let data = std::mem::take(&mut self.get_mut().data);
        if data.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok(Frame::data(data))))
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

impl From<Bytes> for SignedBody {
    fn from(data: Bytes) -> Self {
        SignedBody { data }
    }
}

impl From<Vec<u8>> for SignedBody {
    fn from(data: Vec<u8>) -> Self {
        SignedBody { data: data.into() }
    }
}

impl From<String> for SignedBody {
    fn from(data: String) -> Self {
        SignedBody { data: data.into() }
    }
}

impl From<&'static str> for SignedBody {
    fn from(data: &'static str) -> Self {
        SignedBody {
            data: Bytes::from_static(data.as_bytes()),
        }
    }
}

impl From<&'static [u8]> for SignedBody {
    fn from(data: &'static [u8]) -> Self {
        SignedBody {
            data: Bytes::from_static(data),
        }
    }
}

/// Reads a whole body, failing past `limit` bytes. Shared by the signer and the verifier.
pub(crate) type CollectBody<B> = Collect<Limited<B>>;

pub(crate) fn collect<B>(body: B, limit: usize) -> CollectBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    Limited::new(body, limit).collect()
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum BodyFailure {
    /// Over the limit.
    TooLarge,
    /// It ended with trailers, which a signature cannot cover.
    Trailers,
    /// The body's own error.
    Failed(BoxError),
}

/// The bytes of a collected body; a body that arrived in one piece is not copied.
pub(crate) fn into_bytes<D: Buf>(
    collected: Result<Collected<D>, BoxError>,
) -> Result<Bytes, BodyFailure> {
    match collected {
        Ok(collected) if collected.trailers().is_some() => Err(BodyFailure::Trailers),
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(BodyFailure::TooLarge),
        Err(error) => Err(BodyFailure::Failed(error)),
    }
}

/// Shows the length only: bodies may hold personal data.
impl fmt::Debug for SignedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedBody")
            .field("len", &self.data.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_its_bytes_once_then_ends() {
        let mut body = SignedBody::from("abc");
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let frame = Pin::new(&mut body).poll_frame(&mut cx);
        let Poll::Ready(Some(Ok(frame))) = frame else {
            panic!("expected a data frame")
        };
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
    }

    #[test]
    fn empty_body_ends_at_once_with_exact_zero() {
        let body = SignedBody::empty();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[test]
    fn clones_share_the_bytes() {
        let body = SignedBody::from(vec![7u8; 1024]);
        let clone = body.clone();
        assert_eq!(body.as_bytes().as_ptr(), clone.as_bytes().as_ptr());
        let bytes = clone.into_bytes();
        assert_eq!(bytes.as_ptr(), body.as_bytes().as_ptr());
    }

    #[test]
    fn debug_shows_the_length_not_the_content() {
        let body = SignedBody::from("secret-ish personal data");
        assert_eq!(format!("{body:?}"), "SignedBody { len: 24 }");
    }

    #[test]
    fn collects_like_any_body() {
        let rt = || async { SignedBody::from("xyz").collect().await.unwrap().to_bytes() };
        let bytes = block_on(rt());
        assert_eq!(bytes, "xyz");
    }

    fn block_on<F: std::future::Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }
}
