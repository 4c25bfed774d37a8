//! The sandbox's connection limits, from the outside: raw TCP and TLS clients on 127.0.0.1 that
//! stall (no `ClientHello`, a partial head, an idle kept-alive connection, too many
//! connections) and what the sandbox does about them. Timeouts are short (hundreds of
//! milliseconds) and every wait is bounded, so a regression fails instead of hanging.

mod common;

use std::sync::Arc;
use std::time::Duration;

use rampnow_sandbox::{Sandbox, SandboxBuilder, LOG_TARGET_MAX_BYTES};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A short timeout for the sandbox under test.
const SHORT: Duration = Duration::from_millis(400);

/// How long a test waits for something the sandbox should do within [`SHORT`]: generous, so a
/// loaded machine does not fail the test, and bounded, so a regression does not hang it.
const BOUND: Duration = Duration::from_secs(10);

/// Unsigned, so the verifier answers 401: enough to see that the connection is served.
const REQUEST: &[u8] = b"GET /api/partner/v1/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// A head cut off in the middle of a header.
const PARTIAL_HEAD: &[u8] = b"GET /api/partner/v1/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";

fn quiet() -> SandboxBuilder {
    Sandbox::builder().quiet(true)
}

async fn start(builder: SandboxBuilder) -> Sandbox {
    builder.start().await.expect("the sandbox starts")
}

/// A TLS connection to the sandbox (its handshake done: the sandbox accepted it).
async fn tls(sandbox: &Sandbox) -> TlsStream<TcpStream> {
    common::tls(sandbox, BOUND).await
}

/// A TLS connection that has sent `bytes` and nothing more.
async fn stalled(sandbox: &Sandbox, bytes: &[u8]) -> TlsStream<TcpStream> {
    let mut stream = tls(sandbox).await;
    stream.write_all(bytes).await.expect("sends");
    stream.flush().await.expect("flushes");
    stream
}

/// Reads until the sandbox closes the connection, at most [`BOUND`] (see
/// [`common::read_until_closed`]).
async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(Vec<u8>, Duration)> {
    common::read_until_closed(stream, BOUND).await
}

/// Whether the sandbox closes `stream` within [`BOUND`].
async fn closed<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    read_until_closed(stream).await.is_some()
}

/// Sends [`REQUEST`] and reads the start of the answer.
async fn answer(stream: &mut TlsStream<TcpStream>) -> String {
    stream.write_all(REQUEST).await.expect("sends");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .expect("answered in time")
        .expect("reads");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_partial_request_head_is_closed_after_the_header_read_timeout() {
    let sandbox = start(quiet().header_read_timeout(SHORT)).await;
    let mut stream = stalled(&sandbox, PARTIAL_HEAD).await;
    let (received, after) = read_until_closed(&mut stream)
        .await
        .expect("the sandbox closes a connection whose head never ends");
    assert!(
        after >= SHORT / 2,
        "closed after {after:?}, before the timeout"
    );
    // Closed without an answer (hyper sends none on a header read timeout).
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
    assert!(sandbox.log().is_empty());
}

#[tokio::test]
async fn a_connection_that_never_sends_a_client_hello_is_closed() {
    let sandbox = start(quiet().tls_handshake_timeout(SHORT)).await;
    let mut tcp = TcpStream::connect(sandbox.addr()).await.expect("connects");
    let (received, after) = read_until_closed(&mut tcp)
        .await
        .expect("the sandbox closes a connection that never starts its TLS handshake");
    assert!(
        after >= SHORT / 2,
        "closed after {after:?}, before the timeout"
    );
    assert!(received.is_empty());
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_read_timeout() {
    let sandbox = start(quiet().header_read_timeout(SHORT)).await;
    let mut stream = tls(&sandbox).await;
    // The connection is kept alive and serves a second request...
    for _ in 0..2 {
        let answer = answer(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(!answer.to_ascii_lowercase().contains("connection: close"));
    }
    // ...then, idle, it is closed: hyper's header read timer also runs between requests.
    assert!(
        closed(&mut stream).await,
        "an idle kept-alive connection stays open"
    );
    assert_eq!(sandbox.log().len(), 2);
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_refused_with_431() {
    let sandbox = start(quiet().max_request_head_bytes(8 * 1024)).await;
    let mut stream = tls(&sandbox).await;
    let head = format!(
        "GET /api/partner/v1/x?pad={} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    stream.write_all(head.as_bytes()).await.expect("sends");
    let (received, _) = read_until_closed(&mut stream)
        .await
        .expect("the sandbox closes the connection after a head over the limit");
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("HTTP/1.1 431"), "{received}");

    // A head under the limit is still served.
    let mut stream = tls(&sandbox).await;
    assert!(answer(&mut stream).await.starts_with("HTTP/1.1 401"));
}

/// Starts a TLS handshake in the background, to see whether the sandbox serves it.
fn connect_in_background(
    sandbox: &Sandbox,
) -> tokio::task::JoinHandle<std::io::Result<TlsStream<TcpStream>>> {
    let addr = sandbox.addr();
    let connector = TlsConnector::from(Arc::new(sandbox.rustls_client_config()));
    tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("127.0.0.1").expect("an IP address is a server name");
        connector.connect(name, tcp).await
    })
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_waits_until_one_closes() {
    // Long timeouts: only the client closing a connection frees a slot here.
    let sandbox = start(
        quiet()
            .max_connections(2)
            .header_read_timeout(Duration::from_secs(60)),
    )
    .await;
    let first = stalled(&sandbox, PARTIAL_HEAD).await;
    let _second = stalled(&sandbox, PARTIAL_HEAD).await;

    let mut third = connect_in_background(&sandbox);
    // Not accepted while both slots are held: no TLS answer.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut third)
            .await
            .is_err(),
        "a third connection was served past a cap of two"
    );

    drop(first);
    let mut third = tokio::time::timeout(BOUND, third)
        .await
        .expect("the waiting connection is served once a slot is free")
        .expect("the task ran")
        .expect("the TLS handshake succeeds");
    let answer = answer(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test]
async fn the_sandbox_recovers_when_the_stalled_connections_time_out() {
    let sandbox = start(quiet().max_connections(2).header_read_timeout(SHORT)).await;
    let mut stalled = [
        stalled(&sandbox, PARTIAL_HEAD).await,
        stalled(&sandbox, PARTIAL_HEAD).await,
    ];
    // Queued behind the two stalled connections...
    let third = connect_in_background(&sandbox);
    // ...which the sandbox closes after the timeout...
    for stream in &mut stalled {
        assert!(closed(stream).await, "a stalled connection stays open");
    }
    // ...and then serves the waiting one, and new ones.
    let mut third = tokio::time::timeout(BOUND, third)
        .await
        .expect("the waiting connection is served once the stalled ones are closed")
        .expect("the task ran")
        .expect("the TLS handshake succeeds");
    assert!(answer(&mut third).await.starts_with("HTTP/1.1 401"));
    drop(third);
    let mut fourth = tls(&sandbox).await;
    assert!(answer(&mut fourth).await.starts_with("HTTP/1.1 401"));
}

#[tokio::test]
async fn out_of_range_limits_are_refused_with_a_hint() {
    let cases = [
        (
            quiet().header_read_timeout(Duration::ZERO),
            "header_read_timeout",
        ),
        (
            quiet().tls_handshake_timeout(Duration::MAX),
            "tls_handshake_timeout",
        ),
        (quiet().max_connections(0), "max_connections"),
        (quiet().max_request_head_bytes(0), "max_request_head_bytes"),
        (
            quiet().max_request_head_bytes(usize::MAX),
            "max_request_head_bytes",
        ),
    ];
    for (builder, name) in cases {
        let error = builder.start().await.expect_err(name);
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{name}");
        let message = error.to_string();
        assert!(
            message.contains(name) && message.contains("such as"),
            "{message}"
        );
    }
    // The smallest values are fine (hyper's read buffer stays at its minimum).
    let sandbox = start(
        quiet()
            .max_connections(1)
            .max_request_head_bytes(1)
            .header_read_timeout(Duration::from_millis(1)),
    )
    .await;
    drop(sandbox);
}

#[tokio::test]
async fn a_long_unsigned_target_is_cut_in_the_log() {
    let sandbox = start(quiet()).await;
    let target = format!("/api/partner/v1/x?pad={}", "a".repeat(60_000));
    let mut stream = tls(&sandbox).await;
    for _ in 0..20 {
        let head = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("sends");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("answered in time")
            .expect("reads");
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    let log = sandbox.log();
    assert_eq!(log.len(), 20);
    let marker = format!("…[truncated, {} bytes]", target.len());
    for entry in &log {
        assert!(entry.target.len() <= LOG_TARGET_MAX_BYTES);
        assert!(entry.target.ends_with(&marker), "{}", entry.target);
        let kept = &entry.target[..entry.target.len() - marker.len()];
        assert!(kept.len() > LOG_TARGET_MAX_BYTES / 2 && target.starts_with(kept));
        // The line printed to stderr (when not quiet) is the entry's `Display`.
        let line = entry.to_string();
        assert!(line.len() <= LOG_TARGET_MAX_BYTES + 512, "{}", line.len());
        assert!(line.contains(&marker), "{line}");
    }
    let held: usize = log.iter().map(|e| e.target.len()).sum();
    assert!(held <= 20 * LOG_TARGET_MAX_BYTES, "{held}");
}

#[tokio::test]
async fn a_trickling_body_is_answered_408_and_the_connection_closed() {
    let sandbox = start(quiet().body_read_timeout(SHORT)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The public key, a fresh timestamp and any 64 hex digits: all an attacker needs to make
    // the verifier read the body.
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nrn-api-key: {key}\r\n\
         rn-access-timestamp: {now}\r\nrn-access-sign: {sign}\r\ncontent-length: 1000\r\n\r\n",
        path = rampnow_sandbox::QUOTE_PATH,
        key = rampnow_sandbox::SANDBOX_API_KEY,
        sign = "0".repeat(64),
    );
    let mut stream = stalled(&sandbox, head.as_bytes()).await;
    // One byte every 100 ms: it would take 100 s to send the body.
    let trickle = async {
        for _ in 0..1000 {
            if stream.write_all(b"x").await.is_err() || stream.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(SHORT * 3, trickle).await;
    let (received, _) = read_until_closed(&mut stream)
        .await
        .expect("the sandbox closes the connection");
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(received.contains(r#""code":"body_timeout""#), "{received}");
    let log = sandbox.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, http::StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn a_body_over_the_sandboxs_limit_is_refused_before_it_is_read() {
    let sandbox = start(quiet()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nrn-api-key: {key}\r\n\
         rn-access-timestamp: {now}\r\nrn-access-sign: {sign}\r\ncontent-length: {len}\r\n\r\n",
        path = rampnow_sandbox::QUOTE_PATH,
        key = rampnow_sandbox::SANDBOX_API_KEY,
        sign = "0".repeat(64),
        len = rampnow_sandbox::DEFAULT_MAX_BODY_SIZE + 1,
    );
    let mut stream = stalled(&sandbox, head.as_bytes()).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .expect("answered without the body")
        .expect("reads");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"body_too_large""#), "{answer}");
}
