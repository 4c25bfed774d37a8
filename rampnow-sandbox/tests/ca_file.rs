//! `client_config_from_ca_file`: a Rust client trusts a sandbox *program* (started with
//! `--cert-out`) in one call, over hyper-rustls and over reqwest.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use http::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rampnow_auth::{RampnowAuthLayer, SignedBody};
use rampnow_sandbox::{client_config_from_ca_file, sandbox_credentials, Sandbox, QUOTE_PATH};
use tower::{Layer, ServiceExt};

const QUERY: &str = "srcCurrency=USD&dstCurrency=BTC&srcAmount=100";

/// A `rampnow-sandbox` process, killed when dropped.
struct Program {
    child: Child,
    url: String,
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `rampnow-sandbox --addr 127.0.0.1:0 --cert-out CA` and waits for its banner (printed
/// after the CA file is written).
fn start_program(ca: &Path) -> Program {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampnow-sandbox"))
        .args(["--addr", "127.0.0.1:0", "--cert-out"])
        .arg(ca)
        .env_remove("RAMPNOW_API_KEY")
        .env_remove("RAMPNOW_API_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the rampnow-sandbox program starts");
    let stdout = child.stdout.take().expect("piped stdout");
    // Read the banner on a thread that keeps draining stdout afterwards: a closed pipe would
    // make the program's next print fail.
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Rampnow sandbox listening on ") {
                let _ = url_tx.send(url.trim().to_owned());
            }
        }
    });
    let mut program = Program {
        child,
        url: String::new(),
    };
    program.url = url_rx
        .recv()
        .expect("the program prints its URL (it ended without)");
    program
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampnow-ca-file-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// A signed GET quote through hyper-rustls trusting `tls`.
async fn get_quote(
    url: &str,
    tls: rustls::ClientConfig,
) -> Result<http::Response<hyper::body::Incoming>, tower::BoxError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = RampnowAuthLayer::new(sandbox_credentials())
        .layer(Client::builder(TokioExecutor::new()).build::<_, SignedBody>(https));
    let request = Request::get(format!("{url}{QUOTE_PATH}?{QUERY}")).body(SignedBody::empty())?;
    client.oneshot(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_trusts_a_sandbox_program_started_with_cert_out() {
    let ca = temp_dir("program").join("ca.pem");
    let program = tokio::task::spawn_blocking(move || start_program(&ca))
        .await
        .unwrap();
    let ca = temp_dir("program").join("ca.pem");

    let tls = client_config_from_ca_file(&ca).expect("the program's CA file is trusted");
    let response = get_quote(&program.url, tls).await.expect("a response");
    assert_eq!(response.status(), StatusCode::OK);

    // reqwest, both documented ways: the same config, or reqwest's own PEM reader.
    let signer = RampnowAuthLayer::new(sandbox_credentials());
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured(client_config_from_ca_file(&ca).unwrap());
    let client = signer.reqwest_client(builder).expect("a client");
    let url = format!("{}{QUOTE_PATH}?{QUERY}&via=preconfigured", program.url);
    assert_eq!(client.get(url).send().await.unwrap().status(), 200);

    let pem = std::fs::read(&ca).unwrap();
    let roots = reqwest::Certificate::from_pem_bundle(&pem).expect("reqwest reads the PEM");
    let builder = reqwest::Client::builder().tls_certs_only(roots);
    let client = signer.reqwest_client(builder).expect("a client");
    let url = format!("{}{QUOTE_PATH}?{QUERY}&via=from_pem", program.url);
    assert_eq!(client.get(url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_config_trusts_only_that_sandbox() {
    let first = Sandbox::builder().quiet(true).start().await.unwrap();
    let second = Sandbox::builder().quiet(true).start().await.unwrap();
    let ca = temp_dir("only").join("first.pem");
    std::fs::write(&ca, first.ca_cert_pem()).unwrap();

    let response = get_quote(&first.url(), client_config_from_ca_file(&ca).unwrap())
        .await
        .expect("the first sandbox is trusted");
    assert_eq!(response.status(), StatusCode::OK);
    // Another sandbox has another CA (a restarted one too): the handshake fails, and the
    // request never reaches it.
    let refused = get_quote(&second.url(), client_config_from_ca_file(&ca).unwrap()).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(second.log().is_empty());
}

#[test]
fn a_missing_file_says_how_to_make_it() {
    let error = client_config_from_ca_file("/nonexistent/ca.pem").unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    let message = error.to_string();
    assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    assert!(message.contains("--cert-out"), "{message}");
}
