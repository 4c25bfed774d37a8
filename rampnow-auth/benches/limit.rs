//! What the rate limiter costs a request that does not have to wait, next to what the signing
//! layer costs the same request, in one criterion group (`limit`) so the ratios can be read:
//!
//! - `baseline`: build the request and send it to a service that does nothing.
//! - `signing`: the same through [`RampnowAuthLayer`] (a 200-byte body, a fixed clock).
//! - `local+signing`: the same through [`RateLimitLayer::per_second`] outside the signing
//!   layer, at a rate no loop reaches (so it never waits): the limiter's own cost is
//!   `local+signing - signing`.
//! - With `--features redis` and a `redis-server` on the machine (started here on 127.0.0.1,
//!   a free port, stopped at the end): `redis+signing`, through [`RateLimitLayer::redis`],
//!   one script round trip per request on loopback; and `signing_runtime`, the signing layer
//!   driven by the same Tokio runtime (`block_on`), its fair baseline.
//!
//! ```text
//! cargo bench --bench limit --features redis -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use rampnow_auth::limit::RateLimitLayer;
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
#[cfg(feature = "redis")]
use tower::ServiceExt;
use tower::{service_fn, Layer};

#[path = "../tests/support/in_memory.rs"]
mod in_memory;
#[cfg(feature = "redis")]
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use in_memory::send;

const URI: &str =
    "https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC";

fn clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_764_288_000)
}

fn noop(_request: Request<SignedBody>) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

fn request() -> Request<SignedBody> {
    Request::post(URI)
        .body(SignedBody::from(vec![b'x'; 200]))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv").unwrap();
    let signing = RampnowAuthLayer::new(credentials).with_clock(clock);
    // A rate no loop reaches: one request every nanosecond.
    let unlimited = || RateLimitLayer::per_second(u32::MAX).headroom(Duration::ZERO);

    let mut group = c.benchmark_group("limit");
    let mut baseline = service_fn(noop);
    group.bench_function("baseline", |b| b.iter(|| send(&mut baseline, request())));
    let mut signed = signing.layer(service_fn(noop));
    group.bench_function("signing", |b| b.iter(|| send(&mut signed, request())));
    let mut local = unlimited().layer(signing.layer(service_fn(noop)));
    group.bench_function("local+signing", |b| b.iter(|| send(&mut local, request())));

    #[cfg(feature = "redis")]
    {
        if let Some(redis) = redis_server::RedisServer::start("benches/limit.rs, redis") {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let conn = runtime.block_on(redis.connect());
            let shared = RateLimitLayer::redis(conn, "bench", u32::MAX)
                .headroom(Duration::ZERO)
                .layer(signing.layer(service_fn(noop)));
            let signed = signing.layer(service_fn(noop));
            group.bench_function("signing_runtime", |b| {
                b.iter(|| runtime.block_on(signed.clone().oneshot(request())).unwrap())
            });
            group.bench_function("redis+signing", |b| {
                b.iter(|| runtime.block_on(shared.clone().oneshot(request())).unwrap())
            });
        }
    }
    #[cfg(not(feature = "redis"))]
    eprintln!("limit/redis+signing: not run; it needs `--features redis` (and redis-server)");
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
