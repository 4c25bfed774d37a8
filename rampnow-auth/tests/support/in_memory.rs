//! Driving services over in-memory requests without a runtime, shared by the allocation test,
//! the property tests, the benchmarks and the profiling example (each includes this file with
//! `#[path]`; it is not a test binary of its own).
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame};
use tower::Service;

/// A body of several frames and no size hint, like a streamed upload.
pub struct Chunked {
    pub chunks: VecDeque<Bytes>,
}

impl Chunked {
    /// These frames, in order.
    pub fn from_pieces(pieces: impl IntoIterator<Item = Bytes>) -> Chunked {
        Chunked {
            chunks: pieces.into_iter().collect(),
        }
    }

    /// `data` in `n` frames of (about) equal size; slices of `data`, so making them copies
    /// nothing.
    pub fn new(data: &Bytes, n: usize) -> Chunked {
        let size = data.len().div_ceil(n).max(1);
        Chunked::from_pieces(
            (0..data.len())
                .step_by(size)
                .map(|start| data.slice(start..data.len().min(start + size))),
        )
    }
}

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .chunks
                .pop_front()
                .map(|c| Ok(Frame::data(c))),
        )
    }
}

/// Polls `future` once and returns its output; panics if it is not ready.
pub fn poll_once<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory request did not complete on its first poll"),
    }
}

/// Sends one request through `service`: `poll_ready`, then `call`, each polled once.
pub fn send<S, R>(service: &mut S, request: R) -> S::Response
where
    S: Service<R>,
    S::Error: Debug,
{
    poll_once(poll_fn(|cx| service.poll_ready(cx))).expect("service ready");
    poll_once(service.call(request)).expect("request sent")
}
