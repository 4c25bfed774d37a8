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
use http_body_util::Full;
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
}

fn record(size: usize) {
    // `try_with`: the allocator is also called while thread-locals are being torn down.
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        let _ = BYTES.try_with(|n| n.set(n.get() + size));
    }
}

// SAFETY: every method forwards to `System` unchanged; counting touches only const-initialized
// thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
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
    B: Body + 'static,
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
}

#[test]
fn a_chunked_body_is_copied_at_most_once() {
    for len in [64 * 1024, 1024 * 1024] {
        let usage = chunked_body(len);
        assert!(
            usage.bytes <= len + 4096,
            "{len} bytes in 16 chunks: {usage:?}"
        );
    }
}
