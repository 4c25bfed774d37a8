//! Signed requests from reqwest, through reqwest-middleware, to a local sandbox.
//!
//! ```text
//! cargo run --features reqwest --example reqwest
//! ```
//!
//! Starts a [`Sandbox`] in this process (a local HTTPS server that verifies signatures as
//! Rampnow does), builds a `reqwest::Client` that trusts its certificate (rustls with the `ring`
//! provider), wraps it in a `reqwest_middleware::ClientWithMiddleware` with
//! [`RampnowAuthLayer::reqwest_middleware`], and sends a signed `GET` quote and a signed `POST`
//! quote. It prints what is answered, and exits non-zero unless both are `200 OK`.
//!
//! Against Rampnow, build the layer from `Credentials::from_env()` and the client with the
//! usual roots; the middleware is the same.

use std::process::ExitCode;

use rampnow_auth::{RampnowAuthLayer, SigningReceipt};
use rampnow_sandbox::{Sandbox, QUOTE_PATH};
use reqwest::StatusCode;
use reqwest_middleware::{ClientBuilder, RequestBuilder};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("reqwest example: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let sandbox = Sandbox::builder().quiet(true).start().await?;
    println!(
        "Sandbox at {} (API key {})\n",
        sandbox.url(),
        sandbox.credentials().api_key()
    );

    // The sandbox's rustls configuration: `ring`, and its certificate as the only root. Against
    // Rampnow, give reqwest a configuration with the usual roots instead.
    let reqwest_client = reqwest::Client::builder()
        .tls_backend_preconfigured(sandbox.rustls_client_config())
        // reqwest follows redirects below every middleware, taking the API key along: don't.
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let layer = RampnowAuthLayer::new(sandbox.credentials().clone()).sync_server_time();
    // Attach it last: middleware attached before it (retries) sees every attempt signed afresh.
    let client = ClientBuilder::new(reqwest_client)
        .with(layer.reqwest_middleware())
        .build();

    println!("1. A signed GET quote");
    let url = format!(
        "{}{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100",
        sandbox.url()
    );
    let get = exchange(client.get(&url)).await?;

    println!("2. A signed POST quote");
    let json = r#"{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":"100.0"}"#;
    let request = client
        .post(format!("{}{QUOTE_PATH}", sandbox.url()))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        // Bytes, not a stream: the middleware signs exactly what reqwest sends.
        .body(json);
    let post = exchange(request).await?;

    for entry in sandbox.log() {
        println!("sandbox: {entry}");
    }
    let ok = get == StatusCode::OK && post == StatusCode::OK;
    if ok {
        println!("\nOK: both signed requests verified.");
    } else {
        println!(
            "\nFAILED: expected 200 and 200; got {} and {}.",
            get.as_u16(),
            post.as_u16()
        );
    }
    Ok(ok)
}

/// Sends one request, prints the answer (and the signing receipt of a 401), returns the status.
async fn exchange(
    request: RequestBuilder,
) -> Result<StatusCode, Box<dyn std::error::Error + Send + Sync>> {
    let response = request.send().await?;
    let status = response.status();
    let receipt = response.extensions().get::<SigningReceipt>().cloned();
    let body = response.text().await?;
    println!("   <- {status}");
    println!("      {body}");
    if let Some(receipt) = receipt {
        println!("      {receipt}");
    }
    println!();
    Ok(status)
}
