//! Heap allocations made by the signing middleware, counted by a global allocator.
//!
//! Allocation counts are deterministic, so unlike timings they can be asserted. Each
//! measurement sends one request through [`RampnowAuthLayer`] to an inner service that does
//! nothing, driven by a single poll on the test's own thread, and subtracts what the same
//! request costs without the layer. Building the request happens before counting starts.
//!
//! This file holds only these tests: the allocator counts per thread, but a test binary of its
//! own keeps anything else out of the numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Ready};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{Empty, Full};
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
use tower::{service_fn, Layer};

/// Passes every call to [`System`], counting allocations made on a thread that is measuring.
struct Counting;

thread_local! {
    /// Whether this thread is inside [`measure`].
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Allocations (including reallocations) made by this thread while measuring.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    /// Bytes requested by those allocations (the new size, for a reallocation).
    static BYTES: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated and not yet freed by this thread since measuring started (memory freed
    /// that was allocated before makes it go below zero).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE` reached.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: the allocator is also called while thread-locals are being torn down.
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        let _ = BYTES.try_with(|n| n.set(n.get() + size));
    }
}

/// Live bytes change by `delta`: an allocation (+), a free (-), or a reallocation (new size
/// less old: a block that is resized counts at its new size, as the allocator holds it).
fn live(delta: isize) {
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let _ = LIVE.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }
}

// SAFETY: every method forwards to `System` unchanged; counting touches only const-initialized
// thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        live(layout.size() as isize);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        live(layout.size() as isize);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        live(new_size as isize - layout.size() as isize);
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(-(layout.size() as isize));
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap use of one measured section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    allocations: usize,
    bytes: usize,
}

/// Runs `f` on this thread and returns the heap allocations it made.
fn measure<T>(f: impl FnOnce() -> T) -> Usage {
    ALLOCATIONS.with(|n| n.set(0));
    BYTES.with(|n| n.set(0));
    MEASURING.with(|m| m.set(true));
    let output = f();
    MEASURING.with(|m| m.set(false));
    drop(output);
    Usage {
        allocations: ALLOCATIONS.with(Cell::get),
        bytes: BYTES.with(Cell::get),
    }
}

/// Runs `f` on this thread and returns the most bytes it held allocated at once (above what
/// was allocated when it started).
fn peak_bytes<T>(f: impl FnOnce() -> T) -> usize {
    LIVE.with(|n| n.set(0));
    PEAK.with(|n| n.set(0));
    MEASURING.with(|m| m.set(true));
    let output = f();
    MEASURING.with(|m| m.set(false));
    drop(output);
    PEAK.with(Cell::get).unsigned_abs()
}

const URI: &str =
    "https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC";

#[path = "support/in_memory.rs"]
mod in_memory;

use in_memory::{send, Chunked};

fn layer() -> RampnowAuthLayer {
    let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv").unwrap();
    RampnowAuthLayer::new(credentials).with_clock(|| UNIX_EPOCH + Duration::from_secs(1764288000))
}

/// The inner service: drops the request after checking it is signed, allocating nothing.
fn noop<B>(request: Request<B>) -> Ready<Result<Response<usize>, Infallible>> {
    ready(Ok(Response::new(request.headers().len())))
}

/// What the layer adds to sending one request: the request is built by `make` outside the
/// measured section, sent through the layer, and the same request sent without the layer is
/// subtracted.
fn layer_usage<B, F>(make: F) -> Usage
where
    B: Body + Unpin,
    B::Error: Into<tower::BoxError>,
    F: Fn() -> Request<B>,
{
    let mut signed = layer().layer(service_fn(noop::<SignedBody>));
    let mut unsigned = service_fn(noop::<B>);
    // Warm up: anything initialized on first use is not a per-request cost.
    assert_eq!(
        send(&mut signed, make()).into_body(),
        3,
        "the three headers are set"
    );
    send(&mut unsigned, make());

    let request = make();
    let with_layer = measure(|| send(&mut signed, request));
    let request = make();
    let without = measure(|| send(&mut unsigned, request));
    let usage = Usage {
        allocations: with_layer.allocations - without.allocations,
        bytes: with_layer.bytes.saturating_sub(without.bytes),
    };
    eprintln!("{}: {usage:?}", std::any::type_name::<B>());
    usage
}

fn body_of(len: usize) -> Bytes {
    Bytes::from(vec![b'x'; len])
}

fn signed_body(len: usize) -> Usage {
    let data = body_of(len);
    layer_usage(|| {
        Request::post(URI)
            .body(SignedBody::from(data.clone()))
            .unwrap()
    })
}

/// A body made for this request from a new `Vec`, as `serde_json::to_vec` gives it: the
/// layer's first clone of such bytes (kept for a 401's receipt) makes them shared, which costs
/// one allocation of a fixed size, whatever the body's size.
fn fresh_body(len: usize) -> Usage {
    layer_usage(|| {
        Request::post(URI)
            .body(SignedBody::from(vec![b'x'; len]))
            .unwrap()
    })
}

fn full_body(len: usize) -> Usage {
    let data = body_of(len);
    layer_usage(|| Request::post(URI).body(Full::new(data.clone())).unwrap())
}

fn chunked_body(len: usize) -> Usage {
    let data = body_of(len);
    layer_usage(|| Request::post(URI).body(Chunked::new(&data, 16)).unwrap())
}

#[test]
fn a_signed_request_allocates_at_most_six_times() {
    for usage in [
        signed_body(200),
        full_body(200),
        fresh_body(200),
        chunked_body(64 * 1024),
    ] {
        assert!(usage.allocations <= 6, "{usage:?}");
    }
}

#[test]
fn a_one_piece_body_is_not_copied_whatever_its_size() {
    let reference = signed_body(0);
    for usage in [
        signed_body(200),
        signed_body(1024 * 1024),
        full_body(0),
        full_body(200),
        full_body(1024 * 1024),
    ] {
        assert_eq!(usage, reference);
    }
    // What is allocated is a few headers, not a body.
    assert!(reference.bytes < 1024, "{reference:?}");
    // A body in a new `Vec`: one allocation more, of the same size for any body.
    let fresh = fresh_body(200);
    assert_eq!(fresh, fresh_body(1024 * 1024));
    assert_eq!(fresh.allocations, reference.allocations + 1);
    assert!(fresh.bytes < 1024, "{fresh:?}");
    // Any body type in one piece, not only the layer's own: taken in `call` alike.
    let empty = layer_usage(|| Request::get(URI).body(Empty::<Bytes>::new()).unwrap());
    assert_eq!(empty, reference);
    let string = layer_usage(|| Request::post(URI).body("x".repeat(200)).unwrap());
    assert_eq!(string, fresh);
}

#[test]
fn a_chunked_body_is_held_once() {
    for len in [64 * 1024, 1024 * 1024] {
        // Without a size hint the buffer grows by doubling: what is asked of the allocator,
        // reallocations included, stays under twice the body.
        let usage = chunked_body(len);
        assert!(
            usage.bytes <= 2 * len + 4096,
            "{len} bytes in 16 chunks: {usage:?}"
        );
        // With an exact size hint (hyper's, from `Content-Length`) a body of up to 64 KiB is
        // allocated once at its size; a larger one, trusted a few times what has arrived, in
        // two steps.
        let data = body_of(len);
        let usage = layer_usage(|| {
            let body = Announced(Chunked::new(&data, 16), len as u64);
            Request::post(URI).body(body).unwrap()
        });
        let most = if len <= 64 * 1024 { len } else { 2 * len };
        assert!(
            usage.bytes <= most + 4096,
            "{len} bytes in 16 chunks, announced: {usage:?}"
        );
    }
}

/// A body of frames that says how long it is, as hyper's does for a `Content-Length`.
struct Announced(Chunked, u64);

impl Body for Announced {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = std::pin::Pin::new(&mut this.0).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &frame {
            this.1 -= frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        frame
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.1)
    }
}

/// The size of the read buffer [`ReadBuffers`] slices its frames from.
const READ_BUFFER: usize = 8 * 1024;

/// A body as hyper hands a chunked upload to a server: each frame is a slice of the
/// connection's read buffer, which also holds the chunk-size line and `CRLF` around each frame
/// (`1\r\nx\r\n` for a one-byte chunk), and a new buffer is allocated when one is used up. A
/// frame kept alive keeps its whole buffer alive.
struct ReadBuffers {
    left: usize,
    chunk: usize,
    buffer: Bytes,
    at: usize,
}

impl ReadBuffers {
    fn new(len: usize, chunk: usize) -> ReadBuffers {
        ReadBuffers {
            left: len,
            chunk,
            buffer: Bytes::new(),
            at: 0,
        }
    }
}

impl Body for ReadBuffers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = this.chunk.min(this.left);
        // The chunk-size line (hex digits and CRLF), the data, and its CRLF.
        let framing = format!("{n:x}").len() + 2;
        let stride = framing + n + 2;
        if this.at + stride > this.buffer.len() {
            this.buffer = Bytes::from(vec![b'x'; READ_BUFFER]);
            this.at = 0;
        }
        let frame = this.buffer.slice(this.at + framing..this.at + framing + n);
        this.at += stride;
        this.left -= n;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(frame))))
    }
}

/// What the layer and the verifier may hold on top of the body itself while reading it: one
/// read buffer of the body's, the request's head and the middleware's own state.
const HEAD_ROOM: usize = READ_BUFFER + 24 * 1024;

/// The most bytes held at once while the verifier reads a `len`-byte body cut into
/// `chunk`-byte frames, at a body limit of exactly `len`. The signature is wrong (any 64 hex
/// digits, as an attacker without the secret sends), so the body is read whole, then refused.
fn verifier_peak(len: usize, chunk: usize) -> usize {
    use rampnow_auth::verify::RampnowVerifyLayer;
    const NOW: u64 = 1_764_288_000;
    let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv").unwrap();
    let mut verifier = RampnowVerifyLayer::new(credentials)
        .with_clock(|| UNIX_EPOCH + Duration::from_secs(NOW))
        .max_body_size(len)
        .layer(service_fn(|_: Request<SignedBody>| {
            ready(Ok::<_, Infallible>(Response::new(SignedBody::empty())))
        }));
    let request = || {
        Request::post("/api/partner/v1/ext/ramp_order/quote")
            .header("rn-api-key", "ak_live_3f9a1c")
            .header("rn-access-timestamp", NOW.to_string())
            .header("rn-access-sign", "0".repeat(64))
            .body(ReadBuffers::new(len, chunk))
            .unwrap()
    };
    // Warm up, and check the body was read whole: too large would be 413.
    let response = send(&mut verifier, request());
    assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
    let request = request();
    peak_bytes(|| send(&mut verifier, request).status())
}

/// The same, for the signing layer reading a streamed body before signing it.
fn signer_peak(len: usize, chunk: usize) -> usize {
    let mut signed = layer()
        .max_body_size(len)
        .layer(service_fn(noop::<SignedBody>));
    let request = || {
        Request::post(URI)
            .body(ReadBuffers::new(len, chunk))
            .unwrap()
    };
    assert_eq!(send(&mut signed, request()).into_body(), 3);
    let request = request();
    peak_bytes(|| send(&mut signed, request).into_body())
}

#[test]
fn tiny_frames_do_not_multiply_the_memory_a_body_holds() {
    const LEN: usize = 1024 * 1024;
    for chunk in [1, 16] {
        let verifier = verifier_peak(LEN, chunk);
        let signer = signer_peak(LEN, chunk);
        eprintln!("{LEN} bytes in {chunk}-byte frames: verifier peak {verifier} B, signer peak {signer} B");
        for (who, peak) in [("verifier", verifier), ("signer", signer)] {
            assert!(
                peak <= LEN + HEAD_ROOM,
                "the {who} held {peak} bytes at once for a {LEN}-byte body (limit {LEN}) in \
                 {chunk}-byte frames; at most the limit plus {HEAD_ROOM} is allowed"
            );
        }
    }
}

#[test]
fn an_announced_length_reserves_no_more_than_what_arrives_justifies() {
    // Two bytes, with a `Content-Length` of 1 MiB or 10 MiB (within the limit), then the body
    // ends (as a client that stalls, then is cut off, would): before the signature is even
    // checked, the server reserves room for 64 KiB more, not the announced length.
    for announced in [1024 * 1024, 10 * 1024 * 1024] {
        let mut signed = layer()
            .max_body_size(announced)
            .layer(service_fn(noop::<SignedBody>));
        let request = || {
            let two = Bytes::from_static(b"{}");
            let pieces = [two.slice(..1), two.slice(1..)];
            let body = Announced(Chunked::from_pieces(pieces), announced as u64);
            Request::post(URI).body(body).unwrap()
        };
        let _ = send(&mut signed, request());
        let request = request();
        let peak = peak_bytes(|| send(&mut signed, request).into_body());
        assert!(
            peak <= 64 * 1024 + HEAD_ROOM,
            "{peak} bytes held for a 2-byte body announced as {announced}"
        );
    }
}
