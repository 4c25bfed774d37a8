//! The `rampnow-sandbox` command line: [`run`] is what the binary (and the repository's
//! `cargo run --example sandbox`) runs.
//!
//! ```text
//! rampnow-sandbox
//! rampnow-sandbox --addr 127.0.0.1:9443 --cert-out ca.pem --clock-skew 300
//! rampnow-sandbox sign POST https://127.0.0.1:8443/api/partner/v1/ext/ramp_order/quote '{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":"100.0"}'
//! rampnow-sandbox explain --curl "curl -X POST https://... -H '...' --data '...'"
//! ```
//!
//! Subcommands:
//! - `sign METHOD URL [BODY | @FILE]` prints the three auth headers for one request and a
//!   `curl` command that sends it (`rampnow-sandbox sign --help`).
//! - `explain` checks the signature of a request you sent (as flags, or the `curl` command
//!   pasted whole) with the secret in `RAMPNOW_API_SECRET`: it prints the exact string that
//!   should have been signed, every byte visible, whether the signature matches, and if not
//!   the mistake [`diagnose`](crate::diagnose) finds, with what was signed beside what was
//!   expected and a caret at the first difference. Exit status 0 when it matches, 1 when not,
//!   2 for a usage error.
//!
//! Credentials: `--api-key` and `--api-secret`, else `RAMPNOW_API_KEY` and `RAMPNOW_API_SECRET`,
//! else the documented sandbox pair (public, printed). A secret given on the command line is
//! visible to other users of the machine (`ps`); prefer the environment for a real one.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::{Sandbox, SandboxBuilder, QUOTE_PATH, SANDBOX_API_SECRET};
use rampnow_auth::{Credentials, API_KEY_ENV, API_SECRET_ENV};

mod explain;
mod sign;

const USAGE: &str = "\
usage: rampnow-sandbox [options]                  run a sandbox until Ctrl-C
       rampnow-sandbox sign METHOD URL [BODY]    print the auth headers and a curl command
                                                 for one request (sign --help for more)
       rampnow-sandbox explain ...               check a request's signature and name the
                                                 mistake (explain --help for more)
       (from a checkout: cargo run --example sandbox -- [options])

  --addr ADDR         listen on ADDR (default 127.0.0.1:8443; port 0 picks a free one)
  --api-key KEY       accept this API key (default: $RAMPNOW_API_KEY, else the sandbox key)
  --api-secret SECRET with this secret (default: $RAMPNOW_API_SECRET, else the sandbox secret)
  --cert-out PATH     write the sandbox's CA certificate (PEM) there
                      (default: rampnow-sandbox-ca.pem in the temporary directory)
  --clock-skew SECS   run the sandbox's clock SECS seconds ahead (negative: behind)
  --header-read-timeout SECS
                      close a connection that takes longer to send a request head, or
                      stays idle longer between requests (default 10)
  --tls-handshake-timeout SECS
                      close a connection whose TLS handshake takes longer (default 10)
  --max-connections N serve at most N connections at once; more wait (default 256)
  --max-request-head-bytes N
                      answer 431 to a larger request head (default 65536)
  --max-body-size N   answer 413 to a larger request body (default 1048576)
  --body-read-timeout SECS
                      answer 408 to a request body that takes longer to arrive
                      whole (default 30)
  --rate-limit N      play Rampnow's rate limit: answer 429 with Retry-After to a
                      request when N requests from its address were accepted within
                      the last second (default off; 1 to 1000; Rampnow: 20, staging 15)
  --fail-every K      answer 503 to every Kth request (K, 2K, ...; 1: all) to see
                      a client retry (default off)
  --help              show this";

struct Args {
    addr: SocketAddr,
    api_key: Option<String>,
    api_secret: Option<String>,
    cert_out: PathBuf,
    clock_skew: i64,
    /// The limits given as flags, applied as they are read; the builder keeps the defaults of
    /// the others.
    limits: SandboxBuilder,
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 8443)),
        api_key: None,
        api_secret: None,
        cert_out: std::env::temp_dir().join("rampnow-sandbox-ca.pem"),
        clock_skew: 0,
        limits: Sandbox::builder(),
    };
    let mut argv = argv.into_iter();
    while let Some(arg) = argv.next() {
        let (flag, inline) = split_flag(&arg);
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--addr" => {
                let text = value()?;
                args.addr = text.parse().map_err(|_| {
                    format!(
                        "--addr {text:?} is not an address; give IP:PORT, such as 127.0.0.1:8443"
                    )
                })?;
            }
            "--api-key" => args.api_key = Some(value()?),
            "--api-secret" => args.api_secret = Some(value()?),
            "--cert-out" => args.cert_out = PathBuf::from(value()?),
            "--clock-skew" => {
                let text = value()?;
                args.clock_skew = text.parse().map_err(|_| {
                    format!("--clock-skew {text:?} is not a number of seconds, such as 300 or -90")
                })?;
            }
            "--header-read-timeout" => {
                args.limits = args.limits.header_read_timeout(seconds(&flag, &value()?)?);
            }
            "--tls-handshake-timeout" => {
                args.limits = args
                    .limits
                    .tls_handshake_timeout(seconds(&flag, &value()?)?);
            }
            "--max-connections" => {
                args.limits = args.limits.max_connections(count(&flag, &value()?)?);
            }
            "--max-request-head-bytes" => {
                args.limits = args.limits.max_request_head_bytes(count(&flag, &value()?)?);
            }
            "--body-read-timeout" => {
                args.limits = args.limits.body_read_timeout(seconds(&flag, &value()?)?);
            }
            "--max-body-size" => {
                args.limits = args.limits.max_body_size(count(&flag, &value()?)?);
            }
            "--rate-limit" => {
                let text = value()?;
                let limit = text
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=crate::MAX_RATE_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "--rate-limit {text:?} is not a number of requests per second from 1 \
                             to {}, such as 20 (Rampnow's production limit)",
                            crate::MAX_RATE_LIMIT
                        )
                    })?;
                args.limits = args.limits.rate_limit(limit);
            }
            "--fail-every" => {
                let text = value()?;
                let k = text.parse::<u64>().ok().filter(|k| *k > 0).ok_or_else(|| {
                    format!(
                        "--fail-every {text:?} is not a whole number above 0, such as 3 (the \
                         3rd, 6th, ... request fails)"
                    )
                })?;
                args.limits = args.limits.fail_every(k);
            }
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    Ok(Some(args))
}

/// A long option and its value when written `--flag=value` (both `--flag value` and
/// `--flag=value` are accepted); any other word as it is, without a value.
fn split_flag(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
        _ => (arg.to_owned(), None),
    }
}

/// A positive number of seconds, possibly with a fraction (`0.5`).
fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|secs| *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| {
            format!("{flag} {text:?} is not a number of seconds above 0, such as 10 or 0.5")
        })
}

/// A whole number above 0.
fn count(flag: &str, text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag} {text:?} is not a whole number above 0, such as 256"))
}

/// The credentials to use: `key` and `secret` as given on the command line, else from `env`
/// (`RAMPNOW_API_KEY`, `RAMPNOW_API_SECRET`), else the public sandbox pair; and whether they
/// are that pair. One of the two without the other is an error. `sign` uses it too.
fn credentials(
    key: Option<String>,
    secret: Option<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Credentials, bool), String> {
    let key = key.or_else(|| env(API_KEY_ENV));
    let secret = secret.or_else(|| env(API_SECRET_ENV));
    match (key, secret) {
        (None, None) => Ok((crate::sandbox_credentials(), true)),
        (Some(key), Some(secret)) => Credentials::new(key, secret)
            .map(|c| (c, false))
            .map_err(|e| e.to_string()),
        (Some(_), None) => Err(format!(
            "an API key was given but no secret: pass --api-secret or set {API_SECRET_ENV} too"
        )),
        (None, Some(_)) => Err(format!(
            "an API secret was given but no key: pass --api-key or set {API_KEY_ENV} too"
        )),
    }
}

/// The parsed arguments of a command, or the exit for the others: `--help` (`Ok(None)`)
/// prints `usage` and exits 0; a usage error prints `command: message` and `usage` to stderr
/// and exits 2.
fn parsed_or_exit<T>(
    parsed: Result<Option<T>, String>,
    command: &str,
    usage: &str,
) -> Result<T, ExitCode> {
    match parsed {
        Ok(Some(args)) => Ok(args),
        Ok(None) => {
            // Not `println!`, which panics when the reader has gone (`--help | head`).
            let _ = writeln!(std::io::stdout(), "{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprintln!("{command}: {message}\n\n{usage}");
            Err(ExitCode::from(2))
        }
    }
}

/// The [`credentials`] from `key`, `secret` and the environment, or the exit for a command
/// given one of the two without the other (or ones that cannot be used): it prints
/// `command: message` to stderr and exits 2.
fn credentials_or_exit(
    key: Option<String>,
    secret: Option<String>,
    command: &str,
) -> Result<(Credentials, bool), ExitCode> {
    credentials(key, secret, env_var).map_err(|message| {
        eprintln!("{command}: {message}");
        ExitCode::from(2)
    })
}

/// An environment variable, `None` when unset, empty or not UTF-8.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Runs the `rampnow-sandbox` command with these arguments (without the program name): a
/// subcommand (`sign`, `explain`) when the first argument names one, else the sandbox: parses
/// the options, starts a [`Sandbox`], writes its CA certificate, prints its URL, credentials
/// and a `curl` command, and serves until Ctrl-C. Returns the process's exit code: 2 for bad
/// options, 1 when the sandbox cannot start (or the subcommand fails; for `explain`, when
/// the signature does not match).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let code = rampnow_sandbox::cli::run(["--help".to_owned()]).await;
/// assert_eq!(code, std::process::ExitCode::SUCCESS);
/// # }
/// ```
pub async fn run(argv: impl IntoIterator<Item = String>) -> ExitCode {
    let mut argv = argv.into_iter().peekable();
    match argv.peek().map(String::as_str) {
        Some("sign") => sign::run(argv.skip(1)),
        Some("explain") => explain::run(argv.skip(1)),
        _ => serve(argv).await,
    }
}

/// The sandbox itself: `rampnow-sandbox [options]`, serving until Ctrl-C.
async fn serve(argv: impl IntoIterator<Item = String>) -> ExitCode {
    let mut args = match parsed_or_exit(parse_args(argv), "rampnow-sandbox", USAGE) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let (credentials, public_pair) = match credentials_or_exit(
        args.api_key.take(),
        args.api_secret.take(),
        "rampnow-sandbox",
    ) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let played = (args.limits.rate_limit, args.limits.fail_every);
    let sandbox = match args
        .limits
        .addr(args.addr)
        .credentials(credentials)
        .clock_skew_secs(args.clock_skew)
        .start()
        .await
    {
        Ok(sandbox) => sandbox,
        Err(error) => {
            eprintln!("rampnow-sandbox: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = std::fs::write(&args.cert_out, sandbox.ca_cert_pem()) {
        eprintln!(
            "sandbox: could not write the CA certificate to {}: {error}; choose another path \
             with --cert-out",
            args.cert_out.display()
        );
        return ExitCode::FAILURE;
    }
    let cert = std::path::absolute(&args.cert_out).unwrap_or(args.cert_out.clone());
    print_banner(
        &sandbox,
        public_pair,
        &cert.display().to_string(),
        args.clock_skew,
        played,
    );

    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("rampnow-sandbox: cannot wait for Ctrl-C ({error}); stopping");
    }
    sandbox.shutdown().await;
    println!("\nsandbox stopped");
    ExitCode::SUCCESS
}

fn print_banner(
    sandbox: &Sandbox,
    public_pair: bool,
    cert: &str,
    clock_skew: i64,
    (rate_limit, fail_every): (Option<u32>, Option<u64>),
) {
    let url = sandbox.url();
    let key = sandbox.credentials().api_key();
    let (secret_line, secret_arg) = if public_pair {
        (
            format!("{SANDBOX_API_SECRET}   (the documented sandbox secret: public, sandbox only)"),
            format!("'{SANDBOX_API_SECRET}'"),
        )
    } else {
        (
            "(yours, not printed)".to_owned(),
            format!("\"${API_SECRET_ENV}\""),
        )
    };
    println!("Rampnow sandbox listening on {url}");
    println!("  API key     {key}");
    println!("  API secret  {secret_line}");
    println!("  CA cert     {cert}   (new on every start: trust this file in your client)");
    if clock_skew != 0 {
        let direction = if clock_skew > 0 { "ahead of" } else { "behind" };
        println!(
            "  clock       {} s {direction} this machine's clock",
            clock_skew.unsigned_abs()
        );
    }
    println!("  replays     refused (sign every request afresh)");
    if let Some(limit) = rate_limit {
        println!(
            "  rate limit  {limit} requests per second per address (429 with Retry-After past it)"
        );
    }
    if let Some(k) = fail_every {
        println!("  failures    every request numbered a multiple of {k} is answered 503");
    }
    println!();
    if public_pair {
        println!("Try it from a shell (openssl signs, curl sends):");
    } else {
        println!("Try it from a shell (openssl signs, curl sends; {API_SECRET_ENV} must hold the secret):");
    }
    println!("  target='{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100'");
    println!("  ts=$(date +%s)");
    println!(
        "  sig=$(printf '%s' \"${{ts}}GET${{target}}\" | openssl dgst -sha256 -hmac {secret_arg} | sed 's/^.* //')"
    );
    println!(
        "  curl --cacert '{cert}' -H 'RN-API-KEY: {key}' -H \"RN-ACCESS-TIMESTAMP: $ts\" -H \"RN-ACCESS-SIGN: $sig\" \"{url}$target\""
    );
    println!();
    println!("Or let this program sign one request and print the curl command:");
    println!(
        "  rampnow-sandbox sign --cacert '{cert}' GET '{url}{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100'"
    );
    println!();
    println!("Or from Rust: sign with RampnowAuthLayer and these credentials, send to {url},");
    println!("trusting rampnow_sandbox::client_config_from_ca_file(\"{cert}\").");
    println!();
    println!("Requests are logged below. Ctrl-C stops the sandbox.");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn limit_flags_reach_the_builder_and_the_others_keep_their_defaults() {
        let args = parse(&[
            "--header-read-timeout",
            "0.5",
            "--tls-handshake-timeout=2",
            "--max-connections",
            "7",
            "--max-request-head-bytes",
            "9000",
            "--body-read-timeout",
            "3",
            "--max-body-size",
            "100",
        ])
        .unwrap()
        .unwrap();
        let limits = format!("{:?}", args.limits);
        for expected in [
            "header_read_timeout: 500ms",
            "tls_handshake_timeout: 2s",
            "max_connections: 7",
            "max_request_head_bytes: 9000",
            "body_read_timeout: 3s",
            "max_body_size: 100",
        ] {
            assert!(limits.contains(expected), "{expected} not in {limits}");
        }
        let defaults = format!("{:?}", parse(&[]).unwrap().unwrap().limits);
        assert!(defaults.contains(&format!(
            "max_connections: {}",
            crate::DEFAULT_MAX_CONNECTIONS
        )));
        assert!(defaults.contains(&format!("max_body_size: {}", crate::DEFAULT_MAX_BODY_SIZE)));
    }

    #[test]
    fn the_played_limits_are_off_unless_given() {
        let args = parse(&["--rate-limit", "20", "--fail-every=3"])
            .unwrap()
            .unwrap();
        assert_eq!(args.limits.rate_limit, Some(20));
        assert_eq!(args.limits.fail_every, Some(3));
        let args = parse(&["--rate-limit=1000", "--fail-every", "1"])
            .unwrap()
            .unwrap();
        assert_eq!(args.limits.rate_limit, Some(crate::MAX_RATE_LIMIT));
        assert_eq!(args.limits.fail_every, Some(1));
        let defaults = parse(&[]).unwrap().unwrap();
        assert_eq!(defaults.limits.rate_limit, None);
        assert_eq!(defaults.limits.fail_every, None);
        assert!(USAGE.contains("--rate-limit N") && USAGE.contains("--fail-every K"));
    }

    #[test]
    fn bad_values_say_what_to_give() {
        for bad in [
            &["--max-connections", "0"][..],
            &["--header-read-timeout", "-1"],
            &["--max-body-size", "lots"],
            &["--addr", "nowhere"],
            &["--no-such-flag"],
            &["--cert-out"],
            &["--rate-limit", "0"],
            &["--rate-limit", "1001"],
            &["--rate-limit", "-5"],
            &["--rate-limit", "twenty"],
            &["--rate-limit"],
            &["--fail-every", "0"],
            &["--fail-every", "-1"],
            &["--fail-every", "1.5"],
            &["--fail-every="],
        ] {
            let message = parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(
                message.contains("such as")
                    || message.contains("unknown")
                    || message.contains("needs a value"),
                "{bad:?}: {message}"
            );
        }
    }
}
