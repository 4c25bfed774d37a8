//! The first thing to run: signed requests, end to end, in a few seconds.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Starts a [`Sandbox`] in this process (a local HTTPS server that verifies signatures as
//! Rampnow does), builds the client stack you would use against Rampnow — timeout and retry
//! outside [`RampnowAuthLayer`], hyper's client over rustls inside — and sends a signed `GET`
//! quote, a signed `POST` quote, and one request signed with a wrong secret, which must be
//! refused. It prints what is sent and answered, and exits non-zero if anything went otherwise.
//!
//! With `--live`, it sends the same signed `GET` quote to the real Rampnow API instead, with
//! your credentials from `RAMPNOW_API_KEY` and `RAMPNOW_API_SECRET` (and `RAMPNOW_BASE_URL`,
//! default `https://api.rampnow.io`):
//!
//! ```text
//! RAMPNOW_API_KEY=ak_live_... RAMPNOW_API_SECRET=... cargo run --example quickstart -- --live
//! ```

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rampnow_auth::verify::RejectionKind;
use rampnow_auth::{Credentials, HeaderNames, RampnowAuthLayer, SignedBody};
use rampnow_sandbox::{Sandbox, QUOTE_PATH, SANDBOX_API_KEY};
use tower::retry::Policy;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// hyper's client over rustls: the transport, inside the signing layer.
type Transport = Client<HttpsConnector<HttpConnector>, SignedBody>;

const QUOTE_QUERY: &str = "srcCurrency=USD&dstCurrency=BTC&srcAmount=100";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut live = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--live" => live = true,
            "--help" | "-h" => {
                println!("usage: cargo run --example quickstart [-- --live]");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("quickstart: unknown option {arg:?}; usage: cargo run --example quickstart [-- --live]");
                return ExitCode::from(2);
            }
        }
    }
    let outcome = if live {
        run_live().await
    } else {
        run_sandbox().await
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("quickstart: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// The client stack: what you would build against Rampnow.
fn client(
    credentials: Credentials,
    transport: Transport,
) -> impl Service<Request<SignedBody>, Response = Response<Incoming>, Error = BoxError> + Clone {
    ServiceBuilder::new()
        // Outside the signing layer: whether and when to send. Each retry is signed afresh.
        .timeout(Duration::from_secs(10))
        .retry(RetryTransient { retries_left: 2 })
        .layer(RampnowAuthLayer::new(credentials))
        // Inside: only the transport (here with a look at what goes out, after signing).
        .map_request(show_outgoing)
        .service(transport)
}

/// Retries a `503` or a failure to connect (nothing was sent), twice at most, after a pause.
#[derive(Clone, Debug)]
struct RetryTransient {
    retries_left: usize,
}

impl Policy<Request<SignedBody>, Response<Incoming>, BoxError> for RetryTransient {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        _request: &mut Request<SignedBody>,
        result: &mut Result<Response<Incoming>, BoxError>,
    ) -> Option<Self::Future> {
        let transient = match result {
            Ok(response) => response.status() == StatusCode::SERVICE_UNAVAILABLE,
            Err(error) => error
                .downcast_ref::<hyper_util::client::legacy::Error>()
                .is_some_and(hyper_util::client::legacy::Error::is_connect),
        };
        if !transient || self.retries_left == 0 {
            return None;
        }
        self.retries_left -= 1;
        println!("   (transient failure: retrying)");
        Some(Box::pin(tokio::time::sleep(Duration::from_millis(200))))
    }

    fn clone_request(&mut self, request: &Request<SignedBody>) -> Option<Request<SignedBody>> {
        // `SignedBody` clones by reference count; the layer re-signs each attempt.
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.version_mut() = request.version();
        *clone.headers_mut() = request.headers().clone();
        Some(clone)
    }
}

/// Prints a request as it leaves the signing layer: request line, auth headers (signature
/// shortened), body.
fn show_outgoing(request: Request<SignedBody>) -> Request<SignedBody> {
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    println!("   -> {} {target}", request.method());
    let names = HeaderNames::RN;
    for name in [names.api_key(), names.timestamp(), names.signature()] {
        let value = request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(missing)");
        if name == names.signature() && value.len() > 12 {
            println!("      {name}: {}…", &value[..12]);
        } else {
            println!("      {name}: {value}");
        }
    }
    if !request.body().as_bytes().is_empty() {
        println!(
            "      {}",
            String::from_utf8_lossy(request.body().as_bytes())
        );
    }
    request
}

/// Sends one request through `client`, prints the answer, and returns its status.
async fn exchange<S>(
    client: S,
    request: Request<SignedBody>,
) -> Result<(StatusCode, String), BoxError>
where
    S: Service<Request<SignedBody>, Response = Response<Incoming>, Error = BoxError>,
{
    let response = client.oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    println!("   <- {status}");
    println!("      {body}");
    Ok((status, body))
}

async fn run_sandbox() -> Result<bool, BoxError> {
    let sandbox = Sandbox::builder().quiet(true).start().await?;
    println!(
        "Sandbox at {} (API key {}; its certificate, made for this run, is trusted by this \
         client only)\n",
        sandbox.url(),
        sandbox.credentials().api_key()
    );
    // Trusts the sandbox's certificate; against Rampnow, use the usual roots (see `run_live`).
    let transport = transport(
        HttpsConnectorBuilder::new()
            .with_tls_config(sandbox.rustls_client_config())
            .https_only()
            .enable_http1()
            .build(),
    );
    let signed = client(sandbox.credentials().clone(), transport.clone());
    // What the sandbox made of the last request.
    let verdict = || match sandbox.log().pop().and_then(|entry| entry.rejection) {
        None => "   sandbox: signature verified".to_owned(),
        Some(rejection) => format!("   sandbox: refused ({})", rejection.code()),
    };

    println!("1. A signed GET quote");
    let url = format!("{}{QUOTE_PATH}?{QUOTE_QUERY}", sandbox.url());
    let (get, _) = exchange(
        signed.clone(),
        Request::get(&url).body(SignedBody::empty())?,
    )
    .await?;
    println!("{}\n", verdict());

    println!("2. A signed POST quote");
    let json = r#"{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":"100.0"}"#;
    let request = Request::post(format!("{}{QUOTE_PATH}", sandbox.url()))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(SignedBody::from(json))?;
    let (post, _) = exchange(signed, request).await?;
    println!("{}\n", verdict());

    println!("3. The same GET, signed with a wrong secret (must be refused)");
    let wrong = client(
        Credentials::new(SANDBOX_API_KEY, "pk_sandbox_wrong_secret")?,
        transport,
    );
    let (bad, _) = exchange(wrong, Request::get(&url).body(SignedBody::empty())?).await?;
    println!("{}\n", verdict());
    let refused_as_mismatch = sandbox
        .log()
        .last()
        .and_then(|entry| entry.rejection.as_ref())
        .is_some_and(|rejection| rejection.kind() == RejectionKind::SignatureMismatch);

    let ok = get == StatusCode::OK
        && post == StatusCode::OK
        && bad == StatusCode::UNAUTHORIZED
        && refused_as_mismatch;
    if ok {
        println!(
            "OK: both signed requests verified, and the wrongly signed one was refused \
             (signature_mismatch)."
        );
    } else {
        println!(
            "FAILED: expected 200, 200 and 401 signature_mismatch; got {}, {} and {}.",
            get.as_u16(),
            post.as_u16(),
            bad.as_u16()
        );
    }
    Ok(ok)
}

/// hyper's client over this TLS connector (HTTPS only, HTTP/1.1).
fn transport(https: HttpsConnector<HttpConnector>) -> Transport {
    Client::builder(TokioExecutor::new()).build(https)
}

async fn run_live() -> Result<bool, BoxError> {
    let credentials = Credentials::from_env().map_err(|error| {
        format!(
            "--live sends a signed request to the real Rampnow API, with your credentials: \
             {error}"
        )
    })?;
    let base =
        std::env::var("RAMPNOW_BASE_URL").unwrap_or_else(|_| "https://api.rampnow.io".into());
    let url = format!("{}{QUOTE_PATH}?{QUOTE_QUERY}", base.trim_end_matches('/'));
    let request = Request::get(&url).body(SignedBody::empty()).map_err(|error| {
        format!("RAMPNOW_BASE_URL {base:?} does not make a valid URL ({error}); set it to https://api.rampnow.io or unset it")
    })?;
    // Mozilla's root certificates, and the ring provider (not a process-wide default).
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let transport = transport(
        HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)?
            .https_only()
            .enable_http1()
            .build(),
    );
    println!("A signed GET quote to {base}\n");
    let (status, body) = exchange(client(credentials, transport), request).await?;
    println!();
    if status.is_success() {
        println!("OK: Rampnow accepted the signature.");
        Ok(true)
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        println!(
            "FAILED: Rampnow refused the request ({status}). Check the key and secret, that the \
             key is enabled for the API, this machine's clock, and whether your account uses \
             the X-RAMPNOW-* header names (RampnowAuthLayer::header_names). Answer: {body}"
        );
        Ok(false)
    } else {
        println!("FAILED: Rampnow answered {status}; the signature may still be fine.");
        Ok(false)
    }
}
