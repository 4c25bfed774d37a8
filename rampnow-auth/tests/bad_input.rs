//! Bad input, table-driven: each case names its input and the outcome it must get — an
//! accepted request, a 4xx with its reason, or a layer error of a given kind. No case may
//! panic, and on every refusal the inner service is never called.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use common::fixed_clock;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use rampnow_auth::verify::{RampnowVerifyLayer, Rejection, RejectionKind};
use rampnow_auth::{
    Credentials, Error, ErrorKind, HeaderNames, RampnowAuthLayer, SignedBody, Signer,
};
use tower::{service_fn, Layer, ServiceExt};

const NOW: u64 = 1_764_288_000;
const TARGET: &str = "/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD";

fn credentials() -> Credentials {
    Credentials::new(common::API_KEY, common::SECRET).unwrap()
}

/// How a request that was correctly signed is spoiled before it reaches the verifier.
type Spoil = fn(&mut HeaderMap, &mut Vec<u8>);

struct VerifierCase {
    name: &'static str,
    body: &'static [u8],
    spoil: Spoil,
    /// `None`: accepted.
    expect: Option<RejectionKind>,
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &[u8]) {
    headers.insert(name, HeaderValue::from_bytes(value).unwrap());
}

/// Re-signs with the timestamp header as it now stands (to test timestamp *format* alone).
fn resign(headers: &mut HeaderMap, body: &[u8]) {
    let hex = common::reference_signature(
        common::SECRET.as_bytes(),
        headers["rn-access-timestamp"].as_bytes(),
        "POST",
        TARGET,
        body,
    );
    set(headers, "rn-access-sign", hex.as_bytes());
}

fn verifier_cases() -> Vec<VerifierCase> {
    use RejectionKind::*;
    let case = |name, spoil: Spoil, expect| VerifierCase {
        name,
        body: b"{\"srcAmount\":\"100\"}",
        spoil,
        expect,
    };
    vec![
        case("untouched", |_, _| {}, None),
        case(
            "api key missing",
            |h, _| {
                h.remove("rn-api-key");
            },
            Some(MissingHeader),
        ),
        case(
            "timestamp missing",
            |h, _| {
                h.remove("rn-access-timestamp");
            },
            Some(MissingHeader),
        ),
        case(
            "signature missing",
            |h, _| {
                h.remove("rn-access-sign");
            },
            Some(MissingHeader),
        ),
        case("all missing", |h, _| h.clear(), Some(MissingHeader)),
        case(
            "api key empty",
            |h, _| set(h, "rn-api-key", b""),
            Some(UnknownApiKey),
        ),
        case(
            "timestamp empty",
            |h, _| set(h, "rn-access-timestamp", b""),
            Some(InvalidTimestamp),
        ),
        case(
            "signature empty",
            |h, _| set(h, "rn-access-sign", b""),
            Some(InvalidSignature),
        ),
        case(
            "api key twice",
            |h, _| {
                h.append("rn-api-key", HeaderValue::from_static(common::API_KEY));
            },
            Some(DuplicateHeader),
        ),
        case(
            "timestamp twice",
            |h, _| {
                let v = h["rn-access-timestamp"].clone();
                h.append("rn-access-timestamp", v);
            },
            Some(DuplicateHeader),
        ),
        case(
            "signature twice",
            |h, _| {
                let v = h["rn-access-sign"].clone();
                h.append("rn-access-sign", v);
            },
            Some(DuplicateHeader),
        ),
        case(
            "api key 64 KiB",
            |h, _| set(h, "rn-api-key", &[b'k'; 65_536]),
            Some(UnknownApiKey),
        ),
        case(
            "timestamp 64 KiB",
            |h, _| set(h, "rn-access-timestamp", &[b'1'; 65_536]),
            Some(InvalidTimestamp),
        ),
        case(
            "signature 64 KiB",
            |h, _| set(h, "rn-access-sign", &[b'a'; 65_536]),
            Some(InvalidSignature),
        ),
        case(
            "unknown api key",
            |h, _| set(h, "rn-api-key", b"ak_live_unknown"),
            Some(UnknownApiKey),
        ),
        case(
            "api key not UTF-8",
            |h, _| set(h, "rn-api-key", b"ak_\xff\xfe"),
            Some(UnknownApiKey),
        ),
        case(
            "timestamp with +",
            |h, b| {
                set(h, "rn-access-timestamp", format!("+{NOW}").as_bytes());
                resign(h, b)
            },
            Some(InvalidTimestamp),
        ),
        case(
            "timestamp with -",
            |h, b| {
                set(h, "rn-access-timestamp", format!("-{NOW}").as_bytes());
                resign(h, b)
            },
            Some(InvalidTimestamp),
        ),
        case(
            "timestamp with inner space",
            |h, b| {
                set(h, "rn-access-timestamp", b"1764 288000");
                resign(h, b)
            },
            Some(InvalidTimestamp),
        ),
        case(
            "timestamp with tab",
            |h, b| {
                set(h, "rn-access-timestamp", format!("{NOW}\t1").as_bytes());
                resign(h, b)
            },
            Some(InvalidTimestamp),
        ),
        case(
            "timestamp with decimals",
            |h, b| {
                set(h, "rn-access-timestamp", format!("{NOW}.0").as_bytes());
                resign(h, b)
            },
            Some(InvalidTimestamp),
        ),
        case(
            "timestamp in hex",
            |h, b| {
                set(h, "rn-access-timestamp", b"0x6928a800");
                resign(h, b)
            },
            Some(InvalidTimestamp),
        ),
        case(
            "timestamp with leading zeros, signed so",
            |h, b| {
                set(h, "rn-access-timestamp", format!("00{NOW}").as_bytes());
                resign(h, b)
            },
            None,
        ),
        case(
            "timestamp of 20 digits (past u64)",
            |h, b| {
                set(h, "rn-access-timestamp", b"99999999999999999999");
                resign(h, b)
            },
            Some(StaleTimestamp),
        ),
        case(
            "timestamp of 21 digits",
            |h, b| {
                set(
                    h,
                    "rn-access-timestamp",
                    format!("00000000000{NOW}").as_bytes(),
                );
                resign(h, b)
            },
            Some(InvalidTimestamp),
        ),
        case(
            "timestamp in Arabic-Indic digits",
            |h, b| {
                set(h, "rn-access-timestamp", "١٧٦٤٢٨٨٠٠٠".as_bytes());
                resign(h, b)
            },
            Some(InvalidTimestamp),
        ),
        case(
            "timestamp in full-width digits",
            |h, b| {
                set(h, "rn-access-timestamp", "１７６４２８８０００".as_bytes());
                resign(h, b)
            },
            Some(InvalidTimestamp),
        ),
        case(
            "timestamp not UTF-8",
            |h, b| {
                set(h, "rn-access-timestamp", b"17642\xff8000");
                resign(h, b)
            },
            Some(InvalidTimestamp),
        ),
        case(
            "timestamp 61 s old",
            |h, b| {
                set(h, "rn-access-timestamp", (NOW - 61).to_string().as_bytes());
                resign(h, b)
            },
            Some(StaleTimestamp),
        ),
        case(
            "timestamp 61 s ahead",
            |h, b| {
                set(h, "rn-access-timestamp", (NOW + 61).to_string().as_bytes());
                resign(h, b)
            },
            Some(StaleTimestamp),
        ),
        case(
            "timestamp zero",
            |h, b| {
                set(h, "rn-access-timestamp", b"0");
                resign(h, b)
            },
            Some(StaleTimestamp),
        ),
        case(
            "signature 63 digits (odd)",
            |h, _| {
                let s = h["rn-access-sign"].as_bytes()[1..].to_vec();
                set(h, "rn-access-sign", &s)
            },
            Some(InvalidSignature),
        ),
        case(
            "signature 62 digits",
            |h, _| {
                let s = h["rn-access-sign"].as_bytes()[2..].to_vec();
                set(h, "rn-access-sign", &s)
            },
            Some(InvalidSignature),
        ),
        case(
            "signature 66 digits",
            |h, _| {
                let mut s = h["rn-access-sign"].as_bytes().to_vec();
                s.extend_from_slice(b"00");
                set(h, "rn-access-sign", &s)
            },
            Some(InvalidSignature),
        ),
        case(
            "signature with non-hex",
            |h, _| {
                let mut s = h["rn-access-sign"].as_bytes().to_vec();
                s[10] = b'g';
                set(h, "rn-access-sign", &s)
            },
            Some(InvalidSignature),
        ),
        case(
            "signature with a space",
            |h, _| {
                let mut s = h["rn-access-sign"].as_bytes().to_vec();
                s[10] = b' ';
                set(h, "rn-access-sign", &s)
            },
            Some(InvalidSignature),
        ),
        case(
            "signature in base64",
            |h, _| {
                set(
                    h,
                    "rn-access-sign",
                    b"VGhpcyBpcyBub3QgaGV4IGF0IGFsbCwgaXQgaXMgYmFzZTY0IGVuY29kZWQhIQ==",
                )
            },
            Some(InvalidSignature),
        ),
        case(
            "signature not UTF-8",
            |h, _| {
                let mut s = h["rn-access-sign"].as_bytes().to_vec();
                s[0] = 0xff;
                set(h, "rn-access-sign", &s)
            },
            Some(InvalidSignature),
        ),
        case(
            "signature upper case",
            |h, _| {
                let s = h["rn-access-sign"].as_bytes().to_ascii_uppercase();
                set(h, "rn-access-sign", &s)
            },
            None,
        ),
        case(
            "signature of other bytes",
            |h, _| set(h, "rn-access-sign", &[b'0'; 64]),
            Some(SignatureMismatch),
        ),
        case(
            "body changed after signing",
            |_, b| b.push(b' '),
            Some(SignatureMismatch),
        ),
        case(
            "body of invalid UTF-8, signed so",
            |h, b| {
                *b = vec![0xff, 0xfe, 0x00, 0xc3];
                resign(h, b)
            },
            None,
        ),
        case(
            "body over the limit",
            |h, b| {
                *b = vec![b'x'; 1025];
                resign(h, b)
            },
            Some(BodyTooLarge),
        ),
        case(
            "headers from both sets",
            |h, _| {
                h.insert("x-rampnow-api-key", HeaderValue::from_static("x"));
            },
            None,
        ),
    ]
}

#[tokio::test]
async fn verifier_table() {
    let cases = verifier_cases();
    assert!(cases.len() >= 30);
    for case in cases {
        let mut body = case.body.to_vec();
        let signature = Signer::new(&credentials()).sign(NOW, &Method::POST, TARGET, &body);
        let mut headers = HeaderMap::new();
        headers.insert("rn-api-key", HeaderValue::from_static(common::API_KEY));
        headers.insert("rn-access-timestamp", HeaderValue::from(NOW));
        headers.insert("rn-access-sign", signature.to_string().parse().unwrap());
        (case.spoil)(&mut headers, &mut body);

        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app = service_fn(move |_req: Request<SignedBody>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
        });
        let mut request = Request::post(TARGET).body(SignedBody::from(body)).unwrap();
        *request.headers_mut() = headers;
        let response = RampnowVerifyLayer::new(credentials())
            .with_clock(fixed_clock(NOW))
            .max_body_size(1024)
            .layer(app)
            .oneshot(request)
            .await
            .unwrap();
        let rejection = response.extensions().get::<Rejection>().cloned();
        match case.expect {
            None => {
                assert_eq!(
                    response.status(),
                    StatusCode::OK,
                    "{}: {rejection:?}",
                    case.name
                );
                assert_eq!(calls.load(Ordering::SeqCst), 1, "{}", case.name);
            }
            Some(kind) => {
                let rejection = rejection.unwrap_or_else(|| panic!("{}: accepted", case.name));
                assert_eq!(
                    rejection.kind(),
                    kind,
                    "{}: {}",
                    case.name,
                    rejection.reason()
                );
                assert_eq!(response.status(), kind.status(), "{}", case.name);
                assert!(response.status().is_client_error(), "{}", case.name);
                assert!(
                    rejection.reason().len() > 20,
                    "{}: no reason given",
                    case.name
                );
                assert_eq!(
                    calls.load(Ordering::SeqCst),
                    0,
                    "{}: inner service called",
                    case.name
                );
            }
        }
    }
}

struct LayerCase {
    name: &'static str,
    layer: fn() -> RampnowAuthLayer,
    request: fn() -> Request<SignedBody>,
    /// `None`: signed and sent.
    expect: Option<ErrorKind>,
}

fn layer() -> RampnowAuthLayer {
    RampnowAuthLayer::new(credentials()).with_clock(fixed_clock(NOW))
}

fn req(method: &str, uri: &str) -> Request<SignedBody> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(SignedBody::from("{}"))
        .unwrap()
}

fn layer_cases() -> Vec<LayerCase> {
    use ErrorKind::*;
    let case = |name, layer, request, expect| LayerCase {
        name,
        layer,
        request,
        expect,
    };
    vec![
        case(
            "https absolute",
            layer,
            || req("POST", "https://api.rampnow.io/api/x?b=2&a=1"),
            None,
        ),
        case(
            "origin form",
            layer,
            || req("GET", "/api/x"),
            Some(RelativeUri),
        ),
        case(
            "origin form with allow_http",
            || layer().allow_http(true),
            || req("POST", "/api/x"),
            Some(RelativeUri),
        ),
        case(
            "http to another host with allow_http",
            || layer().allow_http(true),
            || req("GET", "http://api.rampnow.io/x"),
            Some(InsecureScheme),
        ),
        case(
            "http to a private address with allow_http",
            || layer().allow_http(true),
            || req("GET", "http://192.168.1.10:8080/x"),
            Some(InsecureScheme),
        ),
        case(
            "http to localhost with allow_http",
            || layer().allow_http(true),
            || req("GET", "http://localhost:8080/x"),
            None,
        ),
        case(
            "http to ::1 with allow_http",
            || layer().allow_http(true),
            || req("GET", "http://[::1]:8080/x"),
            None,
        ),
        case(
            "no path",
            layer,
            || req("GET", "https://api.rampnow.io"),
            None,
        ),
        case(
            "query without path",
            layer,
            || req("GET", "https://api.rampnow.io?a=1"),
            None,
        ),
        case(
            "percent-encoded invalid UTF-8 in path",
            layer,
            || req("GET", "https://api.rampnow.io/api/%FF%FE?x=%C3"),
            None,
        ),
        case(
            "explicit port",
            layer,
            || req("GET", "https://api.rampnow.io:8443/x"),
            None,
        ),
        case(
            "extension method in upper case",
            layer,
            || req("PURGE", "https://api.rampnow.io/x"),
            None,
        ),
        case(
            "http",
            layer,
            || req("GET", "http://api.rampnow.io/x"),
            Some(InsecureScheme),
        ),
        case(
            "http with allow_http",
            || layer().allow_http(true),
            || req("GET", "http://127.0.0.1:8080/x"),
            None,
        ),
        case(
            "ftp",
            || layer().allow_http(true),
            || req("GET", "ftp://api.rampnow.io/x"),
            Some(InsecureScheme),
        ),
        case(
            "asterisk form",
            layer,
            || req("OPTIONS", "*"),
            Some(InvalidRequest),
        ),
        case(
            "authority form",
            layer,
            || req("CONNECT", "api.rampnow.io:443"),
            Some(InvalidRequest),
        ),
        case(
            "lower-case method",
            layer,
            || req("get", "https://api.rampnow.io/x"),
            Some(InvalidRequest),
        ),
        case(
            "mixed-case method",
            layer,
            || req("Post", "https://api.rampnow.io/x"),
            Some(InvalidRequest),
        ),
        case(
            "body over the limit",
            || layer().max_body_size(1),
            || req("POST", "https://api.rampnow.io/x"),
            Some(BodyTooLarge),
        ),
        case(
            "clock before 1970",
            || layer().with_clock(|| UNIX_EPOCH - Duration::from_secs(5)),
            || req("GET", "https://api.rampnow.io/x"),
            Some(Clock),
        ),
    ]
}

#[tokio::test]
async fn layer_table() {
    for case in layer_cases() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        // Checks what it is sent as a server would: the signature over the target it gets.
        let inner = service_fn(move |req: Request<SignedBody>| {
            counted.fetch_add(1, Ordering::SeqCst);
            let target = req.uri().path_and_query().map_or("", |pq| pq.as_str());
            let checked = common::check(
                common::RN,
                NOW,
                req.method().as_str(),
                target,
                req.headers(),
                req.body().as_bytes(),
            );
            async { Ok::<_, Infallible>(Response::new(checked)) }
        });
        let result = (case.layer)().layer(inner).oneshot((case.request)()).await;
        match (case.expect, result) {
            (None, Ok(response)) => {
                assert_eq!(calls.load(Ordering::SeqCst), 1, "{}", case.name);
                let checked = response.into_body();
                assert_eq!(checked, Ok(()), "{}: not signed as sent", case.name);
            }
            (None, Err(err)) => panic!("{}: refused: {err}", case.name),
            (Some(kind), Ok(_)) => panic!("{}: sent, expected {kind:?}", case.name),
            (Some(kind), Err(err)) => {
                let err = err
                    .downcast_ref::<Error>()
                    .unwrap_or_else(|| panic!("{}: {err}", case.name));
                assert_eq!(err.kind(), kind, "{}: {err}", case.name);
                assert!(
                    err.to_string().len() > 30,
                    "{}: message too thin: {err}",
                    case.name
                );
                assert_eq!(
                    calls.load(Ordering::SeqCst),
                    0,
                    "{}: inner called",
                    case.name
                );
            }
        }
    }
}

#[test]
fn credential_and_header_name_table() {
    let credentials: &[(&str, &[u8], bool)] = &[
        ("ak_live_3f9a1c", b"pk_live_secret", true),
        ("", b"pk_live_secret", false),
        ("ak_live_3f9a1c", b"", false),
        ("ak_live\x00", b"s", false),
        ("ak_live\x7f", b"s", false),
        ("ak_live\r\nX-Injected: 1", b"s", false),
        ("ak live", b"s", false),
        ("ak_live_ü", b"s", false),
        ("ak_live_3f9a1c", b"secret\r\n", false),
        ("ak_live_3f9a1c", b"\tsecret", false),
        ("ak_live_3f9a1c", b"s\x00cret", true),
        ("ak_live_3f9a1c", "clé-secrète-ü".as_bytes(), true),
        ("ak_live_3f9a1c", &[0xff; 200], true),
    ];
    for (key, secret, ok) in credentials {
        let result = Credentials::new(*key, secret);
        assert_eq!(result.is_ok(), *ok, "{key:?}");
        if let Err(err) = result {
            assert_eq!(err.kind(), ErrorKind::InvalidCredentials);
        }
    }
    for (names, ok) in [
        (("A", "B", "C"), true),
        (("A", "a", "C"), false),
        (("A B", "B", "C"), false),
        (("A", "B", ""), false),
        (("A", "B\r\n", "C"), false),
        (("A", "B", "C:"), false),
    ] {
        let result = HeaderNames::new(names.0, names.1, names.2);
        assert_eq!(result.is_ok(), ok, "{names:?}");
        if let Err(err) = result {
            assert_eq!(err.kind(), ErrorKind::InvalidHeaderNames);
        }
    }
}
