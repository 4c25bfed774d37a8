//! `rampnow-sandbox sign`, run as the installed program: its signature against a shared test
//! vector, and the `curl` command it prints, run against a sandbox.

use std::path::PathBuf;
use std::process::{Command, Output};

use rampnow_sandbox::{Sandbox, QUOTE_PATH, SANDBOX_API_KEY, SANDBOX_API_SECRET};

/// The vector "docs-example-post" of rampnow-auth/tests/data/rampnow-signing.json (computed
/// independently, in Python).
mod vector {
    pub const API_KEY: &str = "ak_live_3f9a1c";
    pub const SECRET: &str = "pk_live_asjhdvcjahsgvjqhwcasdv";
    pub const TIMESTAMP: &str = "1727759033";
    pub const METHOD: &str = "POST";
    pub const URI: &str =
        "https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC";
    pub const BODY: &str = r#"{"dummy": "value"}"#;
    pub const SIGNATURE: &str = "558629fe8e7f4555ddbe63dd8d1523921eef1f8763ccc142e63d84c227f2ab5e";
}

/// Runs `rampnow-sandbox ARGS` with no Rampnow variables in its environment.
fn program(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampnow-sandbox"))
        .args(args)
        .env_remove("RAMPNOW_API_KEY")
        .env_remove("RAMPNOW_API_SECRET")
        .output()
        .expect("the rampnow-sandbox program runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// The value of the header line `name: value` in the output.
fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} line in:\n{text}"))
}

/// The printed curl command: from the line starting with `curl ` to the end.
fn curl_command(text: &str) -> &str {
    let start = text
        .find("\ncurl ")
        .unwrap_or_else(|| panic!("no curl command in:\n{text}"));
    text[start + 1..].trim_end()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampnow-cli-sign-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

#[test]
fn sign_gives_the_test_vector_signature() {
    let text = stdout(&program(&[
        "sign",
        "--timestamp",
        vector::TIMESTAMP,
        "--api-key",
        vector::API_KEY,
        "--api-secret",
        vector::SECRET,
        vector::METHOD,
        vector::URI,
        vector::BODY,
    ]));
    assert_eq!(header(&text, "rn-access-sign"), vector::SIGNATURE);
    assert_eq!(header(&text, "rn-access-timestamp"), vector::TIMESTAMP);
    assert_eq!(header(&text, "rn-api-key"), vector::API_KEY);
    assert!(text.starts_with(
        "POST /api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC\n"
    ));
    assert!(text.contains("body: 18 bytes"), "{text}");
    // Never the secret.
    assert!(!text.contains(vector::SECRET), "{text}");
}

#[test]
fn sign_reads_the_body_from_a_file_and_the_secret_from_the_environment() {
    let body = temp_dir("body").join("body.json");
    std::fs::write(&body, vector::BODY).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rampnow-sandbox"))
        .args(["sign", "--x-rampnow", "--timestamp", vector::TIMESTAMP])
        .args([vector::METHOD, vector::URI])
        .arg(format!("@{}", body.display()))
        .env("RAMPNOW_API_KEY", vector::API_KEY)
        .env("RAMPNOW_API_SECRET", vector::SECRET)
        .output()
        .unwrap();
    let text = stdout(&output);
    assert_eq!(header(&text, "x-rampnow-sign"), vector::SIGNATURE);
    assert_eq!(header(&text, "x-rampnow-api-key"), vector::API_KEY);
    let curl = curl_command(&text);
    assert!(
        curl.ends_with(&format!("--data-binary '@{}'", body.display())),
        "{curl}"
    );
}

#[test]
fn sign_refuses_bad_input_with_a_message_and_an_exit_code() {
    for (args, code, expected) in [
        (&["sign"][..], 2, "METHOD and the URL"),
        (&["sign", "GET", "http://example.com/"], 1, "http"),
        (
            &["sign", "POST", "https://h/", "@/nonexistent/body"],
            1,
            "/nonexistent/body",
        ),
        (
            &["sign", "--api-key", "k", "GET", "https://h/"],
            2,
            "--api-secret",
        ),
    ] {
        let output = program(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let help = stdout(&program(&["sign", "--help"]));
    assert!(help.contains("METHOD URL [BODY | @FILE]"), "{help}");
}

/// Whether `curl` runs here; the reason to skip otherwise.
fn curl_missing() -> Option<String> {
    match Command::new("curl").arg("--version").output() {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!("`curl --version` exited {:?}", output.status)),
        Err(error) => Some(format!("no curl on this machine ({error})")),
    }
}

/// Signs `method url body` with the program, runs the curl command it prints with `sh`, and
/// returns curl's output (the response body).
async fn sign_and_curl(
    ca: &std::path::Path,
    method: &str,
    url: &str,
    body: Option<&str>,
) -> String {
    let mut args = vec![
        "sign".to_owned(),
        "--cacert".to_owned(),
        ca.display().to_string(),
        "--api-key".to_owned(),
        SANDBOX_API_KEY.to_owned(),
        "--api-secret".to_owned(),
        SANDBOX_API_SECRET.to_owned(),
        method.to_owned(),
        url.to_owned(),
    ];
    args.extend(body.map(str::to_owned));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = stdout(&program(&args));
        let curl = curl_command(&text).to_owned();
        let output = Command::new("sh")
            .arg("-c")
            .arg(&curl)
            .output()
            .expect("sh runs");
        assert!(
            output.status.success(),
            "{curl}\nexit {:?}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 answer")
    })
    .await
    .expect("the blocking task finishes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_curl_command_is_accepted_by_a_sandbox() {
    if let Some(reason) = curl_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let sandbox = Sandbox::builder()
        .quiet(true)
        .start()
        .await
        .expect("the sandbox starts");
    let ca = temp_dir("curl").join("ca.pem");
    std::fs::write(&ca, sandbox.ca_cert_pem()).unwrap();

    // A `'` in the query and in the body: the command must still be one correct word each.
    let get = format!(
        "{}{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100&note=it's",
        sandbox.url()
    );
    let answer = sign_and_curl(&ca, "GET", &get, None).await;
    let quote: serde_json::Value = serde_json::from_str(&answer).expect("a JSON quote");
    assert_eq!(quote["dstAmount"], "0.00198000", "{answer}");

    let post = format!("{}{QUOTE_PATH}", sandbox.url());
    let body =
        r#"{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":"100.0","note":"it's $HOME `x`"}"#;
    let answer = sign_and_curl(&ca, "POST", &post, Some(body)).await;
    let quote: serde_json::Value = serde_json::from_str(&answer).expect("a JSON quote");
    assert_eq!(quote["srcCurrency"], "EUR", "{answer}");

    let log = sandbox.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log.iter()
            .all(|entry| entry.verified() && entry.status == 200),
        "{log:?}"
    );
    assert_eq!(
        log[0].target,
        format!("{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100&note=it's")
    );
}

#[cfg(unix)]
#[test]
fn an_argument_that_is_not_utf8_is_refused_with_a_message() {
    use std::os::unix::ffi::OsStrExt as _;
    let output = Command::new(env!("CARGO_BIN_EXE_rampnow-sandbox"))
        .arg("sign")
        .arg("POST")
        .arg("https://api.rampnow.io/x")
        .arg(std::ffi::OsStr::from_bytes(b"{\"a\":\"\xff\"}"))
        .output()
        .expect("the rampnow-sandbox program runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
