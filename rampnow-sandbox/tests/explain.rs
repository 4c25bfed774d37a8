//! `rampnow-sandbox explain`, run as a user runs it: the binary, a known request, the secret in
//! the environment.

use std::process::{Command, Output};

use http::Method;
use rampnow_auth::{Credentials, Signer};

const KEY: &str = "ak_live_explain_test";
const SECRET: &str = "pk_live_explain_test_secret";
const TS: u64 = 1_700_000_000;
const TARGET: &str = "/api/partner/v1/ext/ramp_order/quote";
const BODY: &str = r#"{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":"100.0"}"#;

fn explain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampnow-sandbox"))
        .arg("explain")
        .args(args)
        .env("RAMPNOW_API_KEY", KEY)
        .env("RAMPNOW_API_SECRET", SECRET)
        .output()
        .expect("the binary runs")
}

fn signature(body: &[u8]) -> String {
    Signer::new(&Credentials::new(KEY, SECRET).unwrap())
        .sign(TS, &Method::POST, TARGET, body)
        .to_string()
}

fn curl(signature: &str) -> String {
    format!(
        "curl -sS --cacert ca.pem -X POST 'https://127.0.0.1:8443{TARGET}' \\\n  \
         -H 'RN-API-KEY: {KEY}' \\\n  -H \"RN-ACCESS-TIMESTAMP: {TS}\" \\\n  \
         -H 'RN-ACCESS-SIGN: {signature}' \\\n  --data '{BODY}'"
    )
}

#[test]
fn a_pasted_curl_command_with_a_doubly_encoded_body_is_explained() {
    // The Rampnow docs' Python recipe: json.dumps on a string that is already JSON.
    let signed = serde_json::to_string(BODY).unwrap();
    let output = explain(&["--curl", &curl(&signature(signed.as_bytes()))]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let expected = format!("1700000000POST{TARGET}{}", BODY.replace('"', "\\\""));
    assert!(
        stdout.contains(&format!(
            "expected to be signed ({} bytes",
            10 + 4 + TARGET.len() + BODY.len()
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("  \"{expected}\"")), "{stdout}");
    assert!(stdout.contains("signature: does not match"), "{stdout}");
    assert!(
        stdout.contains(
            "diagnosis: body_double_encoded: it matches the body JSON-encoded a second time"
        ),
        "{stdout}"
    );
    let at = 10 + 4 + TARGET.len();
    assert!(
        stdout.contains(&format!("first difference at byte {at}:")),
        "{stdout}"
    );
    assert!(stdout.contains("what was signed ("), "{stdout}");
    // Neither the secret nor the expected signature is printed.
    assert!(!stdout.contains(SECRET));
    assert!(!stdout.contains(&signature(BODY.as_bytes())));
}

#[test]
fn flags_with_the_body_from_a_file_and_a_right_signature_exit_0() {
    let dir = std::env::temp_dir().join(format!("rampnow-explain-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body.json");
    std::fs::write(&file, BODY).unwrap();
    let data = format!("@{}", file.display());
    let url = format!("https://127.0.0.1:8443{TARGET}");
    let sign_header = format!("RN-ACCESS-SIGN: {}", signature(BODY.as_bytes()));
    let ts_header = format!("RN-ACCESS-TIMESTAMP: {TS}");
    let args = [
        "--method",
        "POST",
        "--url",
        &url,
        "-H",
        &ts_header,
        "-H",
        &sign_header,
        "--data",
        &data,
    ];
    let output = explain(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("signature: matches"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--no-such-flag"][..],
        &["--url"],
        &["--curl", "curl 'unclosed"],
        &[],
    ] {
        let output = explain(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
    let help = explain(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--curl COMMAND"));
}

/// What `rampnow-sandbox sign` prints, pasted into `explain`, matches: the two commands read
/// and write the same curl (`--head` for HEAD, `--data-raw` for an inline body).
#[test]
fn the_curl_command_sign_prints_is_explained_as_matching() {
    let url = format!("https://127.0.0.1:8443{TARGET}?srcCurrency=USD&note=it's");
    for (method, body) in [("GET", None), ("HEAD", None), ("POST", Some(BODY))] {
        let mut args = vec!["sign", "--timestamp", "1700000000", method, &url];
        args.extend(body);
        let signed = Command::new(env!("CARGO_BIN_EXE_rampnow-sandbox"))
            .args(&args)
            .env("RAMPNOW_API_KEY", KEY)
            .env("RAMPNOW_API_SECRET", SECRET)
            .output()
            .expect("the binary runs");
        let text = String::from_utf8_lossy(&signed.stdout);
        let curl = &text[text.find("\ncurl ").expect("a curl command") + 1..];
        let output = explain(&["--curl", curl]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{method}:\n{curl}\n{stdout}");
        assert!(
            stdout.starts_with(&format!("request:   {method} ")),
            "{stdout}"
        );
    }
}
