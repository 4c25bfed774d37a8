//! The sandbox names the mistake behind a refused signature: each test makes one mistake
//! against a sandbox over TLS, as a client would, and checks the reason sent and the log.

mod common;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use rampnow_auth::{Credentials, SignedBody, Signer};
use rampnow_sandbox::diagnose::Mistake;
use rampnow_sandbox::{Sandbox, QUOTE_PATH, SANDBOX_API_KEY};
use serde_json::Value;

/// The sandbox's clock, fixed, and the timestamp every request carries.
const NOW: u64 = 1_700_000_000;

const BODY: &str =
    r#"{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":"100.0","note":"café 😀"}"#;

async fn sandbox() -> Sandbox {
    Sandbox::builder()
        .with_clock(common::fixed_clock(NOW))
        .also_accept(Credentials::new("ak_sandbox_other", "pk_sandbox_other_secret").unwrap())
        .quiet(true)
        .start()
        .await
        .expect("the sandbox starts")
}

/// What a client signs: its own idea of each part.
struct Signed {
    credentials: Credentials,
    timestamp: u64,
    method: String,
    target: String,
    body: Vec<u8>,
}

impl Signed {
    fn signature(&self) -> String {
        Signer::new(&self.credentials)
            .sign(
                self.timestamp,
                &Method::from_bytes(self.method.as_bytes()).unwrap(),
                &self.target,
                &self.body,
            )
            .to_string()
    }
}

/// Sends `method target body` with the timestamp header `timestamp` and the signature header
/// `signature`; returns the status, the JSON answer, and the log's entry for it.
async fn send(
    sandbox: &Sandbox,
    method: Method,
    target: &str,
    body: &[u8],
    timestamp: &str,
    signature: &str,
) -> (StatusCode, Value, rampnow_sandbox::LogEntry) {
    let request = Request::builder()
        .method(method)
        .uri(format!("{}{target}", sandbox.url()))
        .header("RN-API-KEY", SANDBOX_API_KEY)
        .header("RN-ACCESS-TIMESTAMP", timestamp)
        .header("RN-ACCESS-SIGN", signature)
        .body(SignedBody::from(body.to_vec()))
        .unwrap();
    let response = common::sandbox_client(sandbox)
        .request(request)
        .await
        .expect("request sent");
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
    let entry = sandbox.log().pop().expect("logged");
    (status, json, entry)
}

fn client(method: &str, target: &str, body: &[u8]) -> Signed {
    Signed {
        credentials: rampnow_sandbox::sandbox_credentials(),
        timestamp: NOW,
        method: method.to_owned(),
        target: target.to_owned(),
        body: body.to_vec(),
    }
}

/// Makes the mistake: sends `sent` signed as `signed`, and checks the refusal names `codes`
/// and says `phrase`. Returns the reason.
async fn expect(
    sent: (Method, &str, &[u8]),
    signed: Signed,
    codes: &[Mistake],
    phrase: &str,
) -> String {
    let sandbox = sandbox().await;
    let (status, json, entry) = send(
        &sandbox,
        sent.0,
        sent.1,
        sent.2,
        &NOW.to_string(),
        &signed.signature(),
    )
    .await;
    check(status, &json, &entry, "signature_mismatch", codes, phrase)
}

fn check(
    status: StatusCode,
    json: &Value,
    entry: &rampnow_sandbox::LogEntry,
    error: &str,
    codes: &[Mistake],
    phrase: &str,
) -> String {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert_eq!(json["error"], error, "{json}");
    let reason = json["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains(phrase), "{phrase:?} not in {reason:?}");
    let diagnosis = entry
        .diagnosis
        .as_ref()
        .unwrap_or_else(|| panic!("no diagnosis: {reason}"));
    assert_eq!(diagnosis.mistakes(), codes, "{reason}");
    assert_eq!(entry.rejection.as_ref().unwrap().code(), error);
    assert!(entry.to_string().contains(&diagnosis.code()), "{entry}");
    println!("{}: {reason}", diagnosis.code());
    reason
}

/// Python's `json.dumps(text)` (ensure_ascii=True).
fn python_dumps(text: &str) -> Vec<u8> {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            ' '..='~' => out.push(c),
            c => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out.into_bytes()
}

fn post() -> (Method, &'static str, &'static [u8]) {
    (Method::POST, QUOTE_PATH, BODY.as_bytes())
}

#[tokio::test]
async fn body_double_encoded_as_python_does() {
    let reason = expect(
        post(),
        client("POST", QUOTE_PATH, &python_dumps(BODY)),
        &[Mistake::BodyDoubleEncoded],
        "it matches the body JSON-encoded a second time (json.dumps on a string that is already JSON); sign the bytes you send",
    )
    .await;
    assert!(reason.starts_with("the signature does not match the request: "));
}

#[tokio::test]
async fn body_double_encoded_keeping_unicode() {
    expect(
        post(),
        client(
            "POST",
            QUOTE_PATH,
            serde_json::to_string(BODY).unwrap().as_bytes(),
        ),
        &[Mistake::BodyDoubleEncodedUnicode],
        "ensure_ascii=False",
    )
    .await;
}

#[tokio::test]
async fn body_sent_double_encoded() {
    let sent = serde_json::to_string(BODY).unwrap();
    expect(
        (Method::POST, QUOTE_PATH, sent.as_bytes()),
        client("POST", QUOTE_PATH, BODY.as_bytes()),
        &[Mistake::BodySentDoubleEncoded],
        "requests.post(url, json=text)",
    )
    .await;
}

#[tokio::test]
async fn body_left_out() {
    expect(
        post(),
        client("POST", QUOTE_PATH, b""),
        &[Mistake::BodyLeftOut],
        "with the body left out",
    )
    .await;
}

#[tokio::test]
async fn empty_body_signed_as_json() {
    expect(
        (Method::GET, QUOTE_PATH, b""),
        client("GET", QUOTE_PATH, b"{}"),
        &[Mistake::EmptyBodySignedAsJson],
        "with no body, sign nothing",
    )
    .await;
}

#[tokio::test]
async fn body_signed_with_a_trailing_newline() {
    for newline in ["\n", "\r\n"] {
        expect(
            post(),
            client("POST", QUOTE_PATH, format!("{BODY}{newline}").as_bytes()),
            &[Mistake::BodyTrailingNewline],
            "trailing newline that was not sent",
        )
        .await;
    }
}

#[tokio::test]
async fn body_sent_with_a_newline_not_signed() {
    let sent = format!("{BODY}\n");
    expect(
        (Method::POST, QUOTE_PATH, sent.as_bytes()),
        client("POST", QUOTE_PATH, BODY.as_bytes()),
        &[Mistake::BodyNewlineNotSigned],
        "without the trailing newline it was sent with",
    )
    .await;
}

#[tokio::test]
async fn body_signed_with_other_white_space() {
    let spaced = BODY.replace("\":\"", "\": \"").replace("\",\"", "\", \"");
    expect(
        post(),
        client("POST", QUOTE_PATH, spaced.as_bytes()),
        &[Mistake::BodyWhitespace],
        "other JSON white space",
    )
    .await;
}

#[tokio::test]
async fn another_key_order_is_not_diagnosed() {
    let reordered =
        r#"{"dstCurrency":"ETH","srcCurrency":"EUR","srcAmount":"100.0","note":"café 😀"}"#;
    let sandbox = sandbox().await;
    let signed = client("POST", QUOTE_PATH, reordered.as_bytes());
    let (status, json, entry) = send(
        &sandbox,
        Method::POST,
        QUOTE_PATH,
        BODY.as_bytes(),
        &NOW.to_string(),
        &signed.signature(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["reason"], entry.rejection.unwrap().reason());
    assert!(entry.diagnosis.is_none());
}

fn quote_query(rest: &str) -> String {
    format!("{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100{rest}")
}

#[tokio::test]
async fn query_left_out() {
    let target = quote_query("");
    expect(
        (Method::GET, &target, b""),
        client("GET", QUOTE_PATH, b""),
        &[Mistake::QueryLeftOut],
        "the path without its query string",
    )
    .await;
}

#[tokio::test]
async fn query_signed_decoded_sent_encoded() {
    let target = quote_query("&email=a%40b.com&note=a+b");
    for signed in [
        quote_query("&email=a@b.com&note=a+b"),
        quote_query("&email=a@b.com&note=a b"),
    ] {
        expect(
            (Method::GET, &target, b""),
            client("GET", &signed, b""),
            &[Mistake::QuerySignedDecoded],
            "percent-decoded while it was sent encoded",
        )
        .await;
    }
}

#[tokio::test]
async fn query_signed_encoded_sent_raw() {
    let target = quote_query("&email=a@b.com&at=12:30");
    let signed = quote_query("&email=a%40b.com&at=12%3A30");
    expect(
        (Method::GET, &target, b""),
        client("GET", &signed, b""),
        &[Mistake::QuerySignedEncoded],
        "percent-encoded while it was sent with those characters raw",
    )
    .await;
}

#[tokio::test]
async fn query_space_plus_vs_percent_20() {
    let target = quote_query("&note=a+b");
    expect(
        (Method::GET, &target, b""),
        client("GET", &quote_query("&note=a%20b"), b""),
        &[Mistake::QuerySpaceEncoding],
        "+ vs %20",
    )
    .await;
}

#[tokio::test]
async fn target_signed_with_scheme_and_host_or_host() {
    let sandbox = sandbox().await;
    let target = quote_query("");
    let host = sandbox.addr().to_string();
    for (signed, code, phrase) in [
        (
            format!("https://{host}{target}"),
            Mistake::TargetWithOrigin,
            "the URL with the scheme and host in front of the path",
        ),
        (
            format!("https://127.0.0.1{target}"),
            Mistake::TargetWithOrigin,
            "the scheme and host",
        ),
        (
            format!("{host}{target}"),
            Mistake::TargetWithHost,
            "the host in front of the path",
        ),
    ] {
        let signature = client("GET", &signed, b"").signature();
        let (status, json, entry) = send(
            &sandbox,
            Method::GET,
            &target,
            b"",
            &NOW.to_string(),
            &signature,
        )
        .await;
        check(status, &json, &entry, "signature_mismatch", &[code], phrase);
    }
}

#[tokio::test]
async fn method_in_lower_case_alone_and_with_the_query_left_out() {
    expect(
        post(),
        client("post", QUOTE_PATH, BODY.as_bytes()),
        &[Mistake::MethodLowercase],
        "the method in lower case",
    )
    .await;
    let target = quote_query("");
    expect(
        (Method::GET, &target, b""),
        client("get", QUOTE_PATH, b""),
        &[Mistake::MethodLowercase, Mistake::QueryLeftOut],
        "it matches the method in lower case and the path without its query string; sign the method in upper case (GET, POST); sign the path and query as sent",
    )
    .await;
}

#[tokio::test]
async fn timestamp_header_in_milliseconds_is_stale_and_says_so() {
    let sandbox = sandbox().await;
    let mut signed = client("POST", QUOTE_PATH, BODY.as_bytes());
    signed.timestamp = NOW * 1000 + 123;
    let (status, json, entry) = send(
        &sandbox,
        Method::POST,
        QUOTE_PATH,
        BODY.as_bytes(),
        &signed.timestamp.to_string(),
        &signed.signature(),
    )
    .await;
    check(
        status,
        &json,
        &entry,
        "stale_timestamp",
        &[Mistake::TimestampMilliseconds],
        "the timestamp looks like milliseconds",
    );
}

#[tokio::test]
async fn timestamp_signed_in_milliseconds() {
    let mut signed = client("POST", QUOTE_PATH, BODY.as_bytes());
    signed.timestamp = NOW * 1000 + 987;
    expect(
        post(),
        signed,
        &[Mistake::SignedMilliseconds],
        "the timestamp in milliseconds while the header holds seconds",
    )
    .await;
}

#[tokio::test]
async fn signed_with_another_keys_secret() {
    let mut signed = client("POST", QUOTE_PATH, BODY.as_bytes());
    signed.credentials = Credentials::new("ak_sandbox_other", "pk_sandbox_other_secret").unwrap();
    let reason = expect(
        post(),
        signed,
        &[Mistake::OtherKeySecret],
        "the secret of another API key",
    )
    .await;
    assert!(reason.contains("ak_sandbox_other"), "{reason}");
    assert!(!reason.contains("pk_sandbox_other_secret"), "{reason}");
}

#[tokio::test]
async fn api_key_and_secret_swapped() {
    let mut signed = client("POST", QUOTE_PATH, BODY.as_bytes());
    signed.credentials = Credentials::new("swapped", SANDBOX_API_KEY).unwrap();
    expect(
        post(),
        signed,
        &[Mistake::KeyAndSecretSwapped],
        "key and secret swapped",
    )
    .await;
}

/// The signature header in another encoding is refused before the body is read
/// (`invalid_signature`); the sandbox reads a short body to check it, and says so.
#[tokio::test]
async fn signature_in_base64_or_with_0x() {
    let sandbox = sandbox().await;
    let signature = client("POST", QUOTE_PATH, BODY.as_bytes()).signature();
    let bytes = hex_decode(&signature);
    for (header, code) in [
        (base64(&bytes), Mistake::SignatureBase64),
        (
            format!("0X{}", signature.to_ascii_uppercase()),
            Mistake::SignatureHexPrefix,
        ),
        (format!("0x{signature}"), Mistake::SignatureHexPrefix),
    ] {
        let (status, json, entry) = send(
            &sandbox,
            Method::POST,
            QUOTE_PATH,
            BODY.as_bytes(),
            &NOW.to_string(),
            &header,
        )
        .await;
        let reason = check(
            status,
            &json,
            &entry,
            "invalid_signature",
            &[code],
            "decoded, it matches the request",
        );
        assert!(!reason.contains(&signature), "{reason}");
    }
    // And with a mistake behind it.
    let left_out = client("POST", QUOTE_PATH, b"").signature();
    let (status, json, entry) = send(
        &sandbox,
        Method::POST,
        QUOTE_PATH,
        BODY.as_bytes(),
        &NOW.to_string(),
        &base64(&hex_decode(&left_out)),
    )
    .await;
    check(
        status,
        &json,
        &entry,
        "invalid_signature",
        &[Mistake::SignatureBase64, Mistake::BodyLeftOut],
        "the signature header is not 64 hex digits: it is base64, not hex; send the 32 bytes as 64 hex digits; decoded, it matches the request with the body left out; sign the body bytes you send, after the target",
    );
}

#[tokio::test]
async fn upper_case_hex_is_valid() {
    let sandbox = sandbox().await;
    let body = br#"{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":"100.0"}"#;
    let signature = client("POST", QUOTE_PATH, body)
        .signature()
        .to_ascii_uppercase();
    let (status, json, entry) = send(
        &sandbox,
        Method::POST,
        QUOTE_PATH,
        body,
        &NOW.to_string(),
        &signature,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert!(entry.verified() && entry.diagnosis.is_none());
}

#[tokio::test]
async fn a_random_wrong_signature_gets_the_plain_reason() {
    let sandbox = sandbox().await;
    let target = quote_query("&note=a+b%40");
    for (method, body) in [(Method::GET, &b""[..]), (Method::POST, BODY.as_bytes())] {
        let (status, json, entry) = send(
            &sandbox,
            method,
            &target,
            body,
            &NOW.to_string(),
            &"5e".repeat(32),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json["error"], "signature_mismatch");
        assert_eq!(
            json["reason"],
            "the signature does not match the request; sign timestamp + METHOD + path and \
             query exactly as sent + the body bytes exactly as sent, with the API secret"
        );
        assert!(entry.diagnosis.is_none());
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_not_diagnosed_and_the_reason_says_so() {
    let sandbox = sandbox().await;
    let body = vec![b'x'; 64 * 1024 + 1];
    let signature = client("POST", QUOTE_PATH, b"").signature(); // body left out
    let (status, json, entry) = send(
        &sandbox,
        Method::POST,
        QUOTE_PATH,
        &body,
        &NOW.to_string(),
        &signature,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let reason = json["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the signature does not match the request;")
            && reason.contains("not diagnosed")
            && reason.contains("64 KiB"),
        "{reason}"
    );
    assert!(entry.diagnosis.is_none());
    // One byte less is diagnosed.
    let body = vec![b'x'; 64 * 1024];
    let (_, json, entry) = send(
        &sandbox,
        Method::POST,
        QUOTE_PATH,
        &body,
        &NOW.to_string(),
        &signature,
    )
    .await;
    assert_eq!(
        entry.diagnosis.map(|d| d.code()).as_deref(),
        Some("body_left_out"),
        "{json}"
    );
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

#[tokio::test]
async fn the_x_rampnow_header_set_is_diagnosed_too() {
    let sandbox = sandbox().await;
    let signature = client("POST", QUOTE_PATH, b"").signature();
    let request = Request::post(format!("{}{QUOTE_PATH}", sandbox.url()))
        .header("X-RAMPNOW-API-KEY", SANDBOX_API_KEY)
        .header("X-RAMPNOW-TIMESTAMP", NOW.to_string())
        .header("X-RAMPNOW-SIGN", signature)
        .body(SignedBody::from(BODY))
        .unwrap();
    let response = common::sandbox_client(&sandbox)
        .request(request)
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .contains("with the body left out"),
        "{json}"
    );
}

#[tokio::test]
async fn an_unknown_key_is_refused_without_a_diagnosis() {
    let sandbox = sandbox().await;
    let request = Request::post(format!("{}{QUOTE_PATH}", sandbox.url()))
        .header("RN-API-KEY", "ak_unknown")
        .header("RN-ACCESS-TIMESTAMP", NOW.to_string())
        .header("RN-ACCESS-SIGN", base64(&[7; 32]))
        .body(SignedBody::from(BODY))
        .unwrap();
    let response = common::sandbox_client(&sandbox)
        .request(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let entry = sandbox.log().pop().unwrap();
    assert_eq!(entry.rejection.unwrap().code(), "unknown_api_key");
    assert!(entry.diagnosis.is_none());
}
