//! Runs one signed request through the layer (and one through the verifier) many times, for a
//! profiler: `valgrind --tool=callgrind target/release/examples/profile_sign [sign|verify]`.
use std::convert::Infallible;
use std::future::ready;
use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use rampnow_auth::verify::RampnowVerifyLayer;
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
use tower::{service_fn, Layer};

#[path = "../tests/support/in_memory.rs"]
mod in_memory;

use in_memory::send;

fn main() {
    let uri = "https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC";
    let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv").unwrap();
    let clock = || UNIX_EPOCH + Duration::from_secs(1_764_288_000);
    let mut signer = RampnowAuthLayer::new(credentials.clone())
        .with_clock(clock)
        .layer(service_fn(|r: Request<SignedBody>| {
            ready(Ok::<_, Infallible>(Response::new(r.into_parts().0.headers)))
        }));
    let request = || {
        Request::post(uri)
            .body(SignedBody::from(Bytes::new()))
            .unwrap()
    };
    let headers = send(&mut signer, request()).into_body();
    let mut verifier = RampnowVerifyLayer::new(credentials)
        .with_clock(clock)
        .layer(service_fn(|r: Request<SignedBody>| {
            drop(black_box(r));
            ready(Ok::<_, Infallible>(Response::new(Bytes::new())))
        }));
    let mode = std::env::args().nth(1).unwrap_or_default();
    for _ in 0..100_000 {
        if mode == "verify" {
            let mut r = request();
            *r.headers_mut() = headers.clone();
            black_box(send(&mut verifier, r));
        } else {
            black_box(send(&mut signer, request()));
        }
    }
}
