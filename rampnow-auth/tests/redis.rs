//! The `redis` feature against a real `redis-server` (started on 127.0.0.1, a free port, and
//! stopped by each test): one rate limit shared by two processes, one replay memory shared by
//! two verifier replicas, and what both do when Redis is frozen or gone.
//!
//! Without `redis-server` these tests say why on stderr and pass, unless
//! `RAMPNOW_REQUIRE_REDIS=1` (CI sets it).

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/spacing.rs"]
mod spacing;

use std::convert::Infallible;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{hyper_client, now_secs, TestServer, RN};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use rampnow_auth::limit::{LimitError, RateLimitLayer};
use rampnow_auth::verify::{RampnowVerifyLayer, RedisReplayStore, Rejection, RejectionKind};
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
use redis_server::RedisServer;
use spacing::{assert_signed_when_released, busiest_second, span};
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};

/// The child process's environment: the Redis URL, the server's address, the limit's name.
const CHILD_REDIS: &str = "RAMPNOW_TEST_CHILD_REDIS_URL";
const CHILD_SERVER: &str = "RAMPNOW_TEST_CHILD_SERVER";
const CHILD_NAME: &str = "RAMPNOW_TEST_CHILD_LIMIT_NAME";

fn credentials() -> Credentials {
    Credentials::new(common::API_KEY, common::SECRET).unwrap()
}

/// Two processes (this test binary, run twice as `child_sends_twenty_through_the_shared_limit`)
/// send 20 requests each, all at once, through one Redis limit of 10 a second: the server
/// never sees more than 10 in a second, and the 40 take at least 3.9 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_limit() {
    let Some(redis) = RedisServer::start("two_processes_share_one_limit") else {
        return;
    };
    let server = TestServer::start(RN, now_secs, 0).await;
    let name = format!("two-processes-{}", std::process::id());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_sends_twenty_through_the_shared_limit",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD_REDIS, redis.url())
                .env(CHILD_SERVER, server.addr.to_string())
                .env(CHILD_NAME, &name)
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|child| child.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for output in outputs {
        assert!(output.status.success(), "a child failed: {}", output.status);
    }

    let seen = server.seen();
    assert_eq!(seen.len(), 40, "20 from each process");
    let busiest = busiest_second(&seen);
    assert!(busiest <= 10, "{busiest} requests in one second");
    let took = span(&seen);
    eprintln!(
        "{} requests: at most {busiest} in any one second, {took:?} from the first to the last",
        seen.len()
    );
    assert!(took >= Duration::from_millis(3_900), "took {took:?}");
    assert_signed_when_released(&seen);
}

/// The other half of `two_processes_share_one_limit`: does nothing unless run by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_sends_twenty_through_the_shared_limit() {
    let (Ok(url), Ok(addr), Ok(name)) = (
        std::env::var(CHILD_REDIS),
        std::env::var(CHILD_SERVER),
        std::env::var(CHILD_NAME),
    ) else {
        return;
    };
    let conn = redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap())
        .await
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(RateLimitLayer::redis(conn, &name, 10))
        .layer(RampnowAuthLayer::new(credentials()).allow_http(true))
        .service(hyper_client());
    let mut tasks = Vec::new();
    for i in 0..20 {
        let request = Request::post(format!("http://{addr}/api/partner/v1/ext/ramp_order/quote"))
            .body(SignedBody::from(format!(r#"{{"n":{i}}}"#)))
            .unwrap();
        tasks.push(tokio::spawn(client.clone().oneshot(request)));
    }
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// A GET signed now with the test key, as the client sends it.
fn signed_get(target: &str) -> Request<SignedBody> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signature = common::reference_signature(
        common::SECRET.as_bytes(),
        ts.as_bytes(),
        Method::GET.as_str(),
        target,
        b"",
    );
    Request::get(target)
        .header("rn-api-key", common::API_KEY)
        .header("rn-access-timestamp", ts)
        .header("rn-access-sign", signature)
        .body(SignedBody::empty())
        .unwrap()
}

/// A verifier replica with its own connection and its own `RedisReplayStore` on `redis`.
async fn replica(
    redis: &RedisServer,
    timeout: Duration,
) -> impl tower::Service<
    Request<SignedBody>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    let store = RedisReplayStore::new(redis.connect().await).timeout(timeout);
    RampnowVerifyLayer::new(credentials())
        .replay_store(store)
        .layer(service_fn(|_req: Request<SignedBody>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }))
}

fn rejection(response: &Response<Full<Bytes>>) -> &Rejection {
    response
        .extensions()
        .get::<Rejection>()
        .expect("a refusal carries its Rejection")
}

#[tokio::test]
async fn a_replay_sent_to_a_second_replica_is_refused() {
    let Some(redis) = RedisServer::start("a_replay_sent_to_a_second_replica_is_refused") else {
        return;
    };
    let one = replica(&redis, Duration::from_secs(5)).await;
    let two = replica(&redis, Duration::from_secs(5)).await;

    let original = signed_get("/api/partner/v1/ext/currencies?n=1");
    let (parts, body) = original.into_parts();
    let copy = Request::from_parts(parts.clone(), body.clone());
    let response = one
        .clone()
        .oneshot(Request::from_parts(parts, body))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let replayed = two.clone().oneshot(copy).await.unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rejection(&replayed).kind(), RejectionKind::Replayed);

    // Fresh requests are accepted by either replica.
    let fresh = two
        .clone()
        .oneshot(signed_get("/api/partner/v1/ext/currencies?n=2"))
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
    let fresh = one
        .oneshot(signed_get("/api/partner/v1/ext/currencies?n=3"))
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);

    // What Redis holds: three keys, each namespaced and of a fixed, small size, none naming
    // the API key; each expiring (the tolerance window and a few seconds, not forever).
    let mut conn = redis.connect().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in &keys {
        assert!(key.starts_with("rampnow-auth:replay:"), "{key}");
        assert_eq!(key.len(), "rampnow-auth:replay:".len() + 64, "{key}");
        assert!(!key.contains(common::API_KEY), "{key}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 60_000 && ttl <= 67_000, "{key} expires in {ttl} ms");
    }
}

/// Redis frozen (no answer), then killed: the limiter fails the request with a `LimitError`
/// and sends nothing; the replay store answers `503` with `Retry-After`. Neither hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_frozen_or_gone_both_fail_closed_within_their_timeout() {
    let Some(mut redis) =
        RedisServer::start("with_redis_frozen_or_gone_both_fail_closed_within_their_timeout")
    else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let server = TestServer::start(RN, now_secs, 0).await;
    let client = ServiceBuilder::new()
        .layer(RateLimitLayer::redis(redis.connect().await, "down", 100).redis_timeout(timeout))
        .layer(RampnowAuthLayer::new(credentials()).allow_http(true))
        .service(hyper_client());
    let verifier = replica(&redis, timeout).await;
    let send = || {
        let request = Request::get(server.url("/api/partner/v1/ext/currencies"))
            .body(SignedBody::empty())
            .unwrap();
        // A generous outer bound: the point is that the answer comes, not how fast.
        tokio::time::timeout(Duration::from_secs(20), client.clone().oneshot(request))
    };
    let check = |target: &str| {
        tokio::time::timeout(
            Duration::from_secs(20),
            verifier.clone().oneshot(signed_get(target)),
        )
    };

    // Up: both work.
    assert_eq!(send().await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(check("/a").await.unwrap().unwrap().status(), StatusCode::OK);

    for state in ["frozen", "killed"] {
        if state == "frozen" {
            redis.freeze();
        } else {
            redis.thaw();
            redis.kill();
        }
        let started = Instant::now();
        let err = send().await.expect("the limiter answers").unwrap_err();
        let limit = err
            .downcast_ref::<LimitError>()
            .unwrap_or_else(|| panic!("{state}: a LimitError, not {err}"));
        assert!(limit.is_unavailable(), "{state}: {limit}");
        assert!(limit.to_string().contains("not sent"), "{state}: {limit}");
        if state == "frozen" {
            assert!(limit.to_string().contains("300ms"), "{limit}");
            assert!(started.elapsed() >= timeout, "it waited for Redis first");
        }

        let path = format!("/{state}");
        let response = check(&path)
            .await
            .expect("the replay store answers")
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{state}"
        );
        assert_eq!(response.headers()["retry-after"], "1", "{state}");
        assert_eq!(
            rejection(&response).kind(),
            RejectionKind::ReplayStoreUnavailable
        );
    }
    assert_eq!(
        server.seen().len(),
        1,
        "nothing was sent while Redis was down"
    );
}

/// A TCP proxy on 127.0.0.1 in front of `redis-server` that holds every reply `delay` before
/// passing it on (requests go through at once): a Redis far away, or a slow network.
async fn slow_proxy(redis_url: &str, delay: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = redis_url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    tokio::time::sleep(delay).await;
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("redis://{addr}/")
}

/// A slot reserved in Redis is only as exact as the reply is quick: the limiter sleeps the
/// wait Redis gave *from when the reply arrived*. A process whose reply is late by more than
/// the headroom would go late and land next to the slots handed to others since. Two
/// processes share a limit of 2 a second; the first one's Redis replies take 450 ms: the
/// server still never sees more than 2 in a second (the late reply is not used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_from_redis_does_not_break_the_limit() {
    let Some(redis) = RedisServer::start("a_late_reply_from_redis_does_not_break_the_limit") else {
        return;
    };
    let far = slow_proxy(&redis.url(), Duration::from_millis(450)).await;
    let far = redis::aio::ConnectionManager::new_with_config(
        redis::Client::open(far).unwrap(),
        redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(5))),
    )
    .await
    .unwrap();
    let near = redis.connect().await;
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let service = |conn, name: &str| {
        let arrivals = arrivals.clone();
        RateLimitLayer::redis(conn, name, 2).layer(service_fn(move |()| {
            arrivals.lock().unwrap().push(Instant::now());
            async { Ok::<_, Infallible>(()) }
        }))
    };
    // Loads the script (a limit of its own), so every later call is one round trip.
    service(near.clone(), "lag-warm-up")
        .oneshot(())
        .await
        .unwrap();
    arrivals.lock().unwrap().clear();

    let far = service(far, "lag");
    let near = service(near, "lag");
    let first = tokio::spawn(far.oneshot(()));
    // The far process's script runs first (its request is not delayed): it gets the slot now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = tokio::spawn(near.clone().oneshot(()));
    let third = tokio::spawn(near.oneshot(()));
    second.await.unwrap().unwrap();
    third.await.unwrap().unwrap();
    if let Err(err) = first.await.unwrap() {
        let limit = err.downcast_ref::<LimitError>().expect("a LimitError");
        assert!(limit.is_unavailable(), "{limit}");
        assert!(limit.to_string().contains("headroom"), "{limit}");
    }

    let mut at = arrivals.lock().unwrap().clone();
    at.sort();
    for (i, start) in at.iter().enumerate() {
        let within = at[i..]
            .iter()
            .take_while(|t| **t - *start < Duration::from_secs(1))
            .count();
        assert!(within <= 2, "{within} requests in one second: {at:?}");
    }
}
