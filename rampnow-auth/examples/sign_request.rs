//! Prints the Rampnow auth headers for one request, and an equivalent `curl` command, for
//! checking a signature by hand.
//!
//! ```sh
//! export RAMPNOW_API_KEY=ak_live_... RAMPNOW_API_SECRET=pk_live_...
//! cargo run --example sign_request -- GET 'https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC'
//! cargo run --example sign_request -- POST https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote '{"srcCurrency":"EUR"}'
//! cargo run --example sign_request -- --timestamp 1727759033 --api-key k --api-secret s POST https://api.rampnow.io/x @body.json
//! ```
//!
//! Options: `--api-key`, `--api-secret` (default: `RAMPNOW_API_KEY`, `RAMPNOW_API_SECRET`),
//! `--timestamp SECONDS` (default: now), `--x-rampnow` (the X-RAMPNOW header names). The body
//! is the third argument, or `@FILE` to read it from a file. The request is signed by the
//! crate's signing core (`rampnow_auth::signing`), the same function the layer and the reqwest
//! middleware call, so what is printed is what they would send. No runtime, nothing is sent.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Request;
use rampnow_auth::signing::{sign, SignableRequest, SigningParams, SigningSettings};
use rampnow_auth::{Credentials, HeaderNames};

const USAGE: &str =
    "usage: sign_request [--api-key KEY] [--api-secret SECRET] [--timestamp SECONDS] \
                     [--x-rampnow] METHOD URL [BODY | @FILE]";

struct Args {
    api_key: Option<String>,
    api_secret: Option<String>,
    timestamp: Option<u64>,
    names: HeaderNames,
    method: String,
    url: String,
    body: Vec<u8>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        api_key: None,
        api_secret: None,
        timestamp: None,
        names: HeaderNames::RN,
        method: String::new(),
        url: String::new(),
        body: Vec::new(),
    };
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--api-key" => parsed.api_key = Some(value("--api-key")?),
            "--api-secret" => parsed.api_secret = Some(value("--api-secret")?),
            "--timestamp" => {
                let text = value("--timestamp")?;
                let secs = text.parse().map_err(|_| {
                    format!("--timestamp takes whole seconds since 1970, not {text:?}")
                })?;
                parsed.timestamp = Some(secs);
            }
            "--x-rampnow" => parsed.names = HeaderNames::X_RAMPNOW,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other if other.starts_with("--") => {
                return Err(format!("unknown option {other}\n{USAGE}"))
            }
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    parsed.method = positional.next().ok_or(USAGE)?;
    parsed.url = positional.next().ok_or(USAGE)?;
    if let Some(body) = positional.next() {
        parsed.body = match body.strip_prefix('@') {
            Some(path) => {
                std::fs::read(path).map_err(|e| format!("cannot read the body from {path}: {e}"))?
            }
            None => body.into_bytes(),
        };
    }
    if positional.next().is_some() {
        return Err(format!("too many arguments\n{USAGE}"));
    }
    Ok(parsed)
}

/// Quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn run(args: Args) -> Result<(), String> {
    let credentials = match (args.api_key, args.api_secret) {
        (Some(key), Some(secret)) => Credentials::new(key, secret),
        (None, None) => Credentials::from_env(),
        _ => {
            return Err(
                "give both --api-key and --api-secret, or neither (to use the environment)".into(),
            )
        }
    }
    .map_err(|e| e.to_string())?;

    let settings = SigningSettings::new()
        .header_names(args.names)
        .allow_http(true);
    let time = match args.timestamp {
        Some(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        None => SystemTime::now(),
    };
    let mut signed = Request::builder()
        .method(args.method.as_str())
        .uri(args.url.as_str())
        .body(args.body)
        .map_err(|e| format!("not a valid request: {e}"))?;
    let request = SignableRequest::new(signed.method(), signed.uri(), signed.body());
    let instructions = sign(&request, &SigningParams::new(&credentials, time, &settings))
        .map_err(|e| e.to_string())?;
    instructions
        .apply_to_request(&mut signed)
        .map_err(|e| e.to_string())?;

    let target = signed.uri().path_and_query().map_or("/", |pq| pq.as_str());
    println!("{} {target}", signed.method());
    let mut curl = format!(
        "curl -sS -X {} {}",
        signed.method(),
        shell_quote(&signed.uri().to_string())
    );
    for (name, value) in signed.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        println!("{name}: {value}");
        curl.push_str(&format!(
            " \\\n  -H {}",
            shell_quote(&format!("{name}: {value}"))
        ));
    }
    let body = signed.body().as_slice();
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => curl.push_str(&format!(" \\\n  --data-binary {}", shell_quote(text))),
            Err(_) => curl.push_str(
                " \\\n  --data-binary @BODY_FILE  # the body is binary: pass the same file",
            ),
        }
    }
    println!("body: {} bytes", body.len());
    println!("\n{curl}");
    println!("\nThe signature is valid for 60 s from the timestamp; run curl before then.");
    Ok(())
}

fn main() -> ExitCode {
    let result = match parse(std::env::args().skip(1)) {
        Ok(args) => run(args),
        Err(message) => Err(message),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
