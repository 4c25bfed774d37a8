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
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
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

    // Inlined (here and below) into the signing layer's collector, which is instantiated in the
    // caller's crate: the layer reads a `SignedBody` with no call into this one.
    #[inline]
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

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    #[inline]
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

/// How far ahead of the bytes received the collector trusts a body's own size hint (hyper's,
/// from `Content-Length`): it reserves room for at most this much, or three times what has
/// arrived, whichever is more, beyond what has arrived. An honest body is read into a buffer of
/// its exact size in one or two allocations; a client that announces 10 MiB and sends two
/// bytes (before its signature is even checked) makes the server reserve 64 KiB, not 10 MiB.
const TRUST_SIZE_HINT_AHEAD: usize = 64 * 1024;

pin_project! {
    /// Reads a whole body into one [`Bytes`], failing once more than `limit` bytes arrive.
    ///
    /// A body that arrives in one data frame is not copied (for `Bytes` data). From the second
    /// frame on, every frame is copied at once into one growing buffer and dropped, so however
    /// the body is cut up — a million one-byte chunks included — what is held is the bytes
    /// themselves, in one buffer that never grows past `limit`: no list of frames, and no frame
    /// keeping its (larger) backing buffer alive, as hyper's frames keep its read buffer.
    pub(crate) struct CollectBody<B: Body> {
        #[pin]
        body: B,
        // The only frame so far, kept as it is.
        first: Option<B::Data>,
        // Every byte, from the second frame on.
        whole: Vec<u8>,
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
            whole: Vec::new(),
            len: 0,
            limit,
            trailers: false,
        }
    }
}

/// Makes room in `whole` for `more` bytes: for what the body says is left when it says so
/// exactly, within what is trusted ([`TRUST_SIZE_HINT_AHEAD`]); otherwise room for a few more
/// frames of the same size the first time, and doubling after that. Never past `limit`, which
/// the caller has checked `whole.len() + more` against.
fn make_room(whole: &mut Vec<u8>, more: usize, announced: Option<u64>, limit: usize) {
    let needed = whole.len() + more;
    if needed <= whole.capacity() {
        return;
    }
    let target = match announced.and_then(|rest| usize::try_from(rest).ok()) {
        Some(rest) => {
            let trusted = rest.min(needed.saturating_mul(3).max(TRUST_SIZE_HINT_AHEAD));
            needed.saturating_add(trusted)
        }
        // Unannounced: a body that came in two frames is likely to come in more of the same
        // size (a streamed upload), so room for sixteen such frames at once, which a body of
        // up to sixteen frames fills without growing (never past the limit, and given back at
        // the end if unused).
        None if whole.capacity() == 0 => needed.saturating_mul(8),
        None => whole.capacity().saturating_mul(2),
    };
    let target = target.max(needed).min(limit.max(needed));
    whole.reserve_exact(target - whole.len());
}

fn append<D: Buf>(whole: &mut Vec<u8>, mut data: D) {
    while data.has_remaining() {
        let chunk = data.chunk();
        let n = chunk.len();
        whole.extend_from_slice(chunk);
        data.advance(n);
    }
}

impl<B> Future for CollectBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Bytes, BodyFailure>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            // A body that says it has ended is not polled again (nor at all, if it starts so).
            if this.body.is_end_stream() {
                break;
            }
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
                    if this.first.is_none() && this.whole.capacity() == 0 {
                        *this.first = Some(data);
                        continue;
                    }
                    // A second frame: from now on every byte goes into one buffer, and each
                    // frame is dropped as soon as it is copied.
                    let more = this.first.as_ref().map_or(0, Buf::remaining) + data.remaining();
                    let announced = this.body.size_hint().exact();
                    make_room(this.whole, more, announced, *this.limit);
                    if let Some(first) = this.first.take() {
                        append(this.whole, first);
                    }
                    append(this.whole, data);
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
            Some(mut first) => first.copy_to_bytes(*this.len),
            None if this.whole.is_empty() => Bytes::new(),
            None => {
                let mut whole = std::mem::take(this.whole);
                // Doubling may have left up to half the buffer unused; give it back unless it
                // is small.
                if whole.capacity() - whole.len() > whole.len() / 8 + 4096 {
                    whole.shrink_to_fit();
                }
                Bytes::from(whole)
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

    fn data_frames(pieces: &[&'static str]) -> Frames {
        data(pieces)
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

    /// One poll with a waker that does nothing, as the signing layer's `call` does.
    fn poll_once<B>(body: B) -> Poll<Result<Bytes, BodyFailure>>
    where
        B: Body + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut collect = CollectBody::new(body, usize::MAX);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(&mut collect).poll(&mut cx)
    }

    #[test]
    fn bodies_in_memory_are_ready_at_once_without_a_copy() {
        use http_body_util::{Empty, Full};
        let ready = |poll: Poll<Result<Bytes, BodyFailure>>| match poll {
            Poll::Ready(Ok(bytes)) => bytes,
            other => panic!("expected the bytes at once, got {other:?}"),
        };
        let data = Bytes::from(vec![7u8; 100]);
        let taken = ready(poll_once(SignedBody::from(data.clone())));
        assert_eq!(taken.as_ptr(), data.as_ptr());
        let taken = ready(poll_once(Full::new(data.clone())));
        assert_eq!(taken.as_ptr(), data.as_ptr());
        assert_eq!(taken.len(), 100);
        assert_eq!(ready(poll_once(String::from("abc"))), "abc");
        assert_eq!(ready(poll_once(Empty::<Bytes>::new())), "");
        assert_eq!(ready(poll_once(Full::new(Bytes::new()))), "");
        assert_eq!(ready(poll_once(SignedBody::empty())), "");
        // Other data types too: one frame of `&[u8]`, copied once into `Bytes`.
        assert_eq!(ready(poll_once(Full::new(&b"abc"[..]))), "abc");
        assert_eq!(ready(poll_once(data_frames(&["ab", "cd"]))), "abcd");
    }

    #[test]
    fn a_body_that_waits_is_pending_then_read_whole() {
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(4);
        let mut collect = CollectBody::new(body, 10);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut collect).poll(&mut cx).is_pending());
        tx.try_send(Frame::data(Bytes::from("ab"))).unwrap();
        drop(tx);
        assert_eq!(block_on(collect).unwrap(), "ab");
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
    fn one_byte_frames_come_together_in_one_buffer_within_the_limit() {
        let data: Vec<u8> = (0..=255).cycle().take(5000).collect();
        let source = Bytes::from(data.clone());
        let frames = (0..data.len()).map(|i| Ok(Frame::data(source.slice(i..=i))));
        let read = read(Frames(frames.collect()), data.len()).unwrap();
        assert_eq!(read, data);
        // Not a slice of any frame: the frames were let go.
        assert!(source.is_unique());
    }

    #[test]
    fn the_buffer_grows_from_the_announced_size_and_never_past_the_limit() {
        // Announced: room for exactly what is left.
        let mut whole = Vec::new();
        make_room(&mut whole, 10, Some(90), 1000);
        assert_eq!(whole.capacity(), 100);
        // Announced far more than has arrived: room for what is trusted ahead, not for all of
        // it (nor past the limit).
        let mut whole = Vec::new();
        make_room(&mut whole, 2, Some(10 << 20), usize::MAX);
        assert_eq!(whole.capacity(), 2 + TRUST_SIZE_HINT_AHEAD);
        let mut whole = Vec::new();
        make_room(&mut whole, 2, Some(u64::MAX), 1000);
        assert_eq!(whole.capacity(), 1000);
        // Past the trusted amount, up to three times what has arrived.
        let mut whole = vec![0; 100_000];
        make_room(&mut whole, 1, Some(10 << 20), usize::MAX);
        assert_eq!(whole.capacity(), 100_001 * 4);
        // Unannounced: eight times the first two frames.
        let mut whole = Vec::new();
        make_room(&mut whole, 10, None, 1000);
        assert_eq!(whole.capacity(), 80);
        // Doubling, then capped at the limit.
        whole.resize(80, 0);
        make_room(&mut whole, 1, None, 1000);
        assert_eq!(whole.capacity(), 160);
        whole.resize(160, 0);
        make_room(&mut whole, 1, None, 200);
        assert_eq!(whole.capacity(), 200);
        let mut whole = Vec::new();
        make_room(&mut whole, 10, None, 12);
        assert_eq!(whole.capacity(), 12);
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
