//! What a hostile client can pin on the path where the sandbox reads a body itself before the
//! verifier: a request with a known API key whose signature header is malformed but decodes to
//! 32 bytes (`0x` and 64 hex digits, or base64) and whose `Content-Length` is at most 64 KiB
//! and `max_body_size`. Raw requests over TLS on 127.0.0.1 that stall, trickle or announce too
//! much; every wait is bounded, so a regression fails instead of hanging.

mod common;

use std::time::{Duration, Instant};

use rampnow_sandbox::diagnose::Mistake;
use rampnow_sandbox::{Sandbox, SandboxBuilder, QUOTE_PATH, SANDBOX_API_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The sandbox's clock, fixed, and the timestamp every request carries.
const NOW: u64 = 1_700_000_000;

/// The body read timeout of the sandbox under test.
const BODY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a test waits for an answer: generous, so a loaded machine does not fail the test,
/// and bounded, so a regression does not hang it.
const BOUND: Duration = Duration::from_secs(10);

/// 64 KiB: the longest body the sandbox reads first.
const MAX_READ_FIRST: usize = rampnow_sandbox::diagnose::MAX_DIAGNOSED_BODY;

/// A signature header with `0x` before 64 hex digits: malformed, but it decodes.
fn hex_prefixed() -> String {
    format!("0x{}", "ab".repeat(32))
}

/// A signature header in base64 of 32 bytes (the same 32 bytes): malformed, but it decodes.
fn base64_of_32_bytes() -> String {
    "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=".to_owned()
}

fn builder() -> SandboxBuilder {
    Sandbox::builder()
        .with_clock(common::fixed_clock(NOW))
        .quiet(true)
}

async fn start(builder: SandboxBuilder) -> Sandbox {
    builder.start().await.expect("the sandbox starts")
}

/// The head of a POST with the sandbox's API key, `signature` and `content-length: length`.
fn head(signature: &str, length: usize) -> String {
    format!(
        "POST {QUOTE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nrn-api-key: {SANDBOX_API_KEY}\r\n\
         rn-access-timestamp: {NOW}\r\nrn-access-sign: {signature}\r\n\
         content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    )
}

/// A TLS connection that has sent `bytes` and nothing more, and the instant just before it
/// sent them (the sandbox cannot have started a timeout on them earlier).
async fn sent(sandbox: &Sandbox, bytes: &[u8]) -> (TlsStream<TcpStream>, Instant) {
    let mut stream = common::tls(sandbox, BOUND).await;
    let at = Instant::now();
    stream.write_all(bytes).await.expect("sends");
    stream.flush().await.expect("flushes");
    (stream, at)
}

/// Reads until the answer's head and JSON body are in (the sandbox's refusals are short and
/// sent whole), at most until `deadline`. Returns the status line and the JSON, or panics.
async fn answer(
    stream: &mut TlsStream<TcpStream>,
    deadline: Instant,
) -> (String, serde_json::Value) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(parsed) = parse(&received) {
            return parsed;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "no whole answer in time: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0) | Err(_)) => panic!(
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status line and JSON body of a whole answer in `received`, if it is all there.
fn parse(received: &[u8]) -> Option<(String, serde_json::Value)> {
    let text = std::str::from_utf8(received).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let json = serde_json::from_str(body).ok()?;
    Some((head.lines().next()?.to_owned(), json))
}

/// The words of a refusal whose body the sandbox did not get to diagnose.
const NOT_READ: &str = "not fully diagnosed: the body was not read";
/// Why, when it waited for the body in vain.
const NOT_ARRIVED: &str = "it did not arrive whole within the sandbox's body read timeout";
/// Why, when it did not wait for the body.
const TOO_LONG: &str = "diagnosed only with a Content-Length of at most 64 KiB";

/// Checks a refusal of a malformed signature that names `mistake` and says the body was not
/// read and `why`, and the log's one entry for it.
fn refused_unread(
    sandbox: &Sandbox,
    status: &str,
    json: &serde_json::Value,
    mistake: Mistake,
    why: &str,
) {
    assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{json}");
    assert_eq!(json["code"], "invalid_signature", "{json}");
    let reason = json["reason"].as_str().expect("a reason");
    assert!(reason.contains(NOT_READ), "{reason}");
    assert!(reason.contains(why), "{reason}");
    let named = match mistake {
        Mistake::SignatureHexPrefix => "it has 0x in front of its hex digits",
        Mistake::SignatureBase64 => "it is base64, not hex",
        other => panic!("not a signature encoding: {other:?}"),
    };
    assert!(reason.contains(named), "{reason}");
    let log = sandbox.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].status, http::StatusCode::UNAUTHORIZED);
    let diagnosis = log[0].diagnosis.as_ref().expect("a diagnosis");
    assert_eq!(diagnosis.mistakes(), [mistake]);
}

/// (a) A body of exactly 64 KiB announced and never sent: the sandbox waits for it
/// `body_read_timeout`, no longer, then refuses on the headers and closes the connection.
#[tokio::test]
async fn a_64_kib_body_never_sent_is_refused_after_the_body_read_timeout() {
    for (signature, mistake) in [
        (hex_prefixed(), Mistake::SignatureHexPrefix),
        (base64_of_32_bytes(), Mistake::SignatureBase64),
    ] {
        let sandbox = start(builder().body_read_timeout(BODY_TIMEOUT)).await;
        let (mut stream, at) = sent(&sandbox, head(&signature, MAX_READ_FIRST).as_bytes()).await;
        let (status, json) = answer(&mut stream, at + BOUND).await;
        let waited = at.elapsed();
        println!("{mistake:?}: answered after {waited:?}: {status}");
        assert!(waited >= BODY_TIMEOUT, "answered after {waited:?}");
        refused_unread(&sandbox, &status, &json, mistake, NOT_ARRIVED);
        assert!(
            common::read_until_closed(&mut stream, BOUND)
                .await
                .is_some(),
            "the connection stays open with 64 KiB unread"
        );
    }
}

/// (b) Over 64 KiB, or over `max_body_size`: the sandbox does not read the body first, and
/// the verifier refuses on the headers without waiting for it, though `body_read_timeout` is a
/// minute and only the head is sent.
#[tokio::test]
async fn a_body_over_64_kib_or_max_body_size_is_refused_without_waiting_for_it() {
    const MAX_BODY: usize = 1000;
    for length in [MAX_READ_FIRST + 1, 64 * 1024 * 1024, MAX_BODY + 1] {
        let sandbox = start(
            builder()
                .body_read_timeout(Duration::from_secs(60))
                .max_body_size(MAX_BODY),
        )
        .await;
        let (mut stream, at) = sent(&sandbox, head(&hex_prefixed(), length).as_bytes()).await;
        let (status, json) = answer(&mut stream, at + BOUND).await;
        println!(
            "content-length {length}: answered after {:?}: {status} {json}",
            at.elapsed()
        );
        refused_unread(
            &sandbox,
            &status,
            &json,
            Mistake::SignatureHexPrefix,
            TOO_LONG,
        );
        assert!(
            common::read_until_closed(&mut stream, BOUND)
                .await
                .is_some(),
            "the connection stays open"
        );
    }
}

/// (c) A body trickled one byte every 100 ms: the sandbox stops reading it at
/// `body_read_timeout` (the timeout bounds the whole read, not each byte), refuses on the
/// headers, and closes the connection; the rest of the body, a request in disguise, is never
/// answered.
#[tokio::test]
async fn a_trickled_body_is_cut_at_the_body_read_timeout() {
    let sandbox = start(builder().body_read_timeout(BODY_TIMEOUT)).await;
    let smuggled = format!("GET {QUOTE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut body = vec![b' '; 100];
    body.extend_from_slice(smuggled.as_bytes());
    let (stream, at) = sent(&sandbox, head(&hex_prefixed(), body.len()).as_bytes()).await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let trickle = tokio::spawn(async move {
        let mut written = 0;
        for byte in body {
            if writer.write_all(&[byte]).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            written += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        written
    });
    let (received, _) = common::read_until_closed(&mut reader, BOUND)
        .await
        .expect("the sandbox closes the connection");
    let waited = at.elapsed();
    let written = tokio::time::timeout(BOUND, trickle)
        .await
        .expect("the writes stop")
        .expect("the trickle does not panic");
    let received = String::from_utf8_lossy(&received);
    println!("closed after {waited:?}, {written} body bytes written: {received}");
    assert!(waited >= BODY_TIMEOUT, "closed after {waited:?}");
    let (status, json) = parse(received.as_bytes()).expect("one whole answer");
    assert_eq!(received.matches("HTTP/1.1").count(), 1, "{received}");
    refused_unread(
        &sandbox,
        &status,
        &json,
        Mistake::SignatureHexPrefix,
        NOT_ARRIVED,
    );
}
