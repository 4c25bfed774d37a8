//! What a diagnosis costs: the time to search the usual mistakes for a wrong signature that
//! none explains (the worst case: every candidate is tried), beside one HMAC (what verifying
//! costs). Run with `cargo run --release --example diagnose_cost`.

use std::time::Instant;

use http::Method;
use rampnow_auth::Signer;
use rampnow_sandbox::diagnose::{search, Received};
use rampnow_sandbox::{sandbox_credentials, QUOTE_PATH, SANDBOX_API_KEY};

fn main() {
    let credentials = sandbox_credentials();
    let target = format!("{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100&note=a%40b+c");
    let wrong = "5e".repeat(32);
    for (name, method, body) in [
        (
            "GET, no body (with the milliseconds search)",
            "GET",
            Vec::new(),
        ),
        (
            "POST, 1 KiB body (with the milliseconds search)",
            "POST",
            json(900),
        ),
        ("POST, 4 KiB body", "POST", json(4 * 1024)),
        (
            "POST, 64 KiB body (the largest diagnosed)",
            "POST",
            json(64 * 1024),
        ),
    ] {
        let received = Received {
            method,
            target: &target,
            host: Some("127.0.0.1:8443"),
            api_key: SANDBOX_API_KEY,
            timestamp: "1700000000",
            signature: &wrong,
            body: &body,
        };
        let rounds = if body.len() > 16 * 1024 { 20 } else { 200 };
        let start = Instant::now();
        let mut hashed = 0;
        for _ in 0..rounds {
            hashed = search(&received, &credentials, &[], usize::MAX).hashed_bytes;
        }
        let per = start.elapsed() / rounds;
        let signer = Signer::new(&credentials);
        let start = Instant::now();
        for _ in 0..rounds * 10 {
            std::hint::black_box(signer.sign(1_700_000_000, &Method::POST, &target, &body));
        }
        let verify = start.elapsed() / (rounds * 10);
        println!(
            "{name}: body {} B, diagnosis {per:?} ({} KiB hashed), one HMAC {verify:?}",
            body.len(),
            hashed / 1024
        );
    }
}

fn json(len: usize) -> Vec<u8> {
    let mut body =
        br#"{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":"100.0","note":""#.to_vec();
    while body.len() < len - 2 {
        body.extend_from_slice("café ".as_bytes());
    }
    body.truncate(len - 2);
    while std::str::from_utf8(&body).is_err() {
        body.pop();
        body.push(b'x');
    }
    body.extend_from_slice(b"\"}");
    body
}
