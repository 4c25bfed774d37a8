//! Names the mistake behind a refused signature: recomputes it over the usual integration
//! mistakes and says which one, if any, the client made.
//!
//! The sandbox holds the secret, so when a signature does not match it can sign the request
//! again the way a client most often gets it wrong, and compare. [`diagnose`] is that search:
//! pure and synchronous, given what was received ([`Received`]) and the credentials of the API
//! key sent (plus any other keys the server knows). The sandbox runs it on every
//! `signature_mismatch` and `invalid_signature` refusal and puts the result in the JSON
//! `reason` and its log ([`LogEntry::diagnosis`](crate::LogEntry::diagnosis)); the
//! `rampnow-sandbox explain` command runs it on a request you paste.
//!
//! # What is detected
//!
//! Each [`Mistake`] has a stable [`code`](Mistake::code). Tried, in this order, each one HMAC:
//!
//! - the signature header's encoding: `0x`/`0X` in front of the hex
//!   ([`SignatureHexPrefix`](Mistake::SignatureHexPrefix)), base64 (standard or URL-safe, with
//!   or without padding) instead of hex ([`SignatureBase64`](Mistake::SignatureBase64));
//!   upper-case hex is valid and not a mistake. The decoded signature then goes through the
//!   rest of the search, so "base64 *and* the body left out" is found too;
//! - the body: left out; `{}`, `null` or `""` signed for an empty body; JSON-encoded a second
//!   time (`json.dumps` on a string that is already JSON, with Python's default
//!   `ensure_ascii=True` — `\uXXXX` escapes and surrogate pairs — or with `ensure_ascii=False`,
//!   which is also what `JSON.stringify` and `serde_json` give); the reverse (the body sent is
//!   a JSON string whose content was signed, as `requests.post(json=text)` does); signed with
//!   a trailing `\n` or `\r\n`, or sent with one that was not signed; signed with other JSON
//!   white space (compact vs Python's default `", "` and `": "` separators);
//! - the target: the query left out; the query signed percent-decoded (`%XX`, or also `+` as a
//!   space) while sent encoded; signed encoded (`encodeURIComponent`, or Python's
//!   `quote_plus` as `requests` uses) while sent raw; `+` vs `%20` for a space; the path
//!   signed with `https://host[:port]` or the host alone in front (with the port as in the
//!   `Host` header, and without it);
//! - the method in lower case (alone, and with each target mistake above);
//! - the secret: another key's secret (from the server's other keys), or the API key used as
//!   the secret (key and secret swapped);
//! - the timestamp: signed in milliseconds (the header's seconds followed by any three
//!   digits: 1000 HMACs, so only for a target and body of at most
//!   [`MAX_MILLISECONDS_MESSAGE`] bytes). A timestamp *header* in milliseconds is refused as
//!   stale before any signature is checked: [`stale_timestamp_hint`] names it.
//!
//! # What is not detected
//!
//! Anything not a fixed transformation of what was received: JSON keys in another order, or
//! a body re-serialized with other number formats or escapes (the possible orders grow as the
//! factorial of the keys), query parameters reordered, a wrong timestamp other than
//! milliseconds, a secret that is not one of the server's keys (a typo, another account's),
//! a body changed after signing (compression, a proxy), or more than one mistake at once
//! beyond the pairs above. Such refusals keep the plain reason.
//!
//! Mistakes that cannot be told apart: when two transformations give the same bytes, the
//! first in the order above is named. A body that ends in no newline cannot show
//! "sent with a newline not signed"; a query without `%`, `+` or reserved characters makes
//! every query mistake but "left out" the same as no mistake (they are then not tried); an
//! empty body makes "body left out" the same as no mistake; a body made only of ASCII makes
//! the two double encodings the same (named as Python's default); a `Host` without a port
//! gives one form of each origin mistake.
//!
//! # Cost
//!
//! Each candidate is one HMAC over its message (mostly the body). The search gives up on a
//! body over [`MAX_DIAGNOSED_BODY`] (64 KiB) and stops once it has hashed `budget` bytes
//! ([`Outcome::Skipped`]); the sandbox also caps the bytes it hashes for diagnoses per second,
//! so clients sending wrong signatures cannot make it hash much more than it already does to
//! verify them.
//!
//! Nothing here reveals the expected signature or a secret: a [`Diagnosis`] names what
//! differed, never a value; signatures are compared in constant time.
//!
//! # Example
//!
//! ```
//! use rampnow_auth::{Credentials, Signer};
//! use rampnow_sandbox::diagnose::{diagnose, Mistake, Outcome, Received};
//!
//! let credentials = Credentials::new("ak_test", "pk_test_secret")?;
//! let sent = br#"{"srcCurrency":"EUR"}"#;
//! // The Rampnow docs' Python recipe: json.dumps on a string that is already JSON.
//! let signed = br#""{\"srcCurrency\":\"EUR\"}""#;
//! let signature = Signer::new(&credentials)
//!     .sign(1700000000, &http::Method::POST, "/api/x", signed)
//!     .to_string();
//! let received = Received {
//!     method: "POST",
//!     target: "/api/x",
//!     host: Some("127.0.0.1:8443"),
//!     api_key: "ak_test",
//!     timestamp: "1700000000",
//!     signature: &signature,
//!     body: sent,
//! };
//! let Outcome::Found(finding) = diagnose(&received, &credentials, &[], usize::MAX) else {
//!     panic!("not diagnosed");
//! };
//! assert_eq!(finding.diagnosis().mistakes(), [Mistake::BodyDoubleEncoded]);
//! assert_eq!(finding.signed_message(), [&b"1700000000POST/api/x"[..], signed].concat());
//! # Ok::<(), rampnow_auth::Error>(())
//! ```

use std::borrow::Cow;
use std::fmt;

use http::Method;
use rampnow_auth::{Credentials, Signature, Signer};

/// The largest body searched (64 KiB): a larger one is not diagnosed
/// ([`Skip::BodyTooLarge`]). Rampnow request bodies are small JSON documents.
pub const MAX_DIAGNOSED_BODY: usize = 64 * 1024;

/// What one HMAC is charged against the budget beyond the bytes it hashes: the keyed state's
/// blocks, the final block, and building the candidate. A short candidate costs about as much
/// as 256 more bytes of message (measured: a 1000-HMAC search over an 81-byte message took as
/// long as hashing 2x the bytes it was charged at +64).
const HMAC_OVERHEAD_BYTES: usize = 256;

/// The largest target plus body for which a timestamp signed in milliseconds is searched
/// (1 KiB): that search is 1000 HMACs.
pub const MAX_MILLISECONDS_MESSAGE: usize = 1024;

/// The most other keys tried as the secret that signed.
pub const MAX_OTHER_KEYS: usize = 16;

/// One integration mistake the search can name. [`code`](Mistake::code) is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mistake {
    /// The signature header has `0x` or `0X` before its 64 hex digits.
    SignatureHexPrefix,
    /// The signature header is base64 of the 32 bytes, not hex.
    SignatureBase64,
    /// The body was left out of the signed message.
    BodyLeftOut,
    /// The body is empty but `{}`, `null` or `""` was signed.
    EmptyBodySignedAsJson,
    /// The body was JSON-encoded a second time before signing, as Python's
    /// `json.dumps(text)` does with its default `ensure_ascii=True`.
    BodyDoubleEncoded,
    /// The body was JSON-encoded a second time before signing, keeping non-ASCII characters
    /// (`json.dumps(text, ensure_ascii=False)`, `JSON.stringify(text)`, `serde_json`).
    BodyDoubleEncodedUnicode,
    /// The body sent is a JSON string whose content was signed (the body was encoded a second
    /// time after signing, e.g. `requests.post(url, json=text)`).
    BodySentDoubleEncoded,
    /// The signed body had a trailing newline (`\n` or `\r\n`) that the sent body has not.
    BodyTrailingNewline,
    /// The sent body ends with a newline (`\n` or `\r\n`) that was not signed.
    BodyNewlineNotSigned,
    /// The body was signed with other JSON white space (compact vs `", "` and `": "`).
    BodyWhitespace,
    /// The query string was left out of the signed target.
    QueryLeftOut,
    /// The query was signed percent-decoded but sent encoded.
    QuerySignedDecoded,
    /// The query was signed percent-encoded but sent with the characters raw.
    QuerySignedEncoded,
    /// A space was signed as `%20` and sent as `+`, or the reverse.
    QuerySpaceEncoding,
    /// The target was signed with the scheme and host (`https://host:port`) in front.
    TargetWithOrigin,
    /// The target was signed with the host (`host:port`) in front.
    TargetWithHost,
    /// The method was signed in lower case.
    MethodLowercase,
    /// The timestamp header is in milliseconds (refused as `stale_timestamp`).
    TimestampMilliseconds,
    /// The timestamp was signed in milliseconds while the header holds seconds.
    SignedMilliseconds,
    /// The request was signed with the secret of another API key the server knows.
    OtherKeySecret,
    /// The request was signed with the API key as the secret (key and secret swapped).
    KeyAndSecretSwapped,
}

impl Mistake {
    /// The stable machine-readable code, such as `body_double_encoded`.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Mistake::SignatureHexPrefix => "signature_hex_prefix",
            Mistake::SignatureBase64 => "signature_base64",
            Mistake::BodyLeftOut => "body_left_out",
            Mistake::EmptyBodySignedAsJson => "empty_body_signed_as_json",
            Mistake::BodyDoubleEncoded => "body_double_encoded",
            Mistake::BodyDoubleEncodedUnicode => "body_double_encoded_unicode",
            Mistake::BodySentDoubleEncoded => "body_sent_double_encoded",
            Mistake::BodyTrailingNewline => "body_trailing_newline",
            Mistake::BodyNewlineNotSigned => "body_newline_not_signed",
            Mistake::BodyWhitespace => "body_whitespace",
            Mistake::QueryLeftOut => "query_left_out",
            Mistake::QuerySignedDecoded => "query_signed_decoded",
            Mistake::QuerySignedEncoded => "query_signed_encoded",
            Mistake::QuerySpaceEncoding => "query_space_encoding",
            Mistake::TargetWithOrigin => "target_with_origin",
            Mistake::TargetWithHost => "target_with_host",
            Mistake::MethodLowercase => "method_lowercase",
            Mistake::TimestampMilliseconds => "timestamp_milliseconds",
            Mistake::SignedMilliseconds => "signed_milliseconds",
            Mistake::OtherKeySecret => "other_key_secret",
            Mistake::KeyAndSecretSwapped => "key_and_secret_swapped",
        }
    }

    /// What was signed (or sent), in words and without values, as "it matches ..." continues
    /// it; and what to do instead.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Mistake::SignatureHexPrefix => (
                "it has 0x in front of its hex digits",
                "send the 64 hex digits alone",
            ),
            Mistake::SignatureBase64 => (
                "it is base64, not hex",
                "send the 32 bytes as 64 hex digits",
            ),
            Mistake::BodyLeftOut => (
                "the request with the body left out",
                "sign the body bytes you send, after the target",
            ),
            Mistake::EmptyBodySignedAsJson => (
                "{}, null or \"\" in place of the empty body",
                "with no body, sign nothing after the target",
            ),
            Mistake::BodyDoubleEncoded => (
                "the body JSON-encoded a second time (json.dumps on a string that is already JSON)",
                "sign the bytes you send",
            ),
            Mistake::BodyDoubleEncodedUnicode => (
                "the body JSON-encoded a second time (json.dumps(..., ensure_ascii=False), \
                 JSON.stringify or serde_json on a string that is already JSON)",
                "sign the bytes you send",
            ),
            Mistake::BodySentDoubleEncoded => (
                "the content of the JSON string sent as the body: the body was JSON-encoded a \
                 second time after signing (as requests.post(url, json=text) does)",
                "send the bytes you signed, e.g. with data=text",
            ),
            Mistake::BodyTrailingNewline => (
                "the body with a trailing newline that was not sent",
                "sign the bytes you send",
            ),
            Mistake::BodyNewlineNotSigned => (
                "the body without the trailing newline it was sent with",
                "sign the bytes you send",
            ),
            Mistake::BodyWhitespace => (
                "the body with other JSON white space (spaces after , and :, or none)",
                "serialize once, then sign and send those same bytes",
            ),
            Mistake::QueryLeftOut => (
                "the path without its query string",
                "sign the path and query as sent",
            ),
            Mistake::QuerySignedDecoded => (
                "the query percent-decoded while it was sent encoded",
                "sign the query exactly as sent, encoded",
            ),
            Mistake::QuerySignedEncoded => (
                "the query percent-encoded while it was sent with those characters raw",
                "sign the query exactly as sent (encode it once, then sign and send that)",
            ),
            Mistake::QuerySpaceEncoding => (
                "the query with its spaces encoded the other way (+ vs %20)",
                "sign the query exactly as sent",
            ),
            Mistake::TargetWithOrigin => (
                "the URL with the scheme and host in front of the path",
                "sign the path and query only, starting with /",
            ),
            Mistake::TargetWithHost => (
                "the host in front of the path",
                "sign the path and query only, starting with /",
            ),
            Mistake::MethodLowercase => (
                "the method in lower case",
                "sign the method in upper case (GET, POST)",
            ),
            Mistake::TimestampMilliseconds => (
                "the timestamp looks like milliseconds",
                "send and sign whole seconds since the Unix epoch",
            ),
            Mistake::SignedMilliseconds => (
                "the timestamp in milliseconds while the header holds seconds",
                "sign the header's value exactly",
            ),
            Mistake::OtherKeySecret => (
                "the secret of another API key",
                "sign with the secret of the key you send",
            ),
            Mistake::KeyAndSecretSwapped => (
                "the API key used as the secret (key and secret swapped)",
                "key the HMAC with the API secret",
            ),
        }
    }

    /// The mistake and its fix in one sentence, for a mistake named alone.
    pub(crate) fn alone(self) -> String {
        let (what, fix) = self.words();
        format!("{what}; {fix}")
    }

    fn is_encoding(self) -> bool {
        matches!(self, Mistake::SignatureHexPrefix | Mistake::SignatureBase64)
    }
}

impl fmt::Display for Mistake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What the search found: the mistakes that, undone, explain the signature. Holds no
/// signature, secret or body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    mistakes: Vec<Mistake>,
    /// Whether the signature matches once the mistakes are undone (false only for an
    /// encoding mistake alone, when the decoded signature does not match either).
    matches: bool,
    other_api_key: Option<String>,
}

impl Diagnosis {
    /// A diagnosis of one mistake that needs no search (such as
    /// [`Mistake::TimestampMilliseconds`]).
    #[must_use]
    pub fn of(mistake: Mistake) -> Diagnosis {
        Diagnosis {
            mistakes: vec![mistake],
            matches: true,
            other_api_key: None,
        }
    }

    /// An encoding mistake seen without a search (the body was not available).
    pub(crate) fn encoding_only(mistake: Mistake) -> Diagnosis {
        Diagnosis {
            mistakes: vec![mistake],
            matches: false,
            other_api_key: None,
        }
    }

    /// The mistakes found, signature encoding first; one or two (three for an encoding
    /// mistake with a pair).
    #[must_use]
    pub fn mistakes(&self) -> &[Mistake] {
        &self.mistakes
    }

    /// The codes of the mistakes joined with `+`, such as `method_lowercase+query_left_out`.
    #[must_use]
    pub fn code(&self) -> String {
        let codes: Vec<&str> = self.mistakes.iter().map(|m| m.code()).collect();
        codes.join("+")
    }

    /// For [`Mistake::OtherKeySecret`], the API key (not secret) whose secret signed.
    #[must_use]
    pub fn other_api_key(&self) -> Option<&str> {
        self.other_api_key.as_deref()
    }

    /// The sentence that follows "the signature does not match the request: " in a refusal's
    /// reason.
    #[must_use]
    pub fn sentence(&self) -> String {
        // A hint found without a search (a timestamp header in milliseconds) matches nothing.
        if let [Mistake::TimestampMilliseconds] = self.mistakes[..] {
            return Mistake::TimestampMilliseconds.alone();
        }
        let (encoding, content): (Vec<Mistake>, Vec<Mistake>) =
            self.mistakes.iter().partition(|m| m.is_encoding());
        let mut out: Vec<String> = encoding.iter().map(|m| m.alone()).collect();
        if content.is_empty() {
            if !encoding.is_empty() {
                out.push(if self.matches {
                    "decoded, it matches the request".to_owned()
                } else {
                    "decoded, it does not match the request either: sign timestamp + METHOD + \
                     path and query exactly as sent + the body bytes exactly as sent"
                        .to_owned()
                });
            }
            return out.join("; ");
        }
        let whats: Vec<String> = content
            .iter()
            .map(|m| match (m, &self.other_api_key) {
                (Mistake::OtherKeySecret, Some(key)) => format!("{} ({key})", m.words().0),
                _ => m.words().0.to_owned(),
            })
            .collect();
        let decoded = if encoding.is_empty() { "" } else { "decoded, " };
        out.push(format!("{decoded}it matches {}", whats.join(" and ")));
        let mut fixes: Vec<&str> = Vec::new();
        for mistake in &content {
            let fix = mistake.words().1;
            if !fixes.contains(&fix) {
                fixes.push(fix);
            }
        }
        out.push(fixes.join("; "));
        out.join("; ")
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.sentence())
    }
}

/// Why a search did not run to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Skip {
    /// The body is larger than [`MAX_DIAGNOSED_BODY`].
    BodyTooLarge,
    /// The hashing budget was spent before a match was found.
    Budget,
    /// The body was not available (a malformed signature is refused before the body is read,
    /// and the body was too long or of unknown length to read for the diagnosis).
    BodyNotRead,
    /// The body was to be read for the diagnosis (a malformed signature, a short body), but it
    /// did not arrive whole within the sandbox's body read timeout.
    BodyNotArrived,
}

impl Skip {
    /// The words a refusal's reason ends with.
    #[must_use]
    pub fn sentence(self) -> String {
        match self {
            Skip::BodyTooLarge => format!(
                "not diagnosed: the sandbox names common mistakes only for bodies up to {} KiB",
                MAX_DIAGNOSED_BODY / 1024
            ),
            Skip::Budget => "not diagnosed: the sandbox is busy diagnosing other refused \
                              requests; send it again in a second for a diagnosis"
                .to_owned(),
            Skip::BodyNotRead => format!(
                "not fully diagnosed: the body was not read (a request refused on its headers \
                 is diagnosed only with a Content-Length of at most {} KiB)",
                MAX_DIAGNOSED_BODY / 1024
            ),
            Skip::BodyNotArrived => "not fully diagnosed: the body was not read: it did not \
                                     arrive whole within the sandbox's body read timeout; send \
                                     the body at once after the head"
                .to_owned(),
        }
    }
}

/// A request as received, as the verifier checks it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The method, as sent (`POST`).
    pub method: &'a str,
    /// The request target as on the wire: path and query, starting with `/`.
    pub target: &'a str,
    /// The `Host` header (or the absolute URI's authority), for the host-in-front mistakes.
    pub host: Option<&'a str>,
    /// The API key header.
    pub api_key: &'a str,
    /// The timestamp header.
    pub timestamp: &'a str,
    /// The signature header.
    pub signature: &'a str,
    /// The body bytes as received.
    pub body: &'a [u8],
}

impl Received<'_> {
    /// The message the server signs for this request: timestamp, method, target and body,
    /// concatenated, exactly as received.
    #[must_use]
    pub fn expected_message(&self) -> Vec<u8> {
        [
            self.timestamp.as_bytes(),
            self.method.as_bytes(),
            self.target.as_bytes(),
            self.body,
        ]
        .concat()
    }
}

/// A message the client may have signed: the four parts.
#[derive(Debug, Clone)]
struct Candidate<'a> {
    timestamp: Cow<'a, [u8]>,
    method: Cow<'a, [u8]>,
    target: Cow<'a, [u8]>,
    body: Cow<'a, [u8]>,
}

impl Candidate<'_> {
    fn len(&self) -> usize {
        self.timestamp.len() + self.method.len() + self.target.len() + self.body.len()
    }
}

/// A match: the diagnosis and the message the client signed.
#[derive(Debug, Clone)]
pub struct Finding<'a> {
    diagnosis: Diagnosis,
    signed: Candidate<'a>,
}

impl Finding<'_> {
    /// The diagnosis.
    #[must_use]
    pub fn diagnosis(&self) -> &Diagnosis {
        &self.diagnosis
    }

    /// The message the client signed (timestamp, method, target and body as it signed them),
    /// to show beside [`Received::expected_message`]. For a wrong secret or an encoding
    /// mistake alone it is the expected message itself.
    #[must_use]
    pub fn signed_message(&self) -> Vec<u8> {
        [
            &self.signed.timestamp[..],
            &self.signed.method[..],
            &self.signed.target[..],
            &self.signed.body[..],
        ]
        .concat()
    }
}

/// What [`diagnose`] concluded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// The signature matches the request: nothing to diagnose.
    Matches,
    /// A mistake (or a pair) explains the signature.
    Found(Finding<'a>),
    /// The signature header is hex (or a known encoding of 32 bytes, then not diagnosed
    /// beyond it) and no mistake tried explains it.
    NotFound,
    /// The signature header is neither 64 hex digits nor a known encoding of 32 bytes.
    Undecodable,
    /// The search did not run to the end; an encoding mistake, if seen, is given.
    Skipped(Skip, Option<Mistake>),
}

/// The outcome and the bytes hashed to reach it (to account them against a budget).
#[derive(Debug, Clone)]
pub struct Search<'a> {
    /// What was concluded.
    pub outcome: Outcome<'a>,
    /// The bytes charged for the hashing: each candidate's message length plus a fixed
    /// overhead per HMAC for its key and final blocks.
    pub hashed_bytes: usize,
}

/// Searches the usual mistakes for one that explains `received.signature`, signing with
/// `credentials` (the key sent) and trying `other_keys` as the secret, until `budget` bytes
/// have been hashed. Shorthand for [`search`] without the count.
#[must_use]
pub fn diagnose<'a>(
    received: &Received<'a>,
    credentials: &Credentials,
    other_keys: &[Credentials],
    budget: usize,
) -> Outcome<'a> {
    search(received, credentials, other_keys, budget).outcome
}

/// As [`diagnose`], with the bytes hashed.
#[must_use]
pub fn search<'a>(
    received: &Received<'a>,
    credentials: &Credentials,
    other_keys: &[Credentials],
    budget: usize,
) -> Search<'a> {
    let mut searcher = Searcher {
        claimed: None,
        budget,
        hashed: 0,
        signer: Signer::new(credentials),
    };
    let outcome = searcher.run(received, credentials, other_keys);
    Search {
        outcome,
        hashed_bytes: searcher.hashed,
    }
}

/// Whether a stale timestamp looks like milliseconds: 13 digits or more, and within a day of
/// `now_secs` once divided by 1000.
#[must_use]
pub fn stale_timestamp_hint(timestamp: &str, now_secs: u64) -> Option<Diagnosis> {
    let value: u64 = timestamp.parse().ok()?;
    let secs = value / 1000;
    (timestamp.len() >= 13 && secs.abs_diff(now_secs) <= 24 * 60 * 60)
        .then(|| Diagnosis::of(Mistake::TimestampMilliseconds))
}

/// The search stopped because the budget was spent.
struct OutOfBudget;

struct Searcher {
    claimed: Option<Signature>,
    budget: usize,
    hashed: usize,
    signer: Signer,
}

impl Searcher {
    fn run<'a>(
        &mut self,
        received: &Received<'a>,
        credentials: &Credentials,
        other_keys: &[Credentials],
    ) -> Outcome<'a> {
        let Some((claimed, encoding)) = decode_signature(received.signature) else {
            return Outcome::Undecodable;
        };
        self.claimed = Some(claimed);
        let sent = Candidate {
            timestamp: Cow::Borrowed(received.timestamp.as_bytes()),
            method: Cow::Borrowed(received.method.as_bytes()),
            target: Cow::Borrowed(received.target.as_bytes()),
            body: Cow::Borrowed(received.body),
        };
        let found = |mistakes: Vec<Mistake>, signed: Candidate<'a>, key: Option<String>| Finding {
            diagnosis: Diagnosis {
                mistakes: encoding.into_iter().chain(mistakes).collect(),
                matches: true,
                other_api_key: key,
            },
            signed,
        };
        match self.try_with(&sent, None) {
            Ok(true) if encoding.is_some() => {
                return Outcome::Found(found(Vec::new(), sent, None));
            }
            Ok(true) => return Outcome::Matches,
            Ok(false) => {}
            Err(()) => return Outcome::Skipped(Skip::Budget, encoding),
        }
        if received.body.len() > MAX_DIAGNOSED_BODY {
            return Outcome::Skipped(Skip::BodyTooLarge, encoding);
        }
        match self.search_mistakes(received, &sent, credentials, other_keys) {
            Ok(Some((mistakes, signed, key))) => Outcome::Found(found(mistakes, signed, key)),
            Ok(None) => match encoding {
                // The encoding is a mistake whatever else is wrong: say so.
                Some(encoding) => Outcome::Found(Finding {
                    diagnosis: Diagnosis {
                        mistakes: vec![encoding],
                        matches: false,
                        other_api_key: None,
                    },
                    signed: sent,
                }),
                None => Outcome::NotFound,
            },
            Err(OutOfBudget) => Outcome::Skipped(Skip::Budget, encoding),
        }
    }

    /// One HMAC with `signer` (or the credentials' own), compared in constant time.
    /// `Err` when the budget does not cover it.
    fn try_with(&mut self, candidate: &Candidate<'_>, signer: Option<&Signer>) -> Result<bool, ()> {
        let cost = candidate.len() + HMAC_OVERHEAD_BYTES;
        if self.hashed + cost > self.budget {
            return Err(());
        }
        self.hashed += cost;
        let signature = sign(signer.unwrap_or(&self.signer), candidate);
        Ok(match (&signature, &self.claimed) {
            (Some(signature), Some(claimed)) => signature == claimed,
            _ => false,
        })
    }

    #[allow(clippy::type_complexity)]
    fn search_mistakes<'a>(
        &mut self,
        received: &Received<'a>,
        sent: &Candidate<'a>,
        credentials: &Credentials,
        other_keys: &[Credentials],
    ) -> Result<Option<(Vec<Mistake>, Candidate<'a>, Option<String>)>, OutOfBudget> {
        macro_rules! attempt {
            ($mistakes:expr, $candidate:expr) => {{
                let candidate = $candidate;
                match self.try_with(&candidate, None) {
                    Ok(true) => return Ok(Some(($mistakes, candidate, None))),
                    Ok(false) => {}
                    Err(()) => return Err(OutOfBudget),
                }
            }};
        }
        let with_body = |body: Vec<u8>| Candidate {
            body: Cow::Owned(body),
            ..sent.clone()
        };
        let with_target = |target: Vec<u8>| Candidate {
            target: Cow::Owned(target),
            ..sent.clone()
        };
        let body = received.body;

        // The body.
        if body.is_empty() {
            for json in [&b"{}"[..], b"null", b"\"\""] {
                attempt!(
                    vec![Mistake::EmptyBodySignedAsJson],
                    with_body(json.to_vec())
                );
            }
        } else {
            attempt!(vec![Mistake::BodyLeftOut], with_body(Vec::new()));
        }
        if let Ok(text) = std::str::from_utf8(body) {
            if !body.is_empty() {
                let ascii = python_dumps(text, true);
                let unicode = python_dumps(text, false);
                let same = ascii == unicode;
                attempt!(vec![Mistake::BodyDoubleEncoded], with_body(ascii));
                if !same {
                    attempt!(vec![Mistake::BodyDoubleEncodedUnicode], with_body(unicode));
                }
            }
            if body.first() == Some(&b'"') {
                if let Ok(inner) = serde_json::from_str::<String>(text) {
                    attempt!(
                        vec![Mistake::BodySentDoubleEncoded],
                        with_body(inner.into_bytes())
                    );
                }
            }
        }
        if !body.is_empty() {
            for newline in [&b"\n"[..], b"\r\n"] {
                attempt!(
                    vec![Mistake::BodyTrailingNewline],
                    with_body([body, newline].concat())
                );
            }
        }
        if let Some(stripped) = body.strip_suffix(b"\n") {
            attempt!(
                vec![Mistake::BodyNewlineNotSigned],
                with_body(stripped.to_vec())
            );
            if let Some(stripped) = stripped.strip_suffix(b"\r") {
                attempt!(
                    vec![Mistake::BodyNewlineNotSigned],
                    with_body(stripped.to_vec())
                );
            }
        }
        for python in [false, true] {
            if let Some(respaced) = json_respaced(body, python) {
                if respaced != body {
                    attempt!(vec![Mistake::BodyWhitespace], with_body(respaced));
                }
            }
        }

        // The target, then the method alone and with each target mistake.
        let targets = target_candidates(received);
        for (mistake, target) in &targets {
            attempt!(vec![*mistake], with_target(target.clone()));
        }
        let lower = received.method.to_ascii_lowercase();
        if lower != received.method {
            let with_lower = |target: Option<&Vec<u8>>| Candidate {
                method: Cow::Owned(lower.clone().into_bytes()),
                target: target.map_or(sent.target.clone(), |t| Cow::Owned(t.clone())),
                ..sent.clone()
            };
            attempt!(vec![Mistake::MethodLowercase], with_lower(None));
            for (mistake, target) in &targets {
                attempt!(
                    vec![Mistake::MethodLowercase, *mistake],
                    with_lower(Some(target))
                );
            }
        }

        // The secret.
        for other in other_keys
            .iter()
            .filter(|other| other.api_key() != credentials.api_key())
            .take(MAX_OTHER_KEYS)
        {
            let signer = Signer::new(other);
            match self.try_with(sent, Some(&signer)) {
                Ok(true) => {
                    return Ok(Some((
                        vec![Mistake::OtherKeySecret],
                        sent.clone(),
                        Some(other.api_key().to_owned()),
                    )))
                }
                Ok(false) => {}
                Err(()) => return Err(OutOfBudget),
            }
        }
        if let Ok(swapped) = Credentials::new("swapped", received.api_key) {
            match self.try_with(sent, Some(&Signer::new(&swapped))) {
                Ok(true) => {
                    return Ok(Some((
                        vec![Mistake::KeyAndSecretSwapped],
                        sent.clone(),
                        None,
                    )))
                }
                Ok(false) => {}
                Err(()) => return Err(OutOfBudget),
            }
        }

        // The timestamp signed in milliseconds: the header's seconds and three more digits.
        if received.target.len() + body.len() <= MAX_MILLISECONDS_MESSAGE
            && received.timestamp.len() <= 17
        {
            let mut digits = received.timestamp.as_bytes().to_vec();
            digits.extend_from_slice(b"000");
            let at = digits.len() - 3;
            for ms in 0..1000u16 {
                digits[at] = b'0' + (ms / 100) as u8;
                digits[at + 1] = b'0' + (ms / 10 % 10) as u8;
                digits[at + 2] = b'0' + (ms % 10) as u8;
                attempt!(
                    vec![Mistake::SignedMilliseconds],
                    Candidate {
                        timestamp: Cow::Owned(digits.clone()),
                        ..sent.clone()
                    }
                );
            }
        }
        Ok(None)
    }
}

/// Whether the signature header is a signature in a wrong encoding (`0x` hex, base64).
pub(crate) fn is_encoded_signature(header: &str) -> bool {
    signature_encoding(header).is_some()
}

/// The encoding mistake of a signature header that is 32 bytes in a wrong encoding.
pub(crate) fn signature_encoding(header: &str) -> Option<Mistake> {
    decode_signature(header).and_then(|(_, encoding)| encoding)
}

/// The signature header's 32 bytes, and the encoding mistake if it is not plain hex.
fn decode_signature(header: &str) -> Option<(Signature, Option<Mistake>)> {
    if let Some(signature) = Signature::from_hex(header) {
        return Some((signature, None));
    }
    if let Some(hex) = header
        .strip_prefix("0x")
        .or_else(|| header.strip_prefix("0X"))
    {
        if let Some(signature) = Signature::from_hex(hex) {
            return Some((signature, Some(Mistake::SignatureHexPrefix)));
        }
    }
    let bytes = base64_decode(header)?;
    let signature = Signature::from_hex(&hex::encode(bytes))?;
    Some((signature, Some(Mistake::SignatureBase64)))
}

/// Decodes base64, standard or URL-safe alphabet, with or without `=` padding; `None` for
/// anything else or a length other than 32 bytes.
fn base64_decode(text: &str) -> Option<[u8; 32]> {
    let trimmed = text.trim_end_matches('=');
    // 32 bytes are 43 characters and one `=` of padding.
    if trimmed.len() != 43 || text.len() > 44 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut at = 0;
    for byte in trimmed.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(at)? = (acc >> bits) as u8;
            at += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (at == 32 && acc == 0).then_some(out)
}

/// One HMAC over the candidate with `signer`, through the public [`Signer::sign`], which
/// signs `decimal(timestamp) || method || target || body`. The message is only their
/// concatenation, so any candidate maps onto it: leading zeros of the timestamp go in front
/// of the method, and a target that is not UTF-8 goes in front of the body. `None` when the
/// timestamp is not digits or the method not a token (no signature can match it).
fn sign(signer: &Signer, candidate: &Candidate<'_>) -> Option<Signature> {
    let digits = &candidate.timestamp[..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || digits.len() > 19 {
        return None;
    }
    let zeros = digits.iter().take_while(|d| **d == b'0').count();
    let (timestamp, prefix) = if zeros == 0 || digits.len() == 1 {
        (
            std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?,
            &[][..],
        )
    } else {
        (0, &digits[1..])
    };
    let method = if prefix.is_empty() {
        Method::from_bytes(&candidate.method).ok()?
    } else {
        Method::from_bytes(&[prefix, &candidate.method[..]].concat()).ok()?
    };
    Some(match std::str::from_utf8(&candidate.target) {
        Ok(target) => signer.sign(timestamp, &method, target, &candidate.body),
        Err(_) => signer.sign(
            timestamp,
            &method,
            "",
            &[&candidate.target[..], &candidate.body[..]].concat(),
        ),
    })
}

/// `json.dumps(text)` as Python writes it: quoted, `"` and `\` escaped, control characters as
/// `\n`-style or `\u00xx` escapes, and with `ascii` (Python's default `ensure_ascii=True`)
/// everything outside printable ASCII as `\uxxxx`, in surrogate pairs above U+FFFF.
fn python_dumps(text: &str, ascii: bool) -> Vec<u8> {
    let mut out = String::with_capacity(text.len() + text.len() / 8 + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // No allocation per character: a 64 KiB body of control characters is
                    // 64 Ki escapes, and an attacker chooses the body.
                    out.push_str("\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(char::from(
                            b"0123456789abcdef"[usize::from(*unit >> shift & 0xf)],
                        ));
                    }
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out.into_bytes()
}

/// The JSON text with its white space outside strings removed (compact), or with `python`
/// one space after each `,` and `:` (Python's default separators). `None` when it does not
/// start like a JSON object or array, or a string is not closed.
fn json_respaced(body: &[u8], python: bool) -> Option<Vec<u8>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' && *first != b'[' {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 4);
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => {
                in_string = true;
                out.push(byte);
            }
            b',' | b':' => {
                out.push(byte);
                if python {
                    out.push(b' ');
                }
            }
            _ => out.push(byte),
        }
    }
    (!in_string).then_some(out)
}

/// The target as the client may have signed it, for each target mistake, each different
/// from the target sent.
fn target_candidates(received: &Received<'_>) -> Vec<(Mistake, Vec<u8>)> {
    let target = received.target;
    let mut out: Vec<(Mistake, Vec<u8>)> = Vec::new();
    let mut push = |mistake, candidate: Vec<u8>| {
        if candidate != target.as_bytes() && !out.iter().any(|(_, c)| *c == candidate) {
            out.push((mistake, candidate));
        }
    };
    if let Some((path, query)) = target.split_once('?') {
        push(Mistake::QueryLeftOut, path.as_bytes().to_vec());
        let with_query = |query: &[u8]| [path.as_bytes(), b"?", query].concat();
        push(
            Mistake::QuerySignedDecoded,
            with_query(&percent_decode(query.as_bytes(), false)),
        );
        push(
            Mistake::QuerySignedDecoded,
            with_query(&percent_decode(query.as_bytes(), true)),
        );
        push(
            Mistake::QuerySignedEncoded,
            with_query(&encode_query(query, URI_COMPONENT_SAFE)),
        );
        push(
            Mistake::QuerySignedEncoded,
            with_query(&encode_query(query, PYTHON_QUOTE_SAFE)),
        );
        push(
            Mistake::QuerySpaceEncoding,
            with_query(query.replace('+', "%20").as_bytes()),
        );
        push(
            Mistake::QuerySpaceEncoding,
            with_query(query.replace("%20", "+").as_bytes()),
        );
    }
    if let Some(host) = received.host {
        let mut hosts = vec![host];
        if let Some((bare, port)) = host.rsplit_once(':') {
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !bare.ends_with(':')
            {
                hosts.push(bare);
            }
        }
        for host in hosts {
            push(
                Mistake::TargetWithOrigin,
                format!("https://{host}{target}").into_bytes(),
            );
            push(
                Mistake::TargetWithHost,
                format!("{host}{target}").into_bytes(),
            );
        }
    }
    out
}

/// `%XX` decoded to its byte (an invalid escape is kept); with `plus`, `+` as a space too.
fn percent_decode(text: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'%' => {
                let mut byte = [0u8; 1];
                match text
                    .get(i + 1..i + 3)
                    .and_then(|hex| hex::decode_to_slice(hex, &mut byte).ok())
                {
                    Some(()) => {
                        out.push(byte[0]);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Characters `encodeURIComponent` leaves as they are, besides ASCII letters and digits.
const URI_COMPONENT_SAFE: &[u8] = b"-_.!~*'()";
/// Characters Python's `quote_plus` (what `requests` and `urlencode` use) leaves as they are,
/// besides ASCII letters and digits.
const PYTHON_QUOTE_SAFE: &[u8] = b"-_.~";

/// Each name and value of the query percent-encoded (upper-case hex), keeping `&`, `=`,
/// letters, digits, `safe`, and `%XX` escapes already there.
fn encode_query(query: &str, safe: &[u8]) -> Vec<u8> {
    let bytes = query.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 2);
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let escape = byte == b'%'
            && bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if byte.is_ascii_alphanumeric() || safe.contains(&byte) || b"&=".contains(&byte) || escape {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ak_test_key";
    const TS: &str = "1700000000";

    fn credentials() -> Credentials {
        Credentials::new(KEY, "pk_test_secret").unwrap()
    }

    /// Signs the parts as a client would, with `credentials`.
    fn signed(
        credentials: &Credentials,
        ts: &str,
        method: &str,
        target: &[u8],
        body: &[u8],
    ) -> String {
        let candidate = Candidate {
            timestamp: Cow::Owned(ts.as_bytes().to_vec()),
            method: Cow::Owned(method.as_bytes().to_vec()),
            target: Cow::Owned(target.to_vec()),
            body: Cow::Owned(body.to_vec()),
        };
        sign(&Signer::new(credentials), &candidate)
            .unwrap()
            .to_string()
    }

    fn received<'a>(
        method: &'a str,
        target: &'a str,
        body: &'a [u8],
        signature: &'a str,
    ) -> Received<'a> {
        Received {
            method,
            target,
            host: Some("127.0.0.1:8443"),
            api_key: KEY,
            timestamp: TS,
            signature,
            body,
        }
    }

    /// The codes found for a request sent as `(method, target, body)` and signed over
    /// `(signed_method, signed_target, signed_body)`.
    fn found(
        sent: (&str, &str, &[u8]),
        signed_as: (&str, &[u8], &[u8]),
        others: &[Credentials],
    ) -> Option<String> {
        let signature = signed(&credentials(), TS, signed_as.0, signed_as.1, signed_as.2);
        let r = received(sent.0, sent.1, sent.2, &signature);
        match diagnose(&r, &credentials(), others, usize::MAX) {
            Outcome::Found(finding) => {
                assert_eq!(
                    finding.signed_message(),
                    [
                        TS.as_bytes(),
                        signed_as.0.as_bytes(),
                        signed_as.1,
                        signed_as.2
                    ]
                    .concat()
                );
                Some(finding.diagnosis().code())
            }
            _ => None,
        }
    }

    const PATH: &str = "/api/partner/v1/ext/ramp_order/quote";

    /// A stale timestamp's hint is not a signature that "matches" anything: its sentence, in
    /// the refusal and in the log line, says what is wrong and what to do.
    #[test]
    fn the_milliseconds_hint_reads_as_a_sentence() {
        let hint = Diagnosis::of(Mistake::TimestampMilliseconds);
        assert_eq!(
            hint.sentence(),
            "the timestamp looks like milliseconds; send and sign whole seconds since the Unix \
             epoch"
        );
        assert_eq!(
            hint.to_string(),
            format!("timestamp_milliseconds: {}", hint.sentence())
        );
    }

    #[test]
    fn a_matching_signature_is_not_a_mistake() {
        let signature = signed(&credentials(), TS, "POST", PATH.as_bytes(), b"{}");
        let r = received("POST", PATH, b"{}", &signature);
        assert!(matches!(
            diagnose(&r, &credentials(), &[], usize::MAX),
            Outcome::Matches
        ));
        let upper = signature.to_ascii_uppercase();
        let r = received("POST", PATH, b"{}", &upper);
        assert!(matches!(
            diagnose(&r, &credentials(), &[], usize::MAX),
            Outcome::Matches
        ));
    }

    #[test]
    fn body_mistakes() {
        let body =
            r#"{"srcCurrency": "EUR", "note": "caf\u00e9 \"x\"", "emoji": "😀é"}"#.as_bytes();
        let text = std::str::from_utf8(body).unwrap();
        let post = |signed_body: &[u8]| {
            found(
                ("POST", PATH, body),
                ("POST", PATH.as_bytes(), signed_body),
                &[],
            )
        };
        assert_eq!(
            post(&python_dumps(text, true)).as_deref(),
            Some("body_double_encoded")
        );
        assert_eq!(
            post(&python_dumps(text, false)).as_deref(),
            Some("body_double_encoded_unicode")
        );
        assert_eq!(post(b"").as_deref(), Some("body_left_out"));
        assert_eq!(
            post(&[body, b"\n"].concat()).as_deref(),
            Some("body_trailing_newline")
        );
        assert_eq!(
            post(&[body, b"\r\n"].concat()).as_deref(),
            Some("body_trailing_newline")
        );
        assert_eq!(
            post(&json_respaced(body, false).unwrap()).as_deref(),
            Some("body_whitespace")
        );
        // Another key order is not recoverable.
        assert_eq!(
            post(r#"{"note": "caf\u00e9 \"x\"", "srcCurrency": "EUR", "emoji": "😀é"}"#.as_bytes()),
            None
        );

        let with_newline = b"{\"a\":1}\r\n";
        assert_eq!(
            found(
                ("POST", PATH, with_newline),
                ("POST", PATH.as_bytes(), b"{\"a\":1}"),
                &[]
            )
            .as_deref(),
            Some("body_newline_not_signed")
        );
        assert_eq!(
            found(("POST", PATH, b""), ("POST", PATH.as_bytes(), b"{}"), &[]).as_deref(),
            Some("empty_body_signed_as_json")
        );
        let sent_twice = br#""{\"a\":1}""#;
        assert_eq!(
            found(
                ("POST", PATH, sent_twice),
                ("POST", PATH.as_bytes(), b"{\"a\":1}"),
                &[]
            )
            .as_deref(),
            Some("body_sent_double_encoded")
        );
    }

    #[test]
    fn python_dumps_matches_python() {
        // Each pair checked against CPython 3's json.dumps (ensure_ascii default, then False).
        assert_eq!(
            python_dumps("{\"a\": \"b\\\\c\"}", true),
            br#""{\"a\": \"b\\\\c\"}""#
        );
        assert_eq!(
            python_dumps("é😀\u{7f}\n\u{1}", true),
            br#""\u00e9\ud83d\ude00\u007f\n\u0001""#
        );
        assert_eq!(
            python_dumps("é😀\u{7f}\n\u{1}", false),
            "\"é😀\u{7f}\\n\\u0001\"".as_bytes()
        );
    }

    #[test]
    fn target_and_method_mistakes() {
        let target = format!("{PATH}?email=a%40b.com&q=a+b");
        let get = |signed_method: &str, signed_target: &str| {
            found(
                ("GET", &target, b""),
                (signed_method, signed_target.as_bytes(), b""),
                &[],
            )
        };
        assert_eq!(get("GET", PATH).as_deref(), Some("query_left_out"));
        assert_eq!(
            get("GET", &format!("{PATH}?email=a@b.com&q=a+b")).as_deref(),
            Some("query_signed_decoded")
        );
        assert_eq!(
            get("GET", &format!("{PATH}?email=a@b.com&q=a b")).as_deref(),
            Some("query_signed_decoded")
        );
        assert_eq!(
            get("GET", &format!("{PATH}?email=a%40b.com&q=a%20b")).as_deref(),
            Some("query_space_encoding")
        );
        assert_eq!(
            get("GET", &format!("https://127.0.0.1:8443{target}")).as_deref(),
            Some("target_with_origin")
        );
        assert_eq!(
            get("GET", &format!("https://127.0.0.1{target}")).as_deref(),
            Some("target_with_origin")
        );
        assert_eq!(
            get("GET", &format!("127.0.0.1:8443{target}")).as_deref(),
            Some("target_with_host")
        );
        assert_eq!(get("get", &target).as_deref(), Some("method_lowercase"));
        assert_eq!(
            get("get", PATH).as_deref(),
            Some("method_lowercase+query_left_out")
        );

        // Sent raw, signed encoded (encodeURIComponent, then Python's quote_plus).
        let raw = format!("{PATH}?email=a@b.com&t=x:y(1)");
        for signed_target in [
            format!("{PATH}?email=a%40b.com&t=x%3Ay(1)"),
            format!("{PATH}?email=a%40b.com&t=x%3Ay%281%29"),
        ] {
            assert_eq!(
                found(
                    ("GET", &raw, b""),
                    ("GET", signed_target.as_bytes(), b""),
                    &[]
                )
                .as_deref(),
                Some("query_signed_encoded")
            );
        }
    }

    #[test]
    fn secret_mistakes() {
        let other = Credentials::new("ak_other", "pk_other_secret").unwrap();
        let signature = signed(&other, TS, "GET", PATH.as_bytes(), b"");
        let r = received("GET", PATH, b"", &signature);
        let Outcome::Found(finding) =
            diagnose(&r, &credentials(), &[credentials(), other], usize::MAX)
        else {
            panic!("not found");
        };
        assert_eq!(finding.diagnosis().mistakes(), [Mistake::OtherKeySecret]);
        assert_eq!(finding.diagnosis().other_api_key(), Some("ak_other"));
        assert!(finding.diagnosis().sentence().contains("ak_other"));

        let swapped = Credentials::new("x", KEY).unwrap();
        let signature = signed(&swapped, TS, "GET", PATH.as_bytes(), b"");
        let r = received("GET", PATH, b"", &signature);
        let Outcome::Found(finding) = diagnose(&r, &credentials(), &[], usize::MAX) else {
            panic!("not found");
        };
        assert_eq!(finding.diagnosis().code(), "key_and_secret_swapped");
    }

    #[test]
    fn timestamp_mistakes() {
        let ms = format!("{TS}737");
        let signature = signed(&credentials(), &ms, "GET", PATH.as_bytes(), b"");
        let r = received("GET", PATH, b"", &signature);
        let Outcome::Found(finding) = diagnose(&r, &credentials(), &[], usize::MAX) else {
            panic!("not found");
        };
        assert_eq!(finding.diagnosis().code(), "signed_milliseconds");
        assert!(finding.signed_message().starts_with(ms.as_bytes()));

        let now = 1_700_000_000;
        assert_eq!(
            stale_timestamp_hint("1700000000123", now)
                .map(|d| d.code())
                .as_deref(),
            Some("timestamp_milliseconds")
        );
        assert!(stale_timestamp_hint("1700000500", now).is_none());
        assert!(stale_timestamp_hint("9999999999999", now).is_none());
    }

    #[test]
    fn leading_zeros_and_non_utf8_targets_are_signed_as_given() {
        let c = credentials();
        let signer = Signer::new(&c);
        let plain = sign(
            &signer,
            &Candidate {
                timestamp: Cow::Borrowed(b"0017"),
                method: Cow::Borrowed(b"GET"),
                target: Cow::Borrowed(b"/\xff"),
                body: Cow::Borrowed(b"x"),
            },
        )
        .unwrap();
        // The same message split differently.
        let other = sign(
            &signer,
            &Candidate {
                timestamp: Cow::Borrowed(b"0"),
                method: Cow::Borrowed(b"017GET"),
                target: Cow::Borrowed(b""),
                body: Cow::Borrowed(b"/\xffx"),
            },
        )
        .unwrap();
        assert_eq!(plain, other);
        assert_ne!(plain, signer.sign(17, &Method::GET, "/", b"x"));
    }

    #[test]
    fn signature_encodings() {
        let hex_signature = signed(&credentials(), TS, "GET", PATH.as_bytes(), b"");
        let bytes = hex::decode(&hex_signature).unwrap();
        let b64 = base64_encode(&bytes, false);
        for (header, code) in [
            (format!("0x{hex_signature}"), "signature_hex_prefix"),
            (
                format!("0X{}", hex_signature.to_ascii_uppercase()),
                "signature_hex_prefix",
            ),
            (b64.clone(), "signature_base64"),
            (b64.trim_end_matches('=').to_owned(), "signature_base64"),
            (base64_encode(&bytes, true), "signature_base64"),
        ] {
            let r = received("GET", PATH, b"", &header);
            let Outcome::Found(finding) = diagnose(&r, &credentials(), &[], usize::MAX) else {
                panic!("{header} not found");
            };
            assert_eq!(finding.diagnosis().code(), code, "{header}");
            assert!(finding
                .diagnosis()
                .sentence()
                .contains("decoded, it matches the request"));
        }
        // Base64 and a mistake.
        let left_out = signed(&credentials(), TS, "GET", PATH.as_bytes(), b"");
        let b64 = base64_encode(&hex::decode(left_out).unwrap(), false);
        let target = format!("{PATH}?a=1");
        let r = received("GET", &target, b"", &b64);
        let Outcome::Found(finding) = diagnose(&r, &credentials(), &[], usize::MAX) else {
            panic!("not found");
        };
        assert_eq!(
            finding.diagnosis().code(),
            "signature_base64+query_left_out"
        );
        // Base64 of something else: the encoding is still named, without a match.
        let r = received(
            "GET",
            PATH,
            b"",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        );
        let Outcome::Found(finding) = diagnose(&r, &credentials(), &[], usize::MAX) else {
            panic!("not found");
        };
        assert_eq!(finding.diagnosis().code(), "signature_base64");
        assert!(finding
            .diagnosis()
            .sentence()
            .contains("does not match the request either"));
        for junk in [
            "",
            "xyz",
            &"g".repeat(64),
            &"=".repeat(44),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
        ] {
            let r = received("GET", PATH, b"", junk);
            assert!(
                matches!(
                    diagnose(&r, &credentials(), &[], usize::MAX),
                    Outcome::Undecodable
                ),
                "{junk}"
            );
        }
    }

    const WRONG: &str = "abababababababababababababababababababababababababababababababab";

    fn base64_encode(bytes: &[u8], url: bool) -> String {
        let alphabet: &[u8] = if url {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        } else {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        };
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        while !out.len().is_multiple_of(4) {
            out.push('=');
        }
        out
    }

    #[test]
    fn a_random_signature_is_not_diagnosed() {
        let target = format!("{PATH}?srcCurrency=USD&x=a%20b");
        let r = received("POST", &target, b"{\"a\": 1}\n", WRONG);
        assert!(matches!(
            diagnose(&r, &credentials(), &[], usize::MAX),
            Outcome::NotFound
        ));
    }

    #[test]
    fn the_search_is_bounded() {
        let body = vec![b'x'; MAX_DIAGNOSED_BODY + 1];
        let r = received("POST", PATH, &body, WRONG);
        let search = search(&r, &credentials(), &[], usize::MAX);
        assert!(matches!(
            search.outcome,
            Outcome::Skipped(Skip::BodyTooLarge, None)
        ));
        // One HMAC only, checking the signature as sent: the body, under 200 bytes of
        // timestamp, method and target, and the overhead.
        assert!(search.hashed_bytes <= body.len() + 200 + HMAC_OVERHEAD_BYTES);

        let body = vec![b'x'; MAX_DIAGNOSED_BODY];
        let r = received("POST", PATH, &body, WRONG);
        let full = super::search(&r, &credentials(), &[], usize::MAX);
        assert!(matches!(full.outcome, Outcome::NotFound));
        // A bounded number of HMACs over the body, and no milliseconds search.
        assert!(
            full.hashed_bytes < 40 * MAX_DIAGNOSED_BODY,
            "{}",
            full.hashed_bytes
        );
        let cut = super::search(&r, &credentials(), &[], 5 * MAX_DIAGNOSED_BODY);
        assert!(matches!(cut.outcome, Outcome::Skipped(Skip::Budget, None)));
        assert!(cut.hashed_bytes <= 5 * MAX_DIAGNOSED_BODY);
    }
}
