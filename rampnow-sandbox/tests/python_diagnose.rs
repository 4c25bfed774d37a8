//! Runs `tests/diagnose.py` (Python's standard library only) against a sandbox started here:
//! each common mistake made from Python, as a user's Python client makes it, is named in the
//! refusal. Without `python3` the test says why it did not run and passes, unless
//! `RAMPNOW_REQUIRE_PYTHON=1`.

use std::process::Command;

use rampnow_auth::Credentials;
use rampnow_sandbox::{Sandbox, SANDBOX_API_KEY, SANDBOX_API_SECRET};

const OTHER_KEY: &str = "ak_sandbox_other";
const OTHER_SECRET: &str = "pk_sandbox_other_secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mistake_made_from_python_is_named() {
    let python = Command::new("python3").arg("--version").output();
    if !python.as_ref().is_ok_and(|out| out.status.success()) {
        let why = match python {
            Ok(out) => format!("python3 --version exited with {}", out.status),
            Err(error) => format!("python3 could not be run: {error}"),
        };
        if std::env::var("RAMPNOW_REQUIRE_PYTHON").as_deref() == Ok("1") {
            panic!("{why}, and RAMPNOW_REQUIRE_PYTHON=1 asks for it");
        }
        eprintln!(
            "tests/diagnose.py not run: {why} (set RAMPNOW_REQUIRE_PYTHON=1 to fail instead)"
        );
        return;
    }

    let sandbox = Sandbox::builder()
        .also_accept(Credentials::new(OTHER_KEY, OTHER_SECRET).unwrap())
        .quiet(true)
        .start()
        .await
        .expect("the sandbox starts");
    let dir = std::env::temp_dir().join(format!(
        "rampnow-sandbox-python-diagnose-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, sandbox.ca_cert_pem()).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/diagnose.py");
    let url = sandbox.url();
    let ca_path = ca.to_str().unwrap().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([
                script,
                &url,
                &ca_path,
                SANDBOX_API_KEY,
                SANDBOX_API_SECRET,
                OTHER_KEY,
                OTHER_SECRET,
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "tests/diagnose.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Each mistake the script makes is logged with its diagnosis.
    let codes: Vec<String> = sandbox
        .log()
        .iter()
        .filter_map(|entry| entry.diagnosis.as_ref().map(|d| d.code()))
        .collect();
    for code in [
        "body_double_encoded",
        "body_double_encoded_unicode",
        "body_sent_double_encoded",
        "body_left_out",
        "empty_body_signed_as_json",
        "body_trailing_newline",
        "body_newline_not_signed",
        "body_whitespace",
        "query_left_out",
        "query_signed_decoded",
        "query_signed_encoded",
        "query_space_encoding",
        "target_with_origin",
        "target_with_host",
        "method_lowercase",
        "method_lowercase+query_left_out",
        "timestamp_milliseconds",
        "signed_milliseconds",
        "other_key_secret",
        "key_and_secret_swapped",
        "signature_base64",
        "signature_hex_prefix",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} not in {codes:?}");
        assert!(
            stdout.contains(&format!("ok   {code}: ")),
            "{code}:\n{stdout}"
        );
    }
}
