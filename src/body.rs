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

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Empty, Full};
use pin_project_lite::pin_project;
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

/// The bytes of a body that is already in memory, taken without waiting: a [`SignedBody`], a
/// `Full<Bytes>`, an `Empty<Bytes>` or a `String`, or any body that says it has ended. Any other
/// body comes back as it was, to be read by [`CollectBody`].
///
/// This is how the signing layer signs such a body in `call`, without cloning the inner
/// service or waiting on a future: the types are told apart by their `TypeId` (known when the
/// code is compiled), and each of them hands out its bytes at once.
#[inline]
pub(crate) fn in_memory<B: Body + 'static>(body: B) -> Result<Bytes, B> {
    let mut slot = Some(body);
    // Each `take` compares two `TypeId`s that are known when `B` is, so all but one branch
    // (or all of them) compile away.
    let any: &mut dyn Any = &mut slot;
    let bytes = if let Some(body) = take::<SignedBody>(any) {
        body.into_bytes()
    } else if let Some(mut body) = take::<Full<Bytes>>(any) {
        // `Full` yields its one frame on the first poll, and never waits.
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            _ => Bytes::new(),
        }
    } else if let Some(body) = take::<String>(any) {
        Bytes::from(body)
    } else if take::<Empty<Bytes>>(any).is_some() {
        Bytes::new()
    } else {
        return match slot {
            Some(body) if body.is_end_stream() => Ok(Bytes::new()),
            Some(body) => Err(body),
            // Not reached: the slot is emptied only by a `take` that matched, above.
            None => Ok(Bytes::new()),
        };
    };
    Ok(bytes)
}

#[inline]
fn take<T: 'static>(slot: &mut dyn Any) -> Option<T> {
    slot.downcast_mut::<Option<T>>().and_then(Option::take)
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum BodyFailure {
    /// More than the limit.
    TooLarge,
    /// It ended with trailers, which a signature cannot cover.
    Trailers,
    /// The body's own error.
    Failed(BoxError),
}

/// Room for this many data frames after the first, reserved when a second one arrives, so a
/// body streamed in a few frames queues them with one allocation (512 bytes for `Bytes`).
const QUEUED_FRAMES: usize = 16;

pin_project! {
    /// Reads a whole body into one [`Bytes`], failing once more than `limit` bytes arrive.
    ///
    /// A body that arrives in one data frame is not copied (for `Bytes` data). Later frames are
    /// queued as they are and copied once, at the end, into a buffer of exactly the body's
    /// size, whatever the body's size hint said. Reading a body in one piece allocates nothing.
    pub(crate) struct CollectBody<B: Body> {
        #[pin]
        body: B,
        first: Option<B::Data>,
        rest: Vec<B::Data>,
        len: usize,
        limit: usize,
        trailers: bool,
    }
}

impl<B: Body> CollectBody<B> {
    pub(crate) fn new(body: B, limit: usize) -> Self {
        CollectBody {
            body,
            first: None,
            rest: Vec::new(),
            len: 0,
            limit,
            trailers: false,
        }
    }
}

impl<B> Future for CollectBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Bytes, BodyFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let frame = match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => {
                    let error = error.into();
                    // A body that limits itself (`http_body_util::Limited`) is too large, too.
                    if error.is::<http_body_util::LengthLimitError>() {
                        return Poll::Ready(Err(BodyFailure::TooLarge));
                    }
                    return Poll::Ready(Err(BodyFailure::Failed(error)));
                }
                None => break,
            };
            match frame.into_data() {
                Ok(data) if !data.has_remaining() => {}
                Ok(data) => {
                    if data.remaining() > *this.limit - *this.len {
                        return Poll::Ready(Err(BodyFailure::TooLarge));
                    }
                    *this.len += data.remaining();
                    if this.first.is_none() {
                        *this.first = Some(data);
                    } else {
                        if this.rest.capacity() == 0 {
                            this.rest.reserve_exact(QUEUED_FRAMES);
                        }
                        this.rest.push(data);
                    }
                }
                // Refused only once the body has been read whole, so that a body over the limit
                // is reported as too large whatever else it carries.
                Err(frame) => *this.trailers |= frame.is_trailers(),
            }
        }
        if *this.trailers {
            return Poll::Ready(Err(BodyFailure::Trailers));
        }
        let bytes = match this.first.take() {
            None => Bytes::new(),
            Some(mut first) if this.rest.is_empty() => first.copy_to_bytes(*this.len),
            Some(first) => {
                let mut whole = BytesMut::with_capacity(*this.len);
                whole.put(first);
                for data in this.rest.drain(..) {
                    whole.put(data);
                }
                whole.freeze()
            }
        };
        Poll::Ready(Ok(bytes))
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
        use http_body_util::BodyExt;
        let rt = || async { SignedBody::from("xyz").collect().await.unwrap().to_bytes() };
        let bytes = block_on(rt());
        assert_eq!(bytes, "xyz");
    }

    /// A body that yields these frames, in order.
    struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, std::io::Error>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.get_mut().0.pop_front())
        }
    }

    fn data(pieces: &[&'static str]) -> Frames {
        Frames(
            pieces
                .iter()
                .map(|p| Ok(Frame::data(Bytes::from(*p))))
                .collect(),
        )
    }

    fn read(body: Frames, limit: usize) -> Result<Bytes, BodyFailure> {
        block_on(CollectBody::new(body, limit))
    }

    #[test]
    fn bodies_in_memory_hand_out_their_bytes_without_a_copy() {
        let data = Bytes::from(vec![7u8; 100]);
        let taken = in_memory(SignedBody::from(data.clone())).unwrap();
        assert_eq!(taken.as_ptr(), data.as_ptr());
        let taken = in_memory(Full::new(data.clone())).unwrap();
        assert_eq!(taken.as_ptr(), data.as_ptr());
        assert_eq!(taken.len(), 100);
        assert_eq!(in_memory(String::from("abc")).unwrap(), "abc");
        assert_eq!(in_memory(Empty::<Bytes>::new()).unwrap(), "");
        assert_eq!(in_memory(Full::new(Bytes::new())).unwrap(), "");
        assert_eq!(in_memory(SignedBody::empty()).unwrap(), "");
    }

    #[test]
    fn other_bodies_come_back_whole() {
        let Err(body) = in_memory(data(&["ab", "cd"])) else {
            panic!("a body of frames is not in memory")
        };
        assert_eq!(read(body, 4).unwrap(), "abcd");
        // Same types with other data: not taken either.
        assert!(in_memory(Full::new(&b"abc"[..])).is_err());
    }

    #[test]
    fn a_body_in_one_frame_is_not_copied() {
        let data = Bytes::from(vec![7u8; 100]);
        let body = Frames([Ok(Frame::data(data.clone()))].into());
        let read = read(body, 100).unwrap();
        assert_eq!(read.as_ptr(), data.as_ptr());
        assert_eq!(read.len(), 100);
    }

    #[test]
    fn frames_are_put_together_in_order_and_empty_ones_skipped() {
        let read = read(data(&["ab", "", "cde", "f"]), 6).unwrap();
        assert_eq!(read, "abcdef");
        assert_eq!(self::read(data(&[]), 0).unwrap(), "");
        assert_eq!(self::read(data(&["", ""]), 0).unwrap(), "");
    }

    #[test]
    fn the_limit_counts_every_frame() {
        assert_eq!(read(data(&["abc", "def"]), 6).unwrap(), "abcdef");
        let err = read(data(&["abc", "def"]), 5).unwrap_err();
        assert!(matches!(err, BodyFailure::TooLarge), "{err:?}");
    }

    #[test]
    fn trailers_are_refused_once_the_body_is_read() {
        let trailers = Frame::trailers(http::HeaderMap::new());
        let body = Frames([Ok(Frame::data(Bytes::from("abc"))), Ok(trailers)].into());
        assert!(matches!(read(body, 10), Err(BodyFailure::Trailers)));
        // A body over the limit is too large, whatever comes after.
        let trailers = Frame::trailers(http::HeaderMap::new());
        let body = Frames([Ok(trailers), Ok(Frame::data(Bytes::from("abc")))].into());
        assert!(matches!(read(body, 2), Err(BodyFailure::TooLarge)));
    }

    #[test]
    fn a_body_that_limits_itself_is_too_large() {
        let limited = http_body_util::Limited::new(data(&["abc", "def"]), 4);
        let read = block_on(CollectBody::new(limited, 100));
        assert!(matches!(read, Err(BodyFailure::TooLarge)), "{read:?}");
    }

    #[test]
    fn the_body_error_is_kept() {
        let body = Frames(
            [
                Ok(Frame::data(Bytes::from("abc"))),
                Err(std::io::Error::other("connection reset")),
            ]
            .into(),
        );
        match read(body, 10) {
            Err(BodyFailure::Failed(error)) => assert_eq!(error.to_string(), "connection reset"),
            other => panic!("expected the body's error, got {other:?}"),
        }
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
