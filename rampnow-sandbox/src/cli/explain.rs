//! `rampnow-sandbox explain`: given a request a client sent (flags, or a pasted `curl`
//! command) and the secret from the environment, prints the exact string that should have
//! been signed, whether the signature matches, and if not which common mistake explains it
//! (see [`diagnose`](crate::diagnose)), with what was signed beside what was expected.
//!
//! Exit codes: 0 the signature matches, 1 it does not, 2 a usage error.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use http::Uri;
use rampnow_auth::{Credentials, HeaderNames, API_KEY_ENV, API_SECRET_ENV};

use super::{env_var, parsed_or_exit, split_flag};
use crate::diagnose::{self, Outcome, Received};
use crate::{SANDBOX_API_KEY, SANDBOX_API_SECRET};

const USAGE: &str = "\
usage: rampnow-sandbox explain [--method METHOD] --url URL -H 'NAME: VALUE'... [--data BODY | --data @FILE]
       rampnow-sandbox explain --curl \"curl -X POST https://... -H '...' --data '...'\"

Checks the signature of a request you sent and names the mistake if it is wrong. Give the
request as flags, or paste the whole curl command after --curl (single and double quotes,
backslashes and backslash-newline are read as a shell would; curl's -X/--request,
-I/--head, -H/--header, -d/--data/--data-raw/--data-binary/--json and the URL are used,
other options ignored).

  --method METHOD   the method (default GET, or POST with --data)
  --url URL         the URL the request was sent to (https://host/path?query)
  -H, --header 'NAME: VALUE'
                    a header sent; give the API key, timestamp and signature headers
                    (RN-API-KEY, RN-ACCESS-TIMESTAMP, RN-ACCESS-SIGN, or the X-RAMPNOW-* set)
  --data BODY       the body sent, exactly; --data @FILE reads it from FILE as is
  --curl COMMAND    the curl command that sent the request

The secret comes from $RAMPNOW_API_SECRET (and the key from $RAMPNOW_API_KEY, else the
request's API key header); with neither set, the documented sandbox pair is used.
Exit status: 0 the signature matches, 1 it does not, 2 usage error.";

/// The request as given.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Request {
    method: Option<String>,
    url: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

/// Runs `rampnow-sandbox explain` with these arguments (after `explain`).
pub(super) fn run(argv: impl IntoIterator<Item = String>) -> ExitCode {
    let request = match parsed_or_exit(parse_args(argv), "rampnow-sandbox explain", USAGE) {
        Ok(request) => request,
        Err(code) => return code,
    };
    let mut out = String::new();
    let code = match explain(
        &request,
        env_var(API_KEY_ENV),
        env_var(API_SECRET_ENV),
        &mut out,
    ) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("rampnow-sandbox explain: {message}");
            return ExitCode::from(2);
        }
    };
    let _ = std::io::stdout().write_all(out.as_bytes());
    ExitCode::from(code)
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Request>, String> {
    let mut request = Request::default();
    let mut argv = argv.into_iter();
    while let Some(arg) = argv.next() {
        let (flag, inline) = split_flag(&arg);
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--method" | "-X" => request.method = Some(value()?),
            "--url" => request.url = Some(value()?),
            "-H" | "--header" => request.headers.push(header(&value()?)?),
            "--data" | "-d" => {
                let text = value()?;
                request.body = Some(match text.strip_prefix('@') {
                    Some(path) => read_file(path)?,
                    None => text.into_bytes(),
                });
            }
            "--curl" => {
                let curl = parse_curl(&value()?)?;
                request.method = curl.method.or(request.method);
                request.url = curl.url.or(request.url);
                request.headers.extend(curl.headers);
                request.body = curl.body.or(request.body);
            }
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    Ok(Some(request))
}

/// A body file, up to the signer's limit (a larger body could not be signed anyway): a
/// pasted `-d @/dev/zero` is an error, not a read until memory runs out.
fn read_file(path: &str) -> Result<Vec<u8>, String> {
    super::sign::read_body(std::path::Path::new(path))
}

fn header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("the header {text:?} has no colon; give it as 'NAME: VALUE'"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// Splits a command line as a POSIX shell does: single quotes keep everything, double quotes
/// keep everything but `\"`, `\\`, `\$`, `` \` `` and backslash-newline, a backslash outside
/// quotes keeps the next character, and backslash-newline joins lines. `$'...'`, variables
/// and substitutions are not expanded (they are kept as written).
pub(super) fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote is not closed".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => {}
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a double quote is not closed".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote is not closed".to_owned()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err("the command ends with a lone backslash".to_owned()),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// curl options that take a value, besides those read (the value is skipped).
const CURL_VALUE_OPTIONS: &[&str] = &[
    "--cacert",
    "--capath",
    "--cert",
    "--key",
    "-E",
    "-o",
    "--output",
    "-u",
    "--user",
    "-A",
    "--user-agent",
    "-e",
    "--referer",
    "-m",
    "--max-time",
    "--connect-timeout",
    "-b",
    "--cookie",
    "-c",
    "--cookie-jar",
    "-w",
    "--write-out",
    "--resolve",
    "--connect-to",
    "-x",
    "--proxy",
    "--retry",
    "-T",
    "--upload-file",
    "--limit-rate",
    "--interface",
    "-r",
    "--range",
];

/// The request in a curl command: `-X`/`--request`, `-I`/`--head`, `-H`/`--header`, the `-d`
/// family, `--json` and the URL. Several `-d` are joined with `&` and several `--json`
/// concatenated, as curl does; `-d @FILE` reads FILE without its newlines (as curl does),
/// `--data-binary @FILE` and `--json @FILE` as is, and `--data-raw` never reads a file. A body
/// curl builds itself (`--data-urlencode`, `-F`/`--form`, `-G` moving the data into the URL)
/// is an error: explain needs the bytes as sent.
pub(super) fn parse_curl(command: &str) -> Result<Request, String> {
    let words = shell_words(command)?;
    let mut words = words.into_iter().peekable();
    if words
        .peek()
        .is_some_and(|w| w == "curl" || w.ends_with("/curl"))
    {
        words.next();
    }
    let mut request = Request::default();
    let mut head = false;
    let mut body: Option<Vec<u8>> = None;
    // Each piece of data after the first: `&` between, except before a `--json` piece.
    let mut add = |piece: Vec<u8>, separator: &[u8]| match &mut body {
        Some(body) => {
            body.extend_from_slice(separator);
            body.extend_from_slice(&piece);
        }
        None => body = Some(piece),
    };
    while let Some(word) = words.next() {
        let (flag, inline) = match word.as_bytes() {
            // Short options with the value attached: -XPOST, -H'...', -d'...'.
            [b'-', b'X' | b'H' | b'd', _, ..] => (word[..2].to_owned(), Some(word[2..].to_owned())),
            _ => split_flag(&word),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| words.next())
                .ok_or_else(|| format!("curl's {flag} needs a value"))
        };
        match flag.as_str() {
            "-X" | "--request" => request.method = Some(value()?),
            "-H" | "--header" => request.headers.push(header(&value()?)?),
            "-I" | "--head" => head = true,
            "-d" | "--data" | "--data-ascii" => {
                let text = value()?;
                let piece = match text.strip_prefix('@') {
                    Some(path) => {
                        let mut bytes = read_file(path)?;
                        bytes.retain(|b| *b != b'\n' && *b != b'\r');
                        bytes
                    }
                    None => text.into_bytes(),
                };
                add(piece, b"&");
            }
            "--data-binary" | "--json" => {
                let text = value()?;
                let piece = match text.strip_prefix('@') {
                    Some(path) => read_file(path)?,
                    None => text.into_bytes(),
                };
                add(piece, if flag == "--json" { b"" } else { b"&" });
            }
            "--data-raw" => add(value()?.into_bytes(), b"&"),
            "--data-urlencode" | "-F" | "--form" | "--form-string" | "-G" | "--get" => {
                return Err(format!(
                    "curl's {flag} makes a body (or query) explain cannot rebuild byte for byte; \
                     give the request as sent: --url with the query, and the body with --data \
                     or --data @FILE"
                ));
            }
            "--url" => request.url = Some(value()?),
            _ if CURL_VALUE_OPTIONS.contains(&flag.as_str()) => {
                value()?;
            }
            _ if word.starts_with('-') && word.len() > 1 => {} // a switch: -s, -k, -v, ...
            _ => request.url = Some(word),
        }
    }
    request.body = body;
    if head && request.method.is_none() {
        request.method = Some("HEAD".to_owned());
    }
    Ok(request)
}

/// Explains the request into `out`; the exit code, or a usage error.
fn explain(
    request: &Request,
    env_key: Option<String>,
    env_secret: Option<String>,
    out: &mut String,
) -> Result<u8, String> {
    use std::fmt::Write as _;

    let url = request
        .url
        .as_deref()
        .ok_or("no URL: give --url, or the URL in the curl command")?;
    let uri: Uri = url.parse().map_err(|error| {
        format!(
            "the URL {url:?} is not a URL ({error}); give it as sent, such as \
                 https://127.0.0.1:8443/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD"
        )
    })?;
    let target = match uri.path_and_query().map(|pq| pq.as_str()) {
        Some(pq) if pq.starts_with('/') => pq.to_owned(),
        Some(pq) => format!("/{pq}"),
        None => "/".to_owned(),
    };
    let body = request.body.as_deref().unwrap_or_default();
    let method = request.method.clone().unwrap_or_else(|| {
        if request.body.is_some() {
            "POST"
        } else {
            "GET"
        }
        .to_owned()
    });
    let find = |name: &http::HeaderName| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_str()))
            .map(|(_, v)| v.as_str())
    };
    let names = [HeaderNames::RN, HeaderNames::X_RAMPNOW]
        .into_iter()
        .find(|names| find(names.api_key()).is_some() || find(names.signature()).is_some())
        .ok_or("no signature header: give -H 'RN-ACCESS-SIGN: ...' (or X-RAMPNOW-SIGN)")?;
    let timestamp = find(names.timestamp())
        .ok_or_else(|| format!("no {} header: give the timestamp sent", names.timestamp()))?;
    let signature = find(names.signature())
        .ok_or_else(|| format!("no {} header: give the signature sent", names.signature()))?;
    let sent_key = find(names.api_key());

    let (key, secret, whose) = match (env_key, env_secret) {
        (key, Some(secret)) => {
            let key = key
                .or_else(|| sent_key.map(str::to_owned))
                .unwrap_or_else(|| SANDBOX_API_KEY.to_owned());
            (key, secret, format!("${API_SECRET_ENV}"))
        }
        (None, None) => (
            SANDBOX_API_KEY.to_owned(),
            SANDBOX_API_SECRET.to_owned(),
            format!("the documented sandbox secret (${API_SECRET_ENV} is not set)"),
        ),
        (Some(_), None) => {
            return Err(format!(
                "${API_KEY_ENV} is set but ${API_SECRET_ENV} is not: set the secret too"
            ))
        }
    };
    let credentials = Credentials::new(key.clone(), secret.as_bytes())
        .map_err(|error| format!("the credentials cannot be used: {error}"))?;
    drop(secret);

    let _ = writeln!(
        out,
        "request:   {method} {target}{}, body {} bytes",
        uri.authority()
            .map(|a| format!(" (host {a})"))
            .unwrap_or_default(),
        body.len()
    );
    let _ = writeln!(out, "API key:   {key}, signing with {whose}");
    if let Some(sent) = sent_key.filter(|sent| *sent != key) {
        let _ = writeln!(
            out,
            "warning:   the request's {} is {sent}, not {key}: the secret may not be its own",
            names.api_key()
        );
    }
    if let (Ok(seconds), Ok(now)) = (
        timestamp.parse::<u64>(),
        SystemTime::now().duration_since(UNIX_EPOCH),
    ) {
        let now = now.as_secs();
        if let Some(hint) = diagnose::stale_timestamp_hint(timestamp, now) {
            let _ = writeln!(out, "timestamp: {timestamp}: {}", hint.sentence());
        } else if seconds.abs_diff(now) > 60 {
            let _ = writeln!(
                out,
                "timestamp: {timestamp} is {} s from this machine's clock; a server accepts 60 s \
                 either way (fine if you are explaining an old request)",
                seconds.abs_diff(now)
            );
        }
    }
    let received = Received {
        method: &method,
        target: &target,
        host: uri.authority().map(|a| a.as_str()),
        api_key: &key,
        timestamp,
        signature,
        body,
    };
    let expected = received.expected_message();
    let _ = writeln!(
        out,
        "expected to be signed ({} bytes: timestamp + METHOD + path and query + body):\n  \"{}\"",
        expected.len(),
        escape(&expected)
    );
    let code = match diagnose::diagnose(&received, &credentials, &[], usize::MAX) {
        Outcome::Matches => {
            let _ = writeln!(out, "signature: matches");
            0
        }
        Outcome::Found(finding) => {
            let diagnosis = finding.diagnosis();
            let _ = writeln!(out, "signature: does not match");
            let _ = writeln!(
                out,
                "diagnosis: {}: {}",
                diagnosis.code(),
                diagnosis.sentence()
            );
            let signed = finding.signed_message();
            if signed != expected {
                let _ = writeln!(
                    out,
                    "what was signed ({} bytes):\n  \"{}\"",
                    signed.len(),
                    escape(&signed)
                );
                compare(&expected, &signed, out);
            }
            1
        }
        Outcome::Undecodable => {
            let _ = writeln!(
                out,
                "signature: the {} header is not 64 hex digits (nor 0x and hex, nor base64 of 32 \
                 bytes): send the lowercase hex of the HMAC-SHA256",
                names.signature()
            );
            1
        }
        Outcome::Skipped(skip, encoding) => {
            let _ = writeln!(out, "signature: does not match");
            if let Some(mistake) = encoding {
                let _ = writeln!(out, "diagnosis: {}: {}", mistake.code(), mistake.alone());
            }
            let _ = writeln!(out, "diagnosis: {}", skip.sentence());
            1
        }
        _ => {
            let _ = writeln!(out, "signature: does not match");
            let _ = writeln!(
                out,
                "diagnosis: none of the common mistakes explains it. Check that the secret is the \
                 one of this API key, and sign the string above byte for byte (JSON re-serialized \
                 with other key order or escapes, or query parameters reordered, cannot be \
                 detected)"
            );
            1
        }
    };
    Ok(code)
}

/// Every byte visible: Rust's `escape_debug` for UTF-8 text, `\xNN` for other bytes.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().escape_debug());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// The first difference between what was expected and what was signed, with a caret.
fn compare(expected: &[u8], signed: &[u8], out: &mut String) {
    use std::fmt::Write as _;

    let at = expected
        .iter()
        .zip(signed)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(signed.len()));
    // A window around it, from a character boundary where the text is UTF-8.
    let mut start = at.saturating_sub(24);
    while start > 0 && start < expected.len() && (expected[start] & 0xC0) == 0x80 {
        start -= 1;
    }
    let window = |bytes: &[u8]| {
        let end = (at + 40).min(bytes.len());
        let head = escape(&bytes[start.min(bytes.len())..at.min(bytes.len())]);
        let tail = escape(&bytes[at.min(bytes.len())..end]);
        let more = if end < bytes.len() { "…" } else { "" };
        let less = if start > 0 { "…" } else { "" };
        (format!("{less}{head}"), format!("{tail}{more}"))
    };
    let (expected_head, expected_tail) = window(expected);
    let (signed_head, signed_tail) = window(signed);
    let _ = writeln!(out, "first difference at byte {at}:");
    let _ = writeln!(out, "  expected: {expected_head}{expected_tail}");
    let _ = writeln!(out, "  signed:   {signed_head}{signed_tail}");
    let _ = writeln!(
        out,
        "            {}^",
        " ".repeat(expected_head.chars().count())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        shell_words(line).unwrap()
    }

    /// A body file (`--data @FILE`, or `-d @FILE` in a pasted curl command) is read up to the
    /// signer's limit, not until memory runs out: `-d @/dev/zero` is an error, not a hang.
    #[test]
    fn a_body_file_is_read_up_to_the_signers_limit() {
        let path = std::env::temp_dir().join(format!("explain-big-{}", std::process::id()));
        std::fs::write(&path, vec![b'x'; rampnow_auth::DEFAULT_MAX_BODY_SIZE + 1]).unwrap();
        let big = read_file(path.to_str().unwrap());
        std::fs::remove_file(&path).unwrap();
        match big {
            Ok(bytes) => panic!("read {} bytes, past the signer's limit", bytes.len()),
            Err(err) => assert!(err.contains("larger than"), "{err}"),
        }
        if cfg!(unix) {
            let curl = format!("curl -d @/dev/zero https://{}/x", "127.0.0.1");
            match parse_curl(&curl) {
                Ok(_) => panic!("read /dev/zero to the end"),
                Err(err) => assert!(err.contains("larger than"), "{err}"),
            }
        }
    }

    #[test]
    fn shell_quoting_is_read_as_a_shell_reads_it() {
        assert_eq!(words("a 'b c' \"d e\""), ["a", "b c", "d e"]);
        assert_eq!(words(r#"'{"a": "x\y"}'"#), [r#"{"a": "x\y"}"#]);
        assert_eq!(
            words(r#""say \"hi\" \\ \$HOME \n""#),
            [r#"say "hi" \ $HOME \n"#]
        );
        assert_eq!(words("a\\ b c"), ["a b", "c"]);
        assert_eq!(
            words("curl \\\n  -X POST \\\n  x"),
            ["curl", "-X", "POST", "x"]
        );
        assert_eq!(words("\"a\\\nb\""), ["ab"]);
        assert_eq!(words("'it'\\''s' ''"), ["it's", ""]);
        assert!(shell_words("'open").is_err());
        assert!(shell_words("\"open").is_err());
        assert!(shell_words("end\\").is_err());
    }

    #[test]
    fn curl_commands_give_method_url_headers_and_body() {
        let request = parse_curl(
            "curl -s --cacert ca.pem -X POST 'https://127.0.0.1:8443/api/x?a=1&b=2' \\\n  \
             -H 'RN-API-KEY: ak' -H \"RN-ACCESS-TIMESTAMP: 1700000000\" \\\n  \
             --header='RN-ACCESS-SIGN: abc' --data '{\"a\": 1}'",
        )
        .unwrap();
        assert_eq!(request.method.as_deref(), Some("POST"));
        assert_eq!(
            request.url.as_deref(),
            Some("https://127.0.0.1:8443/api/x?a=1&b=2")
        );
        assert_eq!(
            request.headers,
            [
                ("RN-API-KEY".to_owned(), "ak".to_owned()),
                ("RN-ACCESS-TIMESTAMP".to_owned(), "1700000000".to_owned()),
                ("RN-ACCESS-SIGN".to_owned(), "abc".to_owned()),
            ]
        );
        assert_eq!(request.body.as_deref(), Some(&br#"{"a": 1}"#[..]));

        let request = parse_curl("curl -XPUT --url https://h/p -d a=1 --data-raw @b -k").unwrap();
        assert_eq!(request.method.as_deref(), Some("PUT"));
        assert_eq!(request.url.as_deref(), Some("https://h/p"));
        assert_eq!(request.body.as_deref(), Some(&b"a=1&@b"[..]));

        let dir = std::env::temp_dir().join(format!("rampnow-explain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("body.json");
        std::fs::write(&file, "{\"a\":\r\n1}\n").unwrap();
        let path = file.display();
        let data = parse_curl(&format!("curl https://h/ -d @{path}")).unwrap();
        assert_eq!(data.body.as_deref(), Some(&b"{\"a\":1}"[..]));
        let binary = parse_curl(&format!("curl https://h/ --data-binary @{path}")).unwrap();
        assert_eq!(binary.body.as_deref(), Some(&b"{\"a\":\r\n1}\n"[..]));
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(parse_curl("curl -H").is_err());
        assert!(parse_curl("curl -H 'no colon'").is_err());
    }

    /// `rampnow-sandbox sign` prints `--head` for a HEAD request, and curl's `--json` is the
    /// body: both read as curl reads them, and neither value is taken for the URL.
    #[test]
    fn head_and_json_are_read_as_curl_reads_them() {
        for head in ["--head", "-I"] {
            let request = parse_curl(&format!("curl -sS {head} 'https://h/x' -H 'a: b'")).unwrap();
            assert_eq!(request.method.as_deref(), Some("HEAD"), "{head}");
            assert_eq!(request.url.as_deref(), Some("https://h/x"));
        }
        // An explicit -X wins, as in curl.
        let request = parse_curl("curl -X GET --head https://h/x").unwrap();
        assert_eq!(request.method.as_deref(), Some("GET"));

        let request = parse_curl(r#"curl https://h/x --json '{"a":' --json '1}'"#).unwrap();
        assert_eq!(request.url.as_deref(), Some("https://h/x"));
        assert_eq!(request.body.as_deref(), Some(&br#"{"a":1}"#[..]));

        // Bodies explain cannot rebuild byte for byte are refused, not taken for the URL.
        for option in [
            "--data-urlencode 'a=b c'",
            "-F 'f=@x'",
            "--form 'f=1'",
            "-G",
        ] {
            let message = parse_curl(&format!("curl https://h/x {option}")).unwrap_err();
            assert!(message.contains("--data"), "{option}: {message}");
        }
    }

    #[test]
    fn every_byte_is_visible() {
        assert_eq!(
            escape(b"a\"b\\\n\t\x01\xff\xc3\xa9"),
            "a\\\"b\\\\\\n\\t\\u{1}\\xffé"
        );
    }

    fn run_explain(request: &Request) -> (u8, String) {
        let mut out = String::new();
        let code = explain(request, None, None, &mut out).unwrap();
        (code, out)
    }

    fn signed_request(target: &str, body: &[u8], signed_body: &[u8]) -> Request {
        let signature = rampnow_auth::Signer::new(&crate::sandbox_credentials())
            .sign(1_700_000_000, &http::Method::POST, target, signed_body)
            .to_string();
        Request {
            method: Some("POST".to_owned()),
            url: Some(format!("https://127.0.0.1:8443{target}")),
            headers: vec![
                ("rn-api-key".to_owned(), SANDBOX_API_KEY.to_owned()),
                ("RN-ACCESS-TIMESTAMP".to_owned(), "1700000000".to_owned()),
                ("RN-ACCESS-SIGN".to_owned(), signature),
            ],
            body: Some(body.to_vec()),
        }
    }

    #[test]
    fn a_matching_request_exits_0_and_a_mistake_is_shown_byte_by_byte() {
        let (code, out) = run_explain(&signed_request("/api/x", b"{\"a\":1}", b"{\"a\":1}"));
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("signature: matches"), "{out}");
        assert!(
            out.contains("\"1700000000POST/api/x{\\\"a\\\":1}\""),
            "{out}"
        );

        let (code, out) = run_explain(&signed_request("/api/x", b"{\"a\":1}", b"{\"a\":1}\n"));
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("diagnosis: body_trailing_newline"), "{out}");
        assert!(out.contains("first difference at byte 27:"), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        let caret = lines.iter().position(|l| l.trim() == "^").unwrap();
        let expected = lines[caret - 2];
        let column = lines[caret].find('^').unwrap();
        assert_eq!(
            expected.chars().count(),
            column,
            "the caret is after the expected text:\n{out}"
        );
    }

    /// A body over the search's limit is not searched: explain says so, rather than that no
    /// common mistake explains the signature.
    #[test]
    fn a_body_too_large_to_search_is_said_to_be_not_diagnosed() {
        let body = vec![b'x'; diagnose::MAX_DIAGNOSED_BODY + 1];
        let (code, out) = run_explain(&signed_request("/api/x", &body, b""));
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("not diagnosed"), "{out}");
        assert!(out.contains("64 KiB"), "{out}");
        assert!(!out.contains("none of the common mistakes"), "{out}");
    }

    #[test]
    fn missing_parts_are_usage_errors() {
        let mut request = signed_request("/api/x", b"", b"");
        request.url = None;
        assert!(explain(&request, None, None, &mut String::new()).is_err());
        let mut request = signed_request("/api/x", b"", b"");
        request.headers.retain(|(n, _)| n != "RN-ACCESS-TIMESTAMP");
        assert!(explain(&request, None, None, &mut String::new()).is_err());
        let request = signed_request("/api/x", b"", b"");
        assert!(explain(&request, Some("ak".to_owned()), None, &mut String::new()).is_err());
    }
}
