//! A request target with a fragment (`GET /path#part HTTP/1.1`), sent as raw bytes over TLS on
//! 127.0.0.1: hyper accepts it and its URI drops the fragment, so the sandbox must refuse it
//! itself, before the verifier, and still follow the requests around it on the connection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use rampnow_auth::Signer;
use rampnow_sandbox::{Sandbox, QUOTE_PATH};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const BOUND: Duration = Duration::from_secs(10);

async fn tls(sandbox: &Sandbox) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(sandbox.addr()).await.expect("connects");
    let connector = TlsConnector::from(Arc::new(sandbox.rustls_client_config()));
    let name = ServerName::try_from("127.0.0.1").expect("an IP address is a server name");
    tokio::time::timeout(BOUND, connector.connect(name, tcp))
        .await
        .expect("the TLS handshake finishes in time")
        .expect("the TLS handshake succeeds")
}

/// A request head signed over `signed_target` (what the verifier sees once hyper has dropped
/// any fragment), sent with `sent_target` on the request line, and `framing` headers.
fn head(
    sandbox: &Sandbox,
    method: &Method,
    sent_target: &str,
    signed_target: &str,
    framing: &str,
    body: &[u8],
) -> String {
    let timestamp = common::now_secs();
    let signature = Signer::new(sandbox.credentials()).sign(timestamp, method, signed_target, body);
    format!(
        "{method} {sent_target} HTTP/1.1\r\nHost: 127.0.0.1\r\nrn-api-key: {}\r\n\
         rn-access-timestamp: {timestamp}\r\nrn-access-sign: {signature}\r\n{framing}\r\n",
        sandbox.credentials().api_key()
    )
}

/// Everything the sandbox sends until it closes the connection.
async fn read_to_close(stream: &mut TlsStream<TcpStream>) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(BOUND, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the sandbox did not close the connection: {}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

fn statuses(answers: &str) -> Vec<&str> {
    answers
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answers[at + 9..at + 12])
        .collect()
}

#[tokio::test]
async fn a_target_with_a_fragment_is_refused_before_verifying() {
    let sandbox = Sandbox::builder().quiet(true).start().await.unwrap();
    let target = format!("{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100");
    // Signed over the target without its fragment: the verifier alone would accept it.
    let request = head(
        &sandbox,
        &Method::GET,
        &format!("{target}#part"),
        &target,
        "",
        b"",
    );
    let mut stream = tls(&sandbox).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let body = &answer[answer.find("\r\n\r\n").expect("a head") + 4..];
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(json["error"], "invalid_target");
    let reason = json["reason"].as_str().unwrap();
    assert!(
        reason.contains("fragment") && reason.contains("must not be signed"),
        "{reason}"
    );
    // Refused before the verifier: not in the log, no signature remembered.
    assert!(sandbox.log().is_empty());
    assert_eq!(sandbox.remembered_signatures(), Some(0));

    // The same request without the fragment is served.
    let request = head(&sandbox, &Method::GET, &target, &target, "", b"");
    let mut stream = tls(&sandbox).await;
    stream
        .write_all(
            request
                .replace("Host:", "Connection: close\r\nHost:")
                .as_bytes(),
        )
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn requests_with_bodies_before_a_fragment_on_one_connection_are_followed() {
    let sandbox = Sandbox::builder()
        .quiet(true)
        .accept_replays()
        .start()
        .await
        .unwrap();
    let json = br#"{"srcCurrency": "EUR", "dstCurrency": "ETH", "srcAmount": "100.0"}"#;
    // A body that looks like a request line with a fragment: only framing tells them apart.
    let decoy = b"GET /api/partner/v1/x#frag HTTP/1.1\r\n\r\n";
    let mut pipelined = Vec::new();
    // 1. Content-Length body.
    pipelined.extend_from_slice(
        head(
            &sandbox,
            &Method::POST,
            QUOTE_PATH,
            QUOTE_PATH,
            &format!("Content-Length: {}\r\n", json.len()),
            json,
        )
        .as_bytes(),
    );
    pipelined.extend_from_slice(json);
    // 2. A chunked body holding the decoy, with an extension and a trailer.
    let mut chunked = Vec::new();
    chunked.extend_from_slice(format!("{:x};note=1\r\n", decoy.len()).as_bytes());
    chunked.extend_from_slice(decoy);
    chunked.extend_from_slice(b"\r\n0\r\nX-Trailer: GET /y#z HTTP/1.1\r\n\r\n");
    let path = "/api/partner/v1/ext/echo";
    pipelined.extend_from_slice(
        head(
            &sandbox,
            &Method::POST,
            path,
            path,
            "Transfer-Encoding: chunked\r\n",
            decoy,
        )
        .as_bytes(),
    );
    pipelined.extend_from_slice(&chunked);
    // 3. A Content-Length body holding the decoy.
    pipelined.extend_from_slice(
        head(
            &sandbox,
            &Method::POST,
            path,
            path,
            &format!("Content-Length: {}\r\n", decoy.len()),
            decoy,
        )
        .as_bytes(),
    );
    pipelined.extend_from_slice(decoy);
    // 4. A fragment: refused, and the connection closed.
    pipelined.extend_from_slice(head(&sandbox, &Method::GET, "/a#b", "/a", "", b"").as_bytes());
    // 5. Never read.
    pipelined.extend_from_slice(head(&sandbox, &Method::GET, "/c", "/c", "", b"").as_bytes());

    let mut stream = tls(&sandbox).await;
    // In small pieces, so requests straddle reads.
    for piece in pipelined.chunks(7) {
        stream.write_all(piece).await.unwrap();
    }
    stream.flush().await.unwrap();
    let answers = read_to_close(&mut stream).await;
    // The verifier refuses the chunked body for its trailer (400 body_error), after reading it
    // whole: the tracker must have skipped it too to see request 3 and the fragment of 4.
    assert_eq!(
        statuses(&answers),
        ["200", "400", "404", "400"],
        "{answers}"
    );
    assert!(answers.contains(r#""error":"body_error""#), "{answers}");
    assert!(answers.ends_with('}') && answers.contains(r#""error":"invalid_target""#));
    let log = sandbox.log();
    let verified: Vec<bool> = log.iter().map(|entry| entry.verified()).collect();
    assert_eq!(verified, [true, false, true], "{log:?}");
}
