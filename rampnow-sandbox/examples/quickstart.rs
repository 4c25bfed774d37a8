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
//! your credentials from `RAMPNOW_API_KEY` and `RAMPNOW_API_SECRET`, to the environment that
//! `RAMPNOW_ENVIRONMENT` names (`production`, the default, or `staging`) at its rate limit:
//!
//! ```text
//! RAMPNOW_API_KEY=ak_live_... RAMPNOW_API_SECRET=... cargo run --example quickstart -- --live
//! ```

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
use rampnow_auth::limit::RateLimitLayer;
use rampnow_auth::retry::RampnowRetry;
use rampnow_auth::verify::RejectionKind;
use rampnow_auth::{Credentials, Environment, HeaderNames, RampnowAuthLayer, SignedBody};
use rampnow_sandbox::{Sandbox, QUOTE_PATH, SANDBOX_API_KEY};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// hyper's client over rustls: the transport, inside the signing layer.
type Transport = Client<HttpsConnector<HttpConnector>, SignedBody>;

const QUOTE_QUERY: &str = "srcCurrency=USD&dstCurrency=BTC&srcAmount=100";

/// The Rampnow environment whose limits the sandbox plays, and the client keeps to.
const PLAYED: Environment = Environment::Production;

/// How many quotes step 4 starts at once.
const BURST: usize = 25;

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

/// The client stack: what you would build against Rampnow. Every client made with clones of
/// one `limit` shares its rate. `show` prints each request as it leaves the signing layer.
fn client(
    limit: &RateLimitLayer,
    credentials: Credentials,
    transport: Transport,
    show: bool,
) -> impl Service<Request<SignedBody>, Response = Response<Incoming>, Error = BoxError, Future: Send>
       + Clone
       + Send
       + 'static {
    ServiceBuilder::new()
        // Outside the signing layer: whether and when to send.
        .timeout(Duration::from_secs(30))
        // 429, 502, 503, 504 and refused connections; other failures only for idempotent
        // methods. Each retry is signed afresh.
        .retry(RampnowRetry::new())
        // The environment's rate (production: 20 requests a second), shared by every clone of
        // the layer; a request is signed when the limiter releases it.
        .layer(limit.clone())
        .layer(RampnowAuthLayer::new(credentials))
        // Inside: only the transport (here with a look at what goes out, after signing).
        .map_request(move |request| {
            if show {
                show_outgoing(request)
            } else {
                request
            }
        })
        .service(transport)
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
    // The sandbox plays Rampnow's production limits: 20 requests a second per address (429
    // past that), and here also a 503 for every 10th request, as an overloaded upstream would.
    let sandbox = Sandbox::builder()
        .rate_limit(PLAYED.requests_per_second())
        .fail_every(10)
        .quiet(true)
        .start()
        .await?;
    println!(
        "Sandbox at {} (API key {}; its certificate, made for this run, is trusted by this \
         client only; 20 requests a second, and every 10th request fails with 503)\n",
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
    // One limit for every client of this process: Rampnow counts requests per address.
    let limit = RateLimitLayer::for_environment(PLAYED);
    let signed = client(
        &limit,
        sandbox.credentials().clone(),
        transport.clone(),
        true,
    );
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
        &limit,
        Credentials::new(SANDBOX_API_KEY, "pk_sandbox_wrong_secret")?,
        transport.clone(),
        true,
    );
    let (bad, _) = exchange(wrong, Request::get(&url).body(SignedBody::empty())?).await?;
    println!("{}\n", verdict());
    let refused_as_mismatch = sandbox
        .log()
        .last()
        .and_then(|entry| entry.rejection.as_ref())
        .is_some_and(|rejection| rejection.kind() == RejectionKind::SignatureMismatch);

    println!("4. {BURST} GET quotes at once, through the rate limiter and the retry policy");
    let before = sandbox.log().len();
    let quiet = client(&limit, sandbox.credentials().clone(), transport, false);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..BURST {
        // Amounts unlike the others of this run (step 1 asked for 100): the sandbox, like a
        // careful server, refuses a signature it has already seen, and the same request in the
        // same second has the same signature.
        let url = format!(
            "{}{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount={}",
            sandbox.url(),
            200 + n
        );
        let request = Request::get(&url).body(SignedBody::empty())?;
        tasks.spawn(quiet.clone().oneshot(request));
    }
    let mut answered_ok = 0;
    while let Some(outcome) = tasks.join_next().await {
        let response = outcome?.map_err(|error| format!("a quote of step 4 failed: {error}"))?;
        if response.status() == StatusCode::OK {
            answered_ok += 1;
        } else {
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            println!("   <- {status} {}", String::from_utf8_lossy(&body));
        }
    }
    let elapsed = started.elapsed();
    let log = sandbox.log();
    let seen = &log[before.min(log.len())..];
    let refused = |code: &str| {
        seen.iter()
            .filter(|entry| {
                entry
                    .limit
                    .as_ref()
                    .is_some_and(|limit| limit.code() == code)
            })
            .count()
    };
    let (rate_limited, failed) = (refused("rate_limited"), refused("service_unavailable"));
    println!(
        "   <- {answered_ok} of {BURST} answered 200 in {:.2} s; the sandbox saw {} requests: \
         {failed} failed with 503 and were retried, {rate_limited} were over its rate limit",
        elapsed.as_secs_f64(),
        seen.len()
    );
    println!();

    let ok = get == StatusCode::OK
        && post == StatusCode::OK
        && bad == StatusCode::UNAUTHORIZED
        && refused_as_mismatch
        && answered_ok == BURST;
    if ok {
        println!(
            "OK: the signed requests verified, the wrongly signed one was refused \
             (signature_mismatch), and all {BURST} quotes of the burst were answered."
        );
    } else {
        println!(
            "FAILED: expected 200, 200, 401 signature_mismatch and {BURST} quotes; got {}, {}, \
             {} and {answered_ok}.",
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
    let environment = Environment::from_env()?.unwrap_or(Environment::Production);
    let base = environment.base_url();
    let url = format!("{base}{QUOTE_PATH}?{QUOTE_QUERY}");
    let request = Request::get(&url).body(SignedBody::empty())?;
    // Mozilla's root certificates, and the aws-lc-rs provider (not a process-wide default).
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let transport = transport(
        HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)?
            .https_only()
            .enable_http1()
            .build(),
    );
    println!("A signed GET quote to {base}\n");
    let (status, body) = exchange(
        client(
            &RateLimitLayer::for_environment(environment),
            credentials,
            transport,
            true,
        ),
        request,
    )
    .await?;
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
