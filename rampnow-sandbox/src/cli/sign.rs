//! `rampnow-sandbox sign METHOD URL [BODY | @FILE]`: prints the three Rampnow auth headers for
//! one request and a `curl` command that sends exactly that request, for checking a signature
//! by hand or calling the sandbox (or Rampnow) from a shell.
//!
//! The request is signed by rampnow-auth's signing core (`rampnow_auth::signing::sign`), the
//! function the tower layer and the reqwest middleware call, so what is printed is what they
//! would send. Nothing is sent.

use std::borrow::Cow;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{credentials_or_exit, parsed_or_exit, split_flag};
use http::{Method, Request};
use rampnow_auth::signing::{sign, SignableRequest, SigningParams, SigningSettings};
use rampnow_auth::{Credentials, HeaderNames, API_KEY_ENV, API_SECRET_ENV, DEFAULT_MAX_BODY_SIZE};

pub(super) const USAGE: &str = "\
usage: rampnow-sandbox sign [options] METHOD URL [BODY | @FILE]

Prints the three Rampnow auth headers for one request, and a curl command that sends it.
Nothing is sent. The body is BODY as given, or the bytes of FILE with @FILE.

  --api-key KEY         sign with this API key (default: $RAMPNOW_API_KEY, else the sandbox key)
  --api-secret SECRET   and this secret (default: $RAMPNOW_API_SECRET, else the sandbox secret;
                        prefer the environment for a real secret: other users see arguments)
  --timestamp SECONDS   sign at this time, whole seconds since 1970 (default: now)
  --x-rampnow           use the X-RAMPNOW-* header names (default: RN-*)
  --cacert PATH         add --cacert PATH to the curl command (for a sandbox: its CA file,
                        the one written by --cert-out)
  --                    end of options (for a BODY that starts with --)
  --help                show this

examples:
  rampnow-sandbox sign GET 'https://127.0.0.1:8443/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC&srcAmount=100'
  rampnow-sandbox sign POST https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote @body.json";

/// Where the body comes from; a file is read only when signing, not while parsing.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    Inline(String),
    File(PathBuf),
}

#[derive(Debug)]
struct Args {
    api_key: Option<String>,
    api_secret: Option<String>,
    timestamp: Option<u64>,
    names: HeaderNames,
    cacert: Option<String>,
    method: String,
    url: String,
    body: Body,
}

/// The parsed arguments, `None` for `--help`, or a message saying what is wrong.
fn parse(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut api_key = None;
    let mut api_secret = None;
    let mut timestamp = None;
    let mut names = HeaderNames::RN;
    let mut cacert = None;
    let mut positional = Vec::new();
    let mut argv = argv.into_iter();
    let mut options_done = false;
    while let Some(arg) = argv.next() {
        if options_done || !arg.starts_with("--") {
            // A lone "-h" is help; any other word (even "-x") is a positional argument.
            if !options_done && arg == "-h" {
                return Ok(None);
            }
            positional.push(arg);
            continue;
        }
        let (flag, inline) = split_flag(&arg);
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--" if inline.is_none() => options_done = true,
            "--help" => return Ok(None),
            "--api-key" => api_key = Some(value()?),
            "--api-secret" => api_secret = Some(value()?),
            "--timestamp" => {
                let text = value()?;
                let secs = text
                    .parse::<u64>()
                    .ok()
                    .filter(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(*secs)).is_some());
                timestamp = Some(secs.ok_or_else(|| {
                    format!(
                        "--timestamp {text:?} is not whole seconds since 1970, such as 1727759033"
                    )
                })?);
            }
            "--cacert" => cacert = Some(value()?),
            "--x-rampnow" if inline.is_none() => names = HeaderNames::X_RAMPNOW,
            "--x-rampnow" => return Err("--x-rampnow takes no value".to_owned()),
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    let mut positional = positional.into_iter();
    let (Some(method), Some(url)) = (positional.next(), positional.next()) else {
        return Err("give the METHOD and the URL to sign, such as GET https://...".to_owned());
    };
    let body = match positional.next() {
        None => Body::Inline(String::new()),
        Some(body) => match body.strip_prefix('@') {
            Some("") => return Err("@ needs a file name after it, such as @body.json".into()),
            Some(path) => Body::File(PathBuf::from(path)),
            None => Body::Inline(body),
        },
    };
    if let Some(extra) = positional.next() {
        return Err(format!(
            "too many arguments (from {extra:?}); quote a BODY that has spaces: 'a b'"
        ));
    }
    Ok(Some(Args {
        api_key,
        api_secret,
        timestamp,
        names,
        cacert,
        method,
        url,
        body,
    }))
}

/// Reads the body from `path`, up to the signer's limit.
pub(super) fn read_body(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let limit = DEFAULT_MAX_BODY_SIZE as u64;
    let file = std::fs::File::open(path).map_err(|e| {
        format!(
            "cannot read the body from {}: {e}; check the path after @",
            path.display()
        )
    })?;
    let mut body = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read the body from {}: {e}", path.display()))?;
    if body.len() as u64 > limit {
        return Err(format!(
            "the body in {} is larger than {limit} bytes, more than the signer accepts",
            path.display()
        ));
    }
    Ok(body)
}

/// `text` as it is when the shell reads it as itself (letters, digits, `-`, `_`, `.`), else
/// [`shell_quote`]d.
fn shell_word(text: &str) -> Cow<'_, str> {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(shell_quote(text))
    }
}

/// Quotes `text` as one word for a POSIX shell (sh, bash, zsh): inside single quotes nothing is
/// special except `'` itself, which is written `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The signed request: its request line, the three headers, and a curl command sending it.
#[derive(Debug)]
struct Output {
    request_line: String,
    headers: Vec<(String, String)>,
    body_len: usize,
    curl: String,
}

fn sign_request(
    args: &Args,
    credentials: &Credentials,
    time: SystemTime,
    body: Vec<u8>,
) -> Result<Output, String> {
    let method = Method::from_bytes(args.method.as_bytes()).map_err(|_| {
        format!(
            "{:?} is not an HTTP method; give one such as GET or POST",
            args.method
        )
    })?;
    let mut request = Request::builder()
        .method(method)
        .uri(args.url.as_str())
        .body(body)
        .map_err(|e| {
            format!(
                "{:?} is not a URL that can be signed ({e}); give an absolute https:// URL",
                args.url
            )
        })?;
    let settings = SigningSettings::new()
        .header_names(args.names.clone())
        .allow_http(true);
    let signable = SignableRequest::new(request.method(), request.uri(), request.body());
    let instructions = sign(&signable, &SigningParams::new(credentials, time, &settings))
        .map_err(|e| e.to_string())?;
    instructions
        .apply_to_request(&mut request)
        .map_err(|e| e.to_string())?;

    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let request_line = format!("{} {target}", request.method());
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();

    // --globoff: curl would otherwise expand `[..]` and `{..}` in the URL; --path-as-is: curl
    // would otherwise squash `/../` and `/./`. Either would send a target other than the one
    // signed.
    let mut curl = String::from("curl -sS --globoff --path-as-is");
    if let Some(cacert) = &args.cacert {
        curl.push_str(&format!(" --cacert {}", shell_quote(cacert)));
    }
    if request.method() == Method::HEAD {
        // `-X HEAD` would make curl wait for a body that never comes.
        curl.push_str(" --head");
    } else {
        // Quoted unless plain: an extension method may hold `$`, `'`, `&`, `|`, `*`, ...
        curl.push_str(&format!(" -X {}", shell_word(request.method().as_str())));
    }
    curl.push_str(&format!(" {}", shell_quote(&request.uri().to_string())));
    for (name, value) in &headers {
        curl.push_str(&format!(
            " \\\n  -H {}",
            shell_quote(&format!("{name}: {value}"))
        ));
    }
    let body = request.body();
    if !body.is_empty() {
        if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
            curl.push_str(" \\\n  -H 'Content-Type: application/json'");
        }
        match &args.body {
            // The file itself: curl sends its bytes unchanged, binary or not.
            Body::File(path) => curl.push_str(&format!(
                " \\\n  --data-binary {}",
                shell_quote(&format!("@{}", path.display()))
            )),
            // --data-raw: the text as it is (no `@file` meaning, no newline stripping).
            Body::Inline(text) => {
                curl.push_str(&format!(" \\\n  --data-raw {}", shell_quote(text)));
            }
        }
    }
    Ok(Output {
        request_line,
        headers,
        body_len: body.len(),
        curl,
    })
}

/// Runs `rampnow-sandbox sign` with the arguments after `sign`. Exit code 2 for bad arguments,
/// 1 when the request cannot be signed.
pub(super) fn run(argv: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match parsed_or_exit(parse(argv), "rampnow-sandbox sign", USAGE) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let (credentials, public_pair) = match credentials_or_exit(
        args.api_key.clone(),
        args.api_secret.clone(),
        "rampnow-sandbox sign",
    ) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let body = match &args.body {
        Body::Inline(text) => text.clone().into_bytes(),
        Body::File(path) => match read_body(path) {
            Ok(body) => body,
            Err(message) => {
                eprintln!("rampnow-sandbox sign: {message}");
                return ExitCode::FAILURE;
            }
        },
    };
    let time = match args.timestamp {
        // In range: checked when parsing.
        Some(secs) => UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .unwrap_or(UNIX_EPOCH),
        None => SystemTime::now(),
    };
    let output = match sign_request(&args, &credentials, time, body) {
        Ok(output) => output,
        Err(message) => {
            eprintln!("rampnow-sandbox sign: {message}");
            return ExitCode::FAILURE;
        }
    };
    if public_pair {
        eprintln!(
            "rampnow-sandbox sign: signing with the public sandbox key {} (set {API_KEY_ENV} and \
             {API_SECRET_ENV}, or pass --api-key and --api-secret, for your own)",
            credentials.api_key()
        );
    }
    let mut text = format!("{}\n", output.request_line);
    for (name, value) in &output.headers {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push_str(&format!(
        "body: {} bytes\n\n{}\n",
        output.body_len, output.curl
    ));
    // Not `print!`, which panics when the reader has gone (`| head`).
    if std::io::stdout().write_all(text.as_bytes()).is_err() {
        return ExitCode::FAILURE;
    }
    if args.timestamp.is_none() {
        eprintln!("rampnow-sandbox sign: the signature is valid for 60 s; run curl before then");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::credentials;
    use std::process::Command;

    fn parse_args(args: &[&str]) -> Result<Option<Args>, String> {
        parse(args.iter().map(|a| (*a).to_owned()))
    }

    fn args(list: &[&str]) -> Args {
        parse_args(list).unwrap().unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn options_and_positionals_in_any_order() {
        let parsed = args(&[
            "POST",
            "--timestamp=1727759033",
            "https://h/x",
            "--x-rampnow",
            "--api-key",
            "k",
            "--api-secret=s=with=equals",
            "{\"a\":1}",
            "--cacert",
            "ca.pem",
        ]);
        assert_eq!(parsed.method, "POST");
        assert_eq!(parsed.url, "https://h/x");
        assert_eq!(parsed.timestamp, Some(1727759033));
        assert_eq!(parsed.names, HeaderNames::X_RAMPNOW);
        assert_eq!(parsed.api_key.as_deref(), Some("k"));
        assert_eq!(parsed.api_secret.as_deref(), Some("s=with=equals"));
        assert_eq!(parsed.cacert.as_deref(), Some("ca.pem"));
        assert_eq!(parsed.body, Body::Inline("{\"a\":1}".into()));

        let defaults = args(&["GET", "https://h/"]);
        assert_eq!(defaults.names, HeaderNames::RN);
        assert_eq!(defaults.timestamp, None);
        assert_eq!(defaults.body, Body::Inline(String::new()));
    }

    #[test]
    fn at_file_and_double_dash() {
        assert_eq!(
            args(&["POST", "https://h/", "@dir/body.json"]).body,
            Body::File("dir/body.json".into())
        );
        // After `--`, a body that looks like an option is the body.
        let parsed = args(&["--", "POST", "https://h/", "--not-an-option"]);
        assert_eq!(parsed.body, Body::Inline("--not-an-option".into()));
        assert!(parse_args(&["--help"]).unwrap().is_none());
        assert!(parse_args(&["GET", "-h"]).unwrap().is_none());
    }

    #[test]
    fn bad_arguments_say_what_to_give() {
        for (bad, expected) in [
            (&["GET"][..], "METHOD and the URL"),
            (&[], "METHOD and the URL"),
            (&["GET", "https://h/", "a", "b"], "too many arguments"),
            (
                &["--timestamp", "soon", "GET", "https://h/"],
                "such as 1727759033",
            ),
            (
                &["--timestamp", "-1", "GET", "https://h/"],
                "such as 1727759033",
            ),
            (
                &["--timestamp", "18446744073709551615", "GET", "https://h/"],
                "such as 1727759033",
            ),
            (&["GET", "https://h/", "--api-key"], "needs a value"),
            (&["--verbose", "GET", "https://h/"], "unknown option"),
            (&["--x-rampnow=yes", "GET", "https://h/"], "takes no value"),
            (&["POST", "https://h/", "@"], "needs a file name"),
        ] {
            let message = parse_args(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(message.contains(expected), "{bad:?}: {message}");
        }
    }

    #[test]
    fn credentials_from_flags_then_environment_then_the_sandbox_pair() {
        let env = |name: &str| Some(format!("env-{name}"));
        let (flags, public) = credentials(Some("k".into()), Some("s".into()), env).unwrap();
        assert_eq!((flags.api_key(), public), ("k", false));
        let (from_env, public) = credentials(None, None, env).unwrap();
        assert_eq!((from_env.api_key(), public), ("env-RAMPNOW_API_KEY", false));
        let (sandbox, public) = credentials(None, None, no_env).unwrap();
        assert_eq!((sandbox.api_key(), public), (crate::SANDBOX_API_KEY, true));
        let half = credentials(Some("k".into()), None, no_env).unwrap_err();
        assert!(half.contains("--api-secret"), "{half}");
        let half = credentials(None, Some("s".into()), no_env).unwrap_err();
        assert!(half.contains("--api-key"), "{half}");
    }

    #[test]
    fn shell_quote_round_trips_through_sh() {
        let nasty = "it's $HOME `id` \"q\" \\ \n\t!* ''";
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        let Ok(output) = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(nasty)))
            .output()
        else {
            eprintln!("skipped the sh round trip: no `sh` on this machine");
            return;
        };
        assert_eq!(String::from_utf8_lossy(&output.stdout), nasty);
    }

    /// An extension method is a token, and tokens may hold `$`, `'`, `&`, `|`, `*`, `!`, ...:
    /// the shell must read the method printed after `-X` as the method signed.
    #[test]
    fn an_extension_method_is_quoted_for_the_shell() {
        let credentials =
            Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv").unwrap();
        let time = UNIX_EPOCH + Duration::from_secs(1727759033);
        for method in ["G$HOME", "G'X", "G&X", "G|X", "G*", "G!X", "G#X", "POST"] {
            let parsed = args(&[method, "https://api.rampnow.io/x"]);
            let output = sign_request(&parsed, &credentials, time, Vec::new()).unwrap();
            let words = output.curl.strip_prefix("curl ").expect("a curl command");
            let Ok(read) = Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s\\n' {words}"))
                .output()
            else {
                eprintln!("skipped the sh round trip: no `sh` on this machine");
                return;
            };
            let read = String::from_utf8_lossy(&read.stdout).into_owned();
            let read: Vec<&str> = read.lines().collect();
            let at = read.iter().position(|w| *w == "-X").expect("-X");
            assert_eq!(
                read.get(at + 1..at + 3),
                Some(&[method, "https://api.rampnow.io/x"][..]),
                "{}",
                output.curl
            );
        }
    }

    #[test]
    fn curl_command_quotes_and_keeps_the_request_exact() {
        let credentials =
            Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv").unwrap();
        let time = UNIX_EPOCH + Duration::from_secs(1727759033);
        let parsed = args(&[
            "--cacert",
            "my ca's.pem",
            "POST",
            "https://api.rampnow.io/a/../b?q=it's&x[0]={y}",
            r#"{"note": "it's"}"#,
        ]);
        let output = sign_request(
            &parsed,
            &credentials,
            time,
            b"{\"note\": \"it's\"}".to_vec(),
        )
        .unwrap();
        assert_eq!(output.request_line, "POST /a/../b?q=it's&x[0]={y}");
        assert_eq!(output.body_len, 16);
        let curl = &output.curl;
        assert!(
            curl.starts_with("curl -sS --globoff --path-as-is"),
            "{curl}"
        );
        assert!(curl.contains(r" --cacert 'my ca'\''s.pem'"), "{curl}");
        assert!(
            curl.contains(r" -X POST 'https://api.rampnow.io/a/../b?q=it'\''s&x[0]={y}'"),
            "{curl}"
        );
        assert!(
            curl.contains(r#"--data-raw '{"note": "it'\''s"}'"#),
            "{curl}"
        );
        assert!(
            curl.contains("-H 'Content-Type: application/json'"),
            "{curl}"
        );
        for (name, value) in &output.headers {
            assert!(curl.contains(&format!("-H '{name}: {value}'")), "{curl}");
        }
        let names: Vec<&str> = output.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["rn-api-key", "rn-access-timestamp", "rn-access-sign"]
        );

        // A body from a file is sent from the same file; HEAD is `--head`, not `-X HEAD`.
        let file = args(&["PUT", "https://h/x", "@some file"]);
        let output = sign_request(&file, &credentials, time, vec![0xff, 0]).unwrap();
        assert!(
            output.curl.ends_with("--data-binary '@some file'"),
            "{}",
            output.curl
        );
        assert!(!output.curl.contains("Content-Type"), "{}", output.curl);
        let head = args(&["HEAD", "https://h/x"]);
        let output = sign_request(&head, &credentials, time, Vec::new()).unwrap();
        assert!(
            output.curl.contains(" --head 'https://h/x'"),
            "{}",
            output.curl
        );
        assert!(!output.curl.contains("--data"), "{}", output.curl);
    }

    #[test]
    fn refusals_of_the_signer_are_reported_not_panicked() {
        let credentials = crate::sandbox_credentials();
        for (method, url, expected) in [
            ("GET", "http://example.com/x", "http"),
            ("GET", "/relative", "absolute"),
            ("get", "https://h/x", "upper"),
            ("G T", "https://h/x", "not an HTTP method"),
            ("GET", "https://h/ x", "not a URL"),
        ] {
            let parsed = args(&[method, url]);
            let message = sign_request(&parsed, &credentials, UNIX_EPOCH, Vec::new())
                .err()
                .unwrap_or_else(|| panic!("{method} {url} signed"));
            assert!(
                message.to_lowercase().contains(&expected.to_lowercase()),
                "{method} {url}: {message}"
            );
        }
    }

    #[test]
    fn a_missing_body_file_says_which() {
        let message = read_body(std::path::Path::new("/nonexistent/body.json")).unwrap_err();
        assert!(message.contains("/nonexistent/body.json"), "{message}");
    }
}
