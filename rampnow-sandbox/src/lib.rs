//! A local Rampnow sandbox: an HTTPS server on your machine that checks signatures as Rampnow
//! does and answers quotes shaped like Rampnow's.
//!
//! [`Sandbox`] serves HTTPS with a certificate it makes when it starts, and puts
//! [`RampnowVerifyLayer`] (from [`rampnow_auth`]) in front of every request: a request reaches
//! the routes only if its signature verifies, and a refused one gets the verifier's JSON answer
//! (`{"code": "signature_mismatch", "error": "signature_mismatch", "reason": "..."}`, status
//! 401). Use it to try a client
//! without a Rampnow account: from Rust tests as a library (a dev-dependency), or from any
//! language as a program — `cargo install rampnow-sandbox`, then `rampnow-sandbox` serves on
//! `127.0.0.1:8443` until Ctrl-C (see [`cli`]). A Rust client of such a program trusts its CA
//! file with [`client_config_from_ca_file`].
//!
//! TLS is rustls with its default provider, aws-lc-rs, and no other: a test crate whose own
//! rustls, hyper-rustls or reqwest are on their defaults uses the same one, so
//! `rustls::ClientConfig::builder()` and hyper-rustls' `with_webpki_roots()` keep working
//! beside the sandbox.
//!
//! What it serves, behind the verifier:
//!
//! - `GET` [`QUOTE_PATH`]`?srcCurrency=USD&dstCurrency=BTC&srcAmount=100` and `POST`
//!   [`QUOTE_PATH`] with a JSON body `{"srcCurrency": "EUR", "dstCurrency": "ETH", "srcAmount":
//!   "100.0"}` (other fields are ignored): `200` with a quote computed from made-up fixed prices
//!   and a 1 % fee, the same answer for the same input every time (see [`Sandbox`] for the
//!   fields and the supported currencies). These are *not* Rampnow's prices, nor exactly
//!   Rampnow's response shape: only the authentication is Rampnow's.
//! - A missing or invalid parameter: `400` with `{"code": "...", "error": "...", "reason":
//!   "..."}`; another method on the quote path: `405`; any other path: `404`, in the same JSON
//!   shape. A `404` or `400` means the signature *was* verified.
//! - A request target with a fragment (`GET /path#part HTTP/1.1`): `400` with
//!   `{"code": "invalid_target", ...}` *before* the verifier, and the connection is
//!   closed. A fragment is never sent in HTTP, and hyper's URI silently drops it, so the
//!   verifier would check the signature against a target the client did not send. Such
//!   refusals are printed (unless quiet) but not kept in [`Sandbox::log`], whose entries are
//!   requests the verifier saw.
//!
//! # A refused signature names the mistake
//!
//! The sandbox holds the secret, so when a signature does not match it signs the request again
//! the ways clients most often get it wrong (the body JSON-encoded twice, the query left out or
//! re-encoded, the host in front of the path, the method in lower case, the timestamp in
//! milliseconds, another key's secret, base64 instead of hex, ...: see [`diagnose`] for the
//! list and what cannot be told), and if one matches, the JSON `reason` says which:
//!
//! ```json
//! {"code": "signature_mismatch", "error": "signature_mismatch", "reason": "the signature does
//!  not match the request: it matches the body JSON-encoded a second time (json.dumps on a
//!  string that is already JSON); sign the bytes you send"}
//! ```
//!
//! The `code` (and `error`) stays the verifier's; [`LogEntry::diagnosis`] holds the
//! [`Diagnosis`] with a stable code (`body_double_encoded`), and the
//! response's extensions too. A signature header in a wrong encoding (`0x...`, base64) is
//! refused as `invalid_signature` before the body is read; for such a request with a
//! `Content-Length` of at most 64 KiB the sandbox reads the body first to check it. Neither
//! the expected signature nor a secret is ever shown. The search is bounded: bodies up to
//! [`MAX_DIAGNOSED_BODY`](diagnose::MAX_DIAGNOSED_BODY) (64 KiB) only, at most 4 MiB hashed
//! for one diagnosis and 16 MiB a second for all of them (measured with
//! `examples/diagnose_cost.rs`: about 2 ms for a 64 KiB body, 0.2 ms for a `GET`); past those
//! limits the reason says it was not diagnosed. The `rampnow-sandbox explain` command runs the
//! same search on a request you paste (see [`cli`]).
//!
//! By default the sandbox accepts the documented, public [`SANDBOX_API_KEY`] and
//! [`SANDBOX_API_SECRET`] under either header set ([`HeaderNames::RN`](rampnow_auth::HeaderNames::RN)
//! or [`HeaderNames::X_RAMPNOW`](rampnow_auth::HeaderNames::X_RAMPNOW)), uses the system clock with
//! Rampnow's 60 s tolerance, and refuses replayed signatures (remembering up to
//! [`DEFAULT_REPLAY_CAPACITY`] live signatures, half of them at most for one key; when that is
//! full it answers `503` with `Retry-After` rather than forget one). Timestamps are whole seconds, so two identical requests signed
//! in the same second carry the same signature and the second is refused as `replayed`; vary
//! the request, or [`accept_replays`](SandboxBuilder::accept_replays). It writes one line per
//! request to stderr (turn it off with [`quiet`](SandboxBuilder::quiet)) and keeps them for
//! [`Sandbox::log`].
//!
//! # Error bodies
//!
//! Every error the sandbox answers has one JSON shape, `{"code": "<code>", "error": "<code>",
//! "reason": "<what to fix>"}`, `application/json`: its own (`400`, `404`, `405`, `429`,
//! `503`) and the verifier's refusals (`401`, `400`, `408`, `413`, `500`, `503`; the codes are
//! [`RejectionKind::code`](rampnow_auth::verify::RejectionKind::code)). `code` is the field
//! Rampnow's error bodies carry; `error` holds the same code, for clients written against
//! earlier sandboxes. The one exception: a request hyper cannot parse at all (a malformed
//! request line or header, `400`) or whose head is over the limit (`431`) is answered by hyper
//! itself, with no body, before any of the sandbox's code sees a request; it is not logged
//! either.
//!
//! # Playing Rampnow's limits
//!
//! Rampnow allows 20 requests per second per IP address in production, 15 in staging, and
//! its servers fail now and then. Two options, off by default, let a client's retry policy and
//! rate limiter meet both:
//!
//! - [`rate_limit(n)`](SandboxBuilder::rate_limit) (`--rate-limit N`): past `n` requests
//!   within one second from one client address, `429 Too Many Requests` with `Retry-After`
//!   and the code `rate_limited`. Exact: a sliding one-second window over the requests
//!   *accepted* from that IP address; refused requests do not count.
//! - [`fail_every(k)`](SandboxBuilder::fail_every) (`--fail-every K`): the `k`-th, `2k`-th,
//!   ... request (counted over the whole sandbox, among those the rate limit let through) is
//!   answered `503 Service Unavailable`, code `service_unavailable`, without `Retry-After`.
//!
//! Both apply first, before the signature is verified, as at a gateway in front of an API:
//! a refused request was not processed, and its signature is not remembered as used, so
//! sending it again is not a replay. Each refusal is in [`Sandbox::log`], with
//! [`LogEntry::limit`] saying which. The rate limit's memory is bounded by
//! [`MAX_RATE_LIMIT`] and [`RATE_LIMIT_MAX_ADDRESSES`]: at most 8 MiB, whatever clients send.
//!
//! # Limits
//!
//! The sandbox may be reachable by clients you do not control (with [`addr`](SandboxBuilder::addr)
//! off loopback, or by other programs on your machine), so it bounds what a connection can hold,
//! as a production server would. Each limit has a builder method and a default:
//!
//! | What | Default | Builder method |
//! |---|---|---|
//! | TLS handshake, from the accepted TCP connection | [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`] | [`tls_handshake_timeout`](SandboxBuilder::tls_handshake_timeout) |
//! | Each request head, *and* the idle wait before it on a kept-alive connection | [`DEFAULT_HEADER_READ_TIMEOUT`] | [`header_read_timeout`](SandboxBuilder::header_read_timeout) |
//! | Size of a request head (request line and headers) | [`DEFAULT_MAX_REQUEST_HEAD_BYTES`] | [`max_request_head_bytes`](SandboxBuilder::max_request_head_bytes) |
//! | Connections open at once | [`DEFAULT_MAX_CONNECTIONS`] | [`max_connections`](SandboxBuilder::max_connections) |
//! | The whole request body, from the verifier's first wait for it (answered `408`) | [`DEFAULT_BODY_READ_TIMEOUT`](rampnow_auth::verify::DEFAULT_BODY_READ_TIMEOUT) | [`body_read_timeout`](SandboxBuilder::body_read_timeout) |
//! | Size of a request body (answered `413`) | [`DEFAULT_MAX_BODY_SIZE`] | [`max_body_size`](SandboxBuilder::max_body_size) |
//!
//! A connection that misses the TLS or head timeout is closed without an answer; a body that
//! misses its deadline is answered `408 Request Timeout` (`body_timeout`) and the connection
//! closed; a head that is too large is answered `431` and the connection closed; past the
//! connection cap the sandbox stops accepting (clients wait in the kernel's queue) until a
//! connection closes. At most 100 headers are read (hyper's default). So the most a client can
//! make the sandbox hold is about [`DEFAULT_MAX_BODY_SIZE`] plus the head limit per connection,
//! for at most the body deadline, on [`DEFAULT_MAX_CONNECTIONS`] connections, plus, for a
//! request with a known API key, a copy of its target and of its body up to 64 KiB kept to
//! diagnose a refused signature (about 304 MiB with the defaults).
//!
//! What the limits do not stop: a client that keeps a connection busy with a request at least
//! every header-read timeout holds its slot for as long as it keeps that up, like any client of
//! a server with a connection cap; 256 such connections hold every slot. The sandbox listens
//! on loopback by default, so such a client is a program on your own machine. Following each request line to refuse a fragment
//! (see above) holds at most one head line and a short queue per connection. [`Sandbox::log`] is
//! bounded in entries and in
//! bytes ([`LOG_CAPACITY`], [`LOG_MAX_BYTES`], [`LOG_TARGET_MAX_BYTES`]).
//!
//! # Example
//!
//! ```
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use rampnow_sandbox::{Sandbox, QUOTE_PATH};
//! use rampnow_auth::{RampnowAuthLayer, SignedBody};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let sandbox = Sandbox::builder().quiet(true).start().await?;
//!
//! // Any client that trusts the sandbox's certificate, signing with its credentials.
//! let https = hyper_rustls::HttpsConnectorBuilder::new()
//!     .with_tls_config(sandbox.rustls_client_config())
//!     .https_only()
//!     .enable_http1()
//!     .build();
//! let client = RampnowAuthLayer::new(sandbox.credentials().clone())
//!     .layer(Client::builder(TokioExecutor::new()).build::<_, SignedBody>(https));
//!
//! let uri = format!("{}{QUOTE_PATH}?srcCurrency=USD&dstCurrency=BTC&srcAmount=100", sandbox.url());
//! let response = client.oneshot(Request::get(uri).body(SignedBody::empty())?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! let body = response.into_body().collect().await?.to_bytes();
//! let quote: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(quote["dstAmount"], "0.00198000"); // (100 USD - 1 % fee) at 50,000 USD/BTC
//! assert!(sandbox.log()[0].rejection.is_none()); // the signature verified
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONNECTION, DATE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::{service_fn, Layer, ServiceExt};

use diagnose::Diagnosis;
use rampnow_auth::verify::{RampnowVerifyLayer, Rejection};
use rampnow_auth::Credentials;
use rampnow_auth::{Clock, SystemClock};
use targets::{Refusal, TargetTracker, Targets};
use throttle::Throttle;
pub use throttle::{LimitRefusal, MAX_RATE_LIMIT, RATE_LIMIT_MAX_ADDRESSES};

pub use ca::client_config_from_ca_file;

mod ca;
pub mod cli;
pub mod diagnose;
mod refusals;
mod routes;
mod targets;
mod throttle;

/// The sandbox's default API key. Public: it only opens the sandbox.
pub const SANDBOX_API_KEY: &str = "ak_sandbox_rampnow_auth";

/// The sandbox's default API secret. Public on purpose, printed and documented: it only opens
/// a sandbox on your own machine. Never use it anywhere else.
pub const SANDBOX_API_SECRET: &str = "pk_sandbox_not_a_secret";

/// How many signatures the sandbox remembers to refuse replays, unless told otherwise.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// How many requests [`Sandbox::log`] keeps; older ones are forgotten first.
pub const LOG_CAPACITY: usize = 10_000;

/// The most bytes of a request target a [`LogEntry`] keeps (1 KiB), marker included: a longer
/// target is cut on a character boundary and ends with `…[truncated, N bytes]`, N being its
/// whole length. A signed Rampnow target is far shorter; anyone who can reach the sandbox can
/// send a long one without credentials, and the log keeps refused requests too.
pub const LOG_TARGET_MAX_BYTES: usize = 1024;

/// The most bytes [`Sandbox::log`] holds in all (8 MiB), counting each entry's own size, its
/// target, an unusually long method and the refusal's reason; past it the oldest entries are
/// forgotten first, as past [`LOG_CAPACITY`]. [`LOG_CAPACITY`] typical entries (a few hundred
/// bytes each) fit in it.
pub const LOG_MAX_BYTES: usize = 8 * 1024 * 1024;

/// The most bytes of a method written in a log line; a longer (extension) method is cut as a
/// target is.
const LOG_METHOD_MAX_BYTES: usize = 64;

/// How long a client may take to send a request head (request line and headers), and how long
/// an idle kept-alive connection waits for the next one, unless told otherwise (10 s).
///
/// A head is a few hundred bytes that a client sends at once, so 10 s covers a slow or lossy
/// link many times over while a client that trickles its head (slowloris) or parks an idle
/// connection holds a connection slot for at most that long. hyper's own default is 30 s;
/// nginx waits 60 s for a head and 75 s on an idle connection, Apache 20 s and 5 s. The same
/// timer bounds both waits in hyper (it starts whenever hyper waits for a head), so there is
/// one setting: see [`SandboxBuilder::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to finish the TLS handshake once its TCP connection is accepted,
/// unless told otherwise (10 s).
///
/// A handshake is two round trips of a few kilobytes; 10 s covers a slow link, while a client
/// that connects and never sends its `ClientHello` holds a connection slot for at most that
/// long. See [`SandboxBuilder::tls_handshake_timeout`].
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections the sandbox serves at once, unless told otherwise (256).
///
/// Far above what a test or an example opens (the crate's load test uses 64), and small
/// enough that the memory they may hold stays bounded: each connection holds at most
/// [`DEFAULT_MAX_REQUEST_HEAD_BYTES`] of request head, the TLS buffers (tens of kilobytes) and
/// one body up to the verifier's limit. See [`SandboxBuilder::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The largest request head (request line and headers), in bytes, unless told otherwise
/// (64 KiB).
///
/// A signed Rampnow request needs well under 2 KiB; 64 KiB leaves room for long query strings
/// while keeping hyper's read buffer, which defaults to about 400 KiB, at 64 KiB a connection.
/// nginx stops at 8 KiB a line and 32 KiB in all, Apache at 8 KiB a line and 100 headers.
/// A larger head is answered `431 Request Header Fields Too Large`. See
/// [`SandboxBuilder::max_request_head_bytes`].
pub const DEFAULT_MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

/// The longest timeout accepted: one day (hyper adds it to the current instant, which must
/// not overflow).
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest request head accepted by [`SandboxBuilder::max_request_head_bytes`]: 16 MiB.
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024 * 1024;

/// hyper's smallest read buffer (`max_buf_size` panics below it).
const MIN_READ_BUFFER: usize = 8 * 1024;

/// The default [`max_body_size`](SandboxBuilder::max_body_size): 1 MiB. A Rampnow request body
/// is a small JSON document; the verifier's own default (10 MiB) would let each of the
/// sandbox's connections make it hold ten times more.
pub const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;

pub use routes::QUOTE_PATH;

/// The sandbox's default credentials: [`SANDBOX_API_KEY`] and [`SANDBOX_API_SECRET`].
///
/// # Example
///
/// ```
/// use rampnow_sandbox::{sandbox_credentials, SANDBOX_API_KEY};
///
/// assert_eq!(sandbox_credentials().api_key(), SANDBOX_API_KEY);
/// ```
#[must_use]
pub fn sandbox_credentials() -> Credentials {
    // Both are constants that pass every check of `Credentials::new` (a unit test keeps it so).
    Credentials::new(SANDBOX_API_KEY, SANDBOX_API_SECRET)
        .expect("the documented sandbox credentials are valid")
}

/// Configures and starts a [`Sandbox`]; made by [`Sandbox::builder`].
///
/// # Example
///
/// ```
/// use rampnow_sandbox::Sandbox;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let sandbox = Sandbox::builder()
///     .addr(([127, 0, 0, 1], 0).into()) // the default: a free port on loopback
///     .clock_skew_secs(300) // the sandbox's clock runs 5 minutes ahead
///     .reject_replays(1_000)
///     .quiet(true)
///     .start()
///     .await?;
/// assert!(sandbox.url().starts_with("https://127.0.0.1:"));
/// # Ok(()) }
/// ```
#[must_use]
pub struct SandboxBuilder {
    addr: SocketAddr,
    credentials: Option<Credentials>,
    other_keys: Vec<Credentials>,
    clock: Arc<dyn Clock>,
    clock_skew_secs: i64,
    replay_capacity: Option<usize>,
    quiet: bool,
    limits: Limits,
    rate_limit: Option<u32>,
    fail_every: Option<u64>,
}

/// The connection limits (see the module docs' "Limits").
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read_timeout: Duration,
    tls_handshake_timeout: Duration,
    max_connections: usize,
    max_request_head_bytes: usize,
    body_read_timeout: Duration,
    max_body_size: usize,
}

/// The largest clock skew accepted: ten years, far beyond any test's need.
const MAX_CLOCK_SKEW_SECS: u64 = 10 * 366 * 24 * 60 * 60;

impl SandboxBuilder {
    fn new() -> SandboxBuilder {
        SandboxBuilder {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            credentials: None,
            other_keys: Vec::new(),
            clock: Arc::new(SystemClock),
            clock_skew_secs: 0,
            replay_capacity: Some(DEFAULT_REPLAY_CAPACITY),
            quiet: false,
            limits: Limits {
                header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
                tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                max_request_head_bytes: DEFAULT_MAX_REQUEST_HEAD_BYTES,
                body_read_timeout: rampnow_auth::verify::DEFAULT_BODY_READ_TIMEOUT,
                max_body_size: DEFAULT_MAX_BODY_SIZE,
            },
            rate_limit: None,
            fail_every: None,
        }
    }

    /// Listens on `addr` (default `127.0.0.1:0`: a free port on loopback, see
    /// [`Sandbox::addr`]). An address other than loopback makes the sandbox, and its public
    /// default credentials, reachable from other machines.
    pub fn addr(mut self, addr: SocketAddr) -> SandboxBuilder {
        self.addr = addr;
        self
    }

    /// Accepts these credentials instead of [`sandbox_credentials`].
    pub fn credentials(mut self, credentials: Credentials) -> SandboxBuilder {
        self.credentials = Some(credentials);
        self
    }

    /// Accepts these credentials too, besides the main ones ([`credentials`](Self::credentials)
    /// or [`sandbox_credentials`]): a server knows several keys, as during a key rotation. A
    /// request sent with one key and signed with another's secret is refused, and the refusal
    /// names the key whose secret signed it (see [`diagnose`]). An API key already accepted is
    /// not added again: the first secret given for it (the main credentials' first) stays.
    /// At most [`MAX_OTHER_KEYS`](diagnose::MAX_OTHER_KEYS) other keys are tried as the secret
    /// when diagnosing; all of them are accepted.
    ///
    /// # Example
    ///
    /// ```
    /// use rampnow_auth::Credentials;
    /// use rampnow_sandbox::Sandbox;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sandbox = Sandbox::builder()
    ///     .also_accept(Credentials::new("ak_sandbox_new", "pk_sandbox_new_secret")?)
    ///     .quiet(true)
    ///     .start()
    ///     .await?;
    /// assert_eq!(sandbox.keys().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn also_accept(mut self, credentials: Credentials) -> SandboxBuilder {
        self.other_keys.push(credentials);
        self
    }

    /// Takes the sandbox's time from `clock` (a closure `Fn() -> SystemTime` or any [`Clock`])
    /// instead of the system clock. [`clock_skew_secs`](Self::clock_skew_secs) applies on top.
    pub fn with_clock(mut self, clock: impl Clock) -> SandboxBuilder {
        self.clock = Arc::new(clock);
        self
    }

    /// Runs the sandbox's clock `secs` seconds ahead (positive) or behind (negative) its
    /// clock, to see how a client copes with a server whose clock differs from its own: with
    /// more than 60 s either way, requests signed with the client's clock are refused as
    /// `stale_timestamp`. At most ten years either way ([`start`](Self::start) refuses more).
    pub fn clock_skew_secs(mut self, secs: i64) -> SandboxBuilder {
        self.clock_skew_secs = secs;
        self
    }

    /// Refuses a signature seen before, remembering at most `capacity` of them (default: on,
    /// with [`DEFAULT_REPLAY_CAPACITY`]). See
    /// [`RampnowVerifyLayer::reject_replays`](rampnow_auth::verify::RampnowVerifyLayer::reject_replays).
    pub fn reject_replays(mut self, capacity: usize) -> SandboxBuilder {
        self.replay_capacity = Some(capacity);
        self
    }

    /// Accepts a signature any number of times (while its timestamp is fresh), turning off the
    /// default replay protection.
    pub fn accept_replays(mut self) -> SandboxBuilder {
        self.replay_capacity = None;
        self
    }

    /// When `true`, writes nothing to stderr (the requests are still kept for
    /// [`Sandbox::log`]). Default `false`: one line per request.
    pub fn quiet(mut self, quiet: bool) -> SandboxBuilder {
        self.quiet = quiet;
        self
    }

    /// Closes a connection whose client has not sent a whole request head within `timeout`
    /// (default [`DEFAULT_HEADER_READ_TIMEOUT`]; at most one day).
    ///
    /// The same timeout bounds an idle kept-alive connection: hyper starts this timer whenever
    /// it waits for a request head, on a new connection and after each response, so a
    /// connection left idle after a request is closed once `timeout` has passed. A separate
    /// idle timeout would need hyper to tell idle time from a slow head, which it does not.
    /// The time to send a body is not bounded here.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampnow_sandbox::Sandbox;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let sandbox = Sandbox::builder()
    ///     .header_read_timeout(Duration::from_secs(2))
    ///     .tls_handshake_timeout(Duration::from_secs(2))
    ///     .max_connections(16)
    ///     .max_request_head_bytes(16 * 1024)
    ///     .quiet(true)
    ///     .start()
    ///     .await?;
    /// # drop(sandbox);
    /// # Ok(()) }
    /// ```
    pub fn header_read_timeout(mut self, timeout: Duration) -> SandboxBuilder {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// Closes a connection whose TLS handshake has not finished within `timeout` of its TCP
    /// connection being accepted (default [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`]; at most one day).
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> SandboxBuilder {
        self.limits.tls_handshake_timeout = timeout;
        self
    }

    /// Serves at most `max` connections at once (default [`DEFAULT_MAX_CONNECTIONS`]; at least
    /// one).
    ///
    /// At the cap the sandbox stops accepting: a new connection waits in the kernel's listen
    /// queue, unanswered, until one of the open connections closes (its client closes it, or
    /// it misses a timeout), and is then served. Waiting rather than closing at once lets a
    /// burst of well-behaved clients through a little later instead of failing them; the
    /// timeouts bound how long stalled connections can keep the slots.
    pub fn max_connections(mut self, max: usize) -> SandboxBuilder {
        self.limits.max_connections = max;
        self
    }

    /// Refuses a request whose head (request line and headers) is larger than `bytes` with
    /// `431 Request Header Fields Too Large`, and closes its connection (default
    /// [`DEFAULT_MAX_REQUEST_HEAD_BYTES`]; from 1 byte to 16 MiB). It also caps hyper's read
    /// buffer at `bytes` (or 8 KiB, hyper's minimum, if larger).
    pub fn max_request_head_bytes(mut self, bytes: usize) -> SandboxBuilder {
        self.limits.max_request_head_bytes = bytes;
        self
    }

    /// Answers `408 Request Timeout` (`{"code": "body_timeout", ...}`) and closes the
    /// connection when a request body has not arrived whole within `timeout` of the verifier's
    /// first wait for it (default
    /// [`DEFAULT_BODY_READ_TIMEOUT`](rampnow_auth::verify::DEFAULT_BODY_READ_TIMEOUT), 30 s; at most one
    /// day): a body trickling one byte at a time cannot hold a connection open. It is the
    /// verifier's [`body_read_timeout`](rampnow_auth::verify::RampnowVerifyLayer::body_read_timeout).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampnow_sandbox::Sandbox;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let sandbox = Sandbox::builder()
    ///     .body_read_timeout(Duration::from_secs(5))
    ///     .quiet(true)
    ///     .start()
    ///     .await?;
    /// # drop(sandbox);
    /// # Ok(()) }
    /// ```
    pub fn body_read_timeout(mut self, timeout: Duration) -> SandboxBuilder {
        self.limits.body_read_timeout = timeout;
        self
    }

    /// Refuses a request body larger than `bytes` with `413` (`body_too_large`; default
    /// [`DEFAULT_MAX_BODY_SIZE`], 1 MiB). It is the verifier's
    /// [`max_body_size`](rampnow_auth::verify::RampnowVerifyLayer::max_body_size).
    pub fn max_body_size(mut self, bytes: usize) -> SandboxBuilder {
        self.limits.max_body_size = bytes;
        self
    }

    /// Plays Rampnow's rate limit: past `per_second` requests within one second from one
    /// client address, answers `429 Too Many Requests` with `Retry-After` and a JSON body with
    /// the code `rate_limited` (default: off; from 1 to [`MAX_RATE_LIMIT`]; Rampnow allows 20
    /// in production and 15 in staging).
    ///
    /// Exactly: a request is refused when `per_second` requests from its IP address (any port;
    /// an IPv4-mapped IPv6 address counts as its IPv4 address) were already *accepted* within
    /// the last second, a sliding window, so no one-second interval ever holds more than
    /// `per_second` accepted requests from one address. Refused requests do not count.
    /// `Retry-After` is the time until a request would be accepted, in whole seconds rounded
    /// up (with a one-second window, always `1`). The limit applies before the signature is
    /// verified, as at a real gateway: unsigned and badly signed requests count, and a refused
    /// request is not verified (its signature is not remembered as used). The limiter tracks
    /// at most [`RATE_LIMIT_MAX_ADDRESSES`] addresses; see there for what happens past it,
    /// and for the memory it holds.
    ///
    /// # Example
    ///
    /// ```
    /// use rampnow_sandbox::Sandbox;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let sandbox = Sandbox::builder()
    ///     .rate_limit(20) // as Rampnow's production API
    ///     .fail_every(10) // and the 10th, 20th, ... request fails with 503
    ///     .quiet(true)
    ///     .start()
    ///     .await?;
    /// # drop(sandbox);
    /// assert!(Sandbox::builder().rate_limit(0).start().await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn rate_limit(mut self, per_second: u32) -> SandboxBuilder {
        self.rate_limit = Some(per_second);
        self
    }

    /// Fails the `k`-th, `2k`-th, `3k`-th, ... request with `503 Service Unavailable` and a
    /// JSON body with the code `service_unavailable` (default: off; `1` fails every request,
    /// `0` is refused by [`start`](Self::start)), to see a client retry.
    ///
    /// Requests are counted by one counter for the whole sandbox, in the order they arrive,
    /// across connections and addresses; only requests that passed the
    /// [`rate_limit`](Self::rate_limit) count. The failure comes before the signature is
    /// verified: nothing was processed, and the signature is not remembered as used. No
    /// `Retry-After` is sent, since the next request is served at once: a client's own backoff
    /// decides when it retries.
    pub fn fail_every(mut self, k: u64) -> SandboxBuilder {
        self.fail_every = Some(k);
        self
    }

    /// Makes a certificate, binds the address and starts serving on the current Tokio runtime,
    /// in the background, until the [`Sandbox`] is dropped or [shut down](Sandbox::shutdown).
    ///
    /// # Errors
    ///
    /// An [`io::Error`] saying what to do when it is not called within a Tokio runtime, when
    /// the address cannot be bound (in use, or a privileged port), when the clock skew is more
    /// than ten years, when a limit is out of range (a timeout of zero or more than a day, no
    /// connections, or a head limit of zero or more than 16 MiB), or (a bug) when the
    /// certificate cannot be made.
    pub async fn start(self) -> io::Result<Sandbox> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "the Rampnow sandbox must be started within a Tokio runtime (for example in \
                 `#[tokio::main]` or `#[tokio::test]`)",
            ));
        }
        if self.clock_skew_secs.unsigned_abs() > MAX_CLOCK_SKEW_SECS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a clock skew of {} s is more than ten years; give the sandbox's clock \
                     offset in seconds, for example 300 for five minutes ahead",
                    self.clock_skew_secs
                ),
            ));
        }
        self.limits.check()?;
        let throttle = Throttle::new(self.rate_limit, self.fail_every)?.map(Arc::new);
        let credentials = self.credentials.unwrap_or_else(sandbox_credentials);
        let mut keys = vec![credentials.clone()];
        for other in self.other_keys {
            if keys.iter().all(|k| k.api_key() != other.api_key()) {
                keys.push(other);
            }
        }
        let keys: Arc<[Credentials]> = keys.into();
        let tls = Tls::generate().map_err(|error| {
            io::Error::other(format!(
                "the Rampnow sandbox could not make its TLS certificate ({error}); this is a bug \
                 in rampnow-auth, please report it"
            ))
        })?;
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|error| bind_error(self.addr, &error))?;
        let addr = listener.local_addr()?;
        if !self.quiet && !addr.ip().is_loopback() {
            eprintln!(
                "rampnow-sandbox: warning: listening on {addr}, which other machines can reach; \
                 anyone there can use the sandbox's credentials"
            );
        }

        let clock = Arc::new(SkewedClock {
            base: self.clock,
            skew_secs: self.clock_skew_secs,
        });
        let mut verify = RampnowVerifyLayer::new(keys.to_vec())
            .with_clock(clock.clone())
            .body_read_timeout(self.limits.body_read_timeout)
            .max_body_size(self.limits.max_body_size);
        if let Some(capacity) = self.replay_capacity {
            verify = verify.reject_replays(capacity);
        }
        let log = Arc::new(RequestLog::new(self.quiet));
        let shared = Arc::new(Shared {
            log: log.clone(),
            clock,
            keys: keys.clone(),
            throttle,
            budget: refusals::Budget::new(),
        });
        let task = tokio::spawn(serve(
            listener,
            TlsAcceptor::from(tls.server),
            verify.clone(),
            shared,
            self.limits,
        ));
        Ok(Sandbox {
            addr,
            ca_cert_pem: tls.ca_pem,
            ca_cert_der: tls.ca_der,
            client_config: tls.client,
            credentials,
            keys,
            verify,
            log,
            task,
        })
    }
}

impl fmt::Debug for SandboxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxBuilder")
            .field("addr", &self.addr)
            .field("credentials", &self.credentials)
            .field("other_keys", &self.other_keys)
            .field("clock_skew_secs", &self.clock_skew_secs)
            .field("replay_capacity", &self.replay_capacity)
            .field("quiet", &self.quiet)
            .field("header_read_timeout", &self.limits.header_read_timeout)
            .field("tls_handshake_timeout", &self.limits.tls_handshake_timeout)
            .field("max_connections", &self.limits.max_connections)
            .field(
                "max_request_head_bytes",
                &self.limits.max_request_head_bytes,
            )
            .field("body_read_timeout", &self.limits.body_read_timeout)
            .field("max_body_size", &self.limits.max_body_size)
            .field("rate_limit", &self.rate_limit)
            .field("fail_every", &self.fail_every)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Refuses values that would disable a limit by accident or make hyper panic.
    fn check(&self) -> io::Result<()> {
        let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        for (name, timeout) in [
            ("header_read_timeout", self.header_read_timeout),
            ("tls_handshake_timeout", self.tls_handshake_timeout),
            ("body_read_timeout", self.body_read_timeout),
        ] {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return invalid(format!(
                    "the sandbox's {name} of {timeout:?} is out of range; give a duration above \
                     zero and at most one day, such as 10 s"
                ));
            }
        }
        if self.max_connections == 0 || self.max_connections > Semaphore::MAX_PERMITS {
            return invalid(format!(
                "the sandbox's max_connections of {} is out of range; give from 1 to {}, such \
                 as {DEFAULT_MAX_CONNECTIONS}",
                self.max_connections,
                Semaphore::MAX_PERMITS
            ));
        }
        if self.max_request_head_bytes == 0 || self.max_request_head_bytes > MAX_REQUEST_HEAD_BYTES
        {
            return invalid(format!(
                "the sandbox's max_request_head_bytes of {} is out of range; give from 1 byte to \
                 16 MiB, such as {DEFAULT_MAX_REQUEST_HEAD_BYTES}",
                self.max_request_head_bytes
            ));
        }
        Ok(())
    }

    /// hyper's HTTP/1 settings for these limits.
    fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_header_size(self.max_request_head_bytes)
            // At least hyper's minimum (checked above to be reachable): never panics.
            .max_buf_size(self.max_request_head_bytes.max(MIN_READ_BUFFER));
        http
    }
}

fn bind_error(addr: SocketAddr, error: &io::Error) -> io::Error {
    let hint = match error.kind() {
        io::ErrorKind::AddrInUse => {
            "; another program (perhaps another sandbox) uses that port: stop it, or choose \
             another port (port 0 picks a free one)"
        }
        io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need special privileges: choose a port above 1024"
        }
        io::ErrorKind::AddrNotAvailable => {
            "; that address is not one of this machine's: use 127.0.0.1 to stay on this machine"
        }
        _ => "",
    };
    io::Error::new(
        error.kind(),
        format!("the Rampnow sandbox could not listen on {addr}: {error}{hint}"),
    )
}

/// A running sandbox: a local HTTPS server verifying Rampnow signatures. See
/// [the module docs](self) for what it serves.
///
/// It runs on the Tokio runtime it was started on, in the background, until it is dropped
/// (which stops it at once) or [shut down](Sandbox::shutdown).
///
/// # Quotes
///
/// A quote request names `srcCurrency` and `dstCurrency` (any two different codes of `USD`,
/// `EUR`, `GBP`, `BTC`, `ETH`, `SOL`, `USDC`, `USDT`; in any case) and `srcAmount` (plain
/// decimal digits, as a string or a JSON number, above 0 and at most 1,000,000,000). The
/// answer, with amounts as strings:
///
/// ```json
/// {
///   "quoteId": "sbx_quote_8f52ee1907cc7430",
///   "srcCurrency": "USD", "dstCurrency": "BTC", "srcAmount": "100",
///   "feeAmount": "1.00", "feeCurrency": "USD",
///   "rate": "0.00002000", "dstAmount": "0.00198000",
///   "sandbox": true
/// }
/// ```
///
/// Prices in US dollars, made up and fixed: BTC 50,000; ETH 2,500; SOL 100; EUR 1.10;
/// GBP 1.25; USD, USDC and USDT 1. The fee is 1 % of `srcAmount`, `rate` is the price of
/// `srcCurrency` in `dstCurrency`, `dstAmount` is `(srcAmount - feeAmount) × rate`, and
/// `quoteId` is a hash of the three inputs.
pub struct Sandbox {
    addr: SocketAddr,
    ca_cert_pem: String,
    ca_cert_der: CertificateDer<'static>,
    client_config: rustls::ClientConfig,
    credentials: Credentials,
    keys: Arc<[Credentials]>,
    verify: RampnowVerifyLayer,
    log: Arc<RequestLog>,
    task: JoinHandle<()>,
}

impl Sandbox {
    /// A builder, to set the address, credentials, clock, replay protection, quietness or
    /// connection limits.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::new()
    }

    /// Starts a sandbox with the defaults: a free port on `127.0.0.1`, the
    /// [`sandbox_credentials`], the system clock, replays refused, a line per request on stderr.
    ///
    /// # Errors
    ///
    /// As [`SandboxBuilder::start`].
    pub async fn start() -> io::Result<Sandbox> {
        SandboxBuilder::new().start().await
    }

    /// The address the sandbox listens on, with the actual port when port 0 was asked for.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `https://127.0.0.1:PORT` (no trailing slash): append a path such as
    /// [`QUOTE_PATH`].
    #[must_use]
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The certificate of the authority that signed the sandbox's server certificate, in PEM
    /// (made when the sandbox started, valid for `127.0.0.1`, `::1` and `localhost`). Trust it
    /// in a client to reach the sandbox, e.g. `curl --cacert ca.pem`.
    #[must_use]
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The same certificate as [`ca_cert_pem`](Self::ca_cert_pem), in DER.
    #[must_use]
    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_cert_der
    }

    /// A rustls client configuration (with rustls' default provider, `aws-lc-rs`) that trusts only the sandbox's
    /// certificate: give it to `hyper_rustls::HttpsConnectorBuilder::with_tls_config` or
    /// `tokio_rustls::TlsConnector`.
    #[must_use]
    pub fn rustls_client_config(&self) -> rustls::ClientConfig {
        self.client_config.clone()
    }

    /// The credentials the sandbox accepts.
    #[must_use]
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Every key the sandbox accepts: its [`credentials`](Self::credentials) first, then those
    /// given to [`also_accept`](SandboxBuilder::also_accept).
    #[must_use]
    pub fn keys(&self) -> &[Credentials] {
        &self.keys
    }

    /// The requests served so far, oldest first: at most the last [`LOG_CAPACITY`], in at most
    /// [`LOG_MAX_BYTES`], each target cut to [`LOG_TARGET_MAX_BYTES`]. A request is logged
    /// before its response is sent, so it is here once the client has the response.
    #[must_use]
    pub fn log(&self) -> Vec<LogEntry> {
        self.log.entries()
    }

    /// How many signatures the replay memory holds, or `None` when replays are accepted.
    #[must_use]
    pub fn remembered_signatures(&self) -> Option<usize> {
        self.verify.remembered_signatures()
    }

    /// Stops the sandbox: when this returns, the port is closed. Connections still open are
    /// dropped without an answer. Dropping the sandbox does the same without waiting.
    pub async fn shutdown(mut self) {
        self.task.abort();
        // The task's only outcome now is "cancelled" (it never panics or returns on its own).
        let _ = (&mut self.task).await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("url", &self.url())
            .field("credentials", &self.credentials)
            .field("remembered_signatures", &self.remembered_signatures())
            .finish_non_exhaustive()
    }
}

/// One request the sandbox served: what was asked, the answer's status, and why the verifier
/// refused it, if it did.
///
/// `Display` writes the line the sandbox prints to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogEntry {
    /// The request method.
    pub method: Method,
    /// The request target as received (path and query), cut to at most
    /// [`LOG_TARGET_MAX_BYTES`] and then ending with `…[truncated, N bytes]`.
    pub target: String,
    /// The status answered.
    pub status: StatusCode,
    /// Why the verifier refused the request; `None` when the signature verified (the routes
    /// then answered, whatever the status) or the request did not reach the verifier. Its
    /// reason is the verifier's; the reason sent names the [`diagnosis`](Self::diagnosis) too.
    pub rejection: Option<Rejection>,
    /// Why the sandbox refused the request before the verifier, when it played a limit
    /// ([`rate_limit`](SandboxBuilder::rate_limit), `429`, or
    /// [`fail_every`](SandboxBuilder::fail_every), `503`); `None` when the request went on.
    pub limit: Option<LimitRefusal>,
    /// The mistake the sandbox found behind a `signature_mismatch`, `invalid_signature` or
    /// `stale_timestamp` refusal, if it found one (see [`diagnose`]).
    pub diagnosis: Option<Diagnosis>,
}

impl LogEntry {
    /// Whether the signature verified (the request reached the routes).
    #[must_use]
    pub fn verified(&self) -> bool {
        self.rejection.is_none() && self.limit.is_none()
    }
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = cut(self.method.as_str(), LOG_METHOD_MAX_BYTES);
        write!(f, "{method} {} -> {}", self.target, self.status)?;
        match (&self.limit, &self.rejection) {
            (Some(limit), _) => write!(f, " refused before verifying: {limit}"),
            (None, Some(rejection)) => {
                write!(f, " refused: {rejection}")?;
                match &self.diagnosis {
                    Some(diagnosis) => write!(f, " [diagnosis: {diagnosis}]"),
                    None => Ok(()),
                }
            }
            (None, None) => f.write_str(" (signature verified)"),
        }
    }
}

/// `text` if it has at most `max` bytes, else its start cut on a character boundary and a
/// marker with its whole length, in at most `max` bytes all told (`max` is at least 64).
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let marker = format!("…[truncated, {} bytes]", text.len());
    let mut end = max.saturating_sub(marker.len());
    while !text.is_char_boundary(end) {
        end -= 1; // stops at 0 at the latest, a boundary
    }
    let mut kept = String::with_capacity(end + marker.len());
    kept.push_str(&text[..end]);
    kept.push_str(&marker);
    kept
}

/// The kept requests, and whether to print them.
struct RequestLog {
    quiet: bool,
    state: Mutex<LogState>,
}

/// The entries, and the bytes they hold (see [`LOG_MAX_BYTES`]).
#[derive(Default)]
struct LogState {
    entries: VecDeque<LogEntry>,
    bytes: usize,
}

impl RequestLog {
    fn new(quiet: bool) -> RequestLog {
        RequestLog {
            quiet,
            state: Mutex::new(LogState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        // Every update below completes or does nothing, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entries(&self) -> Vec<LogEntry> {
        self.state().entries.iter().cloned().collect()
    }

    /// The bytes the entries hold, as counted against [`LOG_MAX_BYTES`].
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.state().bytes
    }

    /// What an entry holds: itself, its target, a method too long to be stored inline (a
    /// standard or short method holds nothing more) and the reason of a refusal.
    fn bytes_of(entry: &LogEntry) -> usize {
        std::mem::size_of::<LogEntry>()
            + entry.target.capacity()
            + entry.method.as_str().len()
            + entry.rejection.as_ref().map_or(0, |r| r.reason().len())
            + entry.diagnosis.as_ref().map_or(0, |d| {
                std::mem::size_of_val(d.mistakes()) + d.other_api_key().map_or(0, str::len)
            })
    }

    fn record(&self, entry: LogEntry) {
        if !self.quiet {
            eprintln!("rampnow-sandbox: {entry}");
        }
        let bytes = Self::bytes_of(&entry);
        let mut state = self.state();
        while state.entries.len() >= LOG_CAPACITY
            || (state.bytes + bytes > LOG_MAX_BYTES && !state.entries.is_empty())
        {
            if let Some(oldest) = state.entries.pop_front() {
                state.bytes -= Self::bytes_of(&oldest);
            }
        }
        state.bytes += bytes;
        state.entries.push_back(entry);
    }
}

/// A clock a fixed number of seconds ahead of (or behind) another.
struct SkewedClock {
    base: Arc<dyn Clock>,
    skew_secs: i64,
}

impl Clock for SkewedClock {
    fn now(&self) -> SystemTime {
        // At most ten years (checked at start); unchanged if it would leave `SystemTime`'s range.
        let now = self.base.now();
        let by = Duration::from_secs(self.skew_secs.unsigned_abs());
        let skewed = if self.skew_secs >= 0 {
            now.checked_add(by)
        } else {
            now.checked_sub(by)
        };
        skewed.unwrap_or(now)
    }
}

/// The certificate authority, the server's TLS configuration, and a client one trusting it.
struct Tls {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server: Arc<rustls::ServerConfig>,
    client: rustls::ClientConfig,
}

impl Tls {
    fn generate() -> Result<Tls, Box<dyn std::error::Error + Send + Sync>> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "rampnow-auth sandbox CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let server_key = KeyPair::generate()?;
        let mut server_params = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            "localhost".to_owned(),
        ])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "rampnow-auth sandbox");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.use_authority_key_identifier_extension = true;
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone(), ca.der().clone()], key)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone())?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();

        Ok(Tls {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server: Arc::new(server),
            client,
        })
    }
}

/// The `400` answer to a request refused before the verifier; the connection is closed after
/// it, since what follows on it cannot be trusted either.
fn refuse<B>(request: &Request<B>, refusal: &Refusal, quiet: bool) -> Response<Full<Bytes>> {
    if !quiet {
        let target = request.uri().path_and_query().map_or_else(
            || "/".to_owned(),
            |pq| cut(pq.as_str(), LOG_TARGET_MAX_BYTES),
        );
        let method = cut(request.method().as_str(), LOG_METHOD_MAX_BYTES);
        let what = match refusal {
            Refusal::Fragment => "its target has a fragment",
            Refusal::Untracked => "its target could not be matched to the bytes received",
        };
        eprintln!("rampnow-sandbox: {method} {target} -> 400 refused before verifying: {what}");
    }
    let mut response = routes::error_response(
        StatusCode::BAD_REQUEST,
        "invalid_target",
        refusal.reason().to_owned(),
    );
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The address of the client that sent a request, for the rate limit.
#[derive(Debug, Clone, Copy)]
struct Client(IpAddr);

/// The answer to a request refused by a limit the sandbox plays.
fn limit_response(limit: &LimitRefusal) -> Response<Full<Bytes>> {
    let mut response = routes::error_response(limit.status(), limit.code(), limit.reason());
    if let Some(after) = limit.retry_after() {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(after.as_secs()));
    }
    response
}

/// What the requests of every connection share.
struct Shared {
    log: Arc<RequestLog>,
    /// The sandbox's clock, skew included: the verifier's, and the one its `Date` comes from.
    clock: Arc<SkewedClock>,
    /// The keys it accepts, for the diagnosis of a refused signature.
    keys: Arc<[Credentials]>,
    /// The rate limit it plays, if any.
    throttle: Option<Arc<Throttle>>,
    /// The bound on the hashing that diagnoses do.
    budget: refusals::Budget,
}

/// Accepts connections until the task is aborted; dropping it drops the listener and aborts
/// every connection (the `JoinSet`).
async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    verify: RampnowVerifyLayer,
    shared: Arc<Shared>,
    limits: Limits,
) {
    let quiet = shared.log.quiet;
    let http = limits.http1();
    // Above hyper's read buffer: a head the tracker cannot follow, hyper refuses first.
    let head_limit = limits
        .max_request_head_bytes
        .max(MIN_READ_BUFFER)
        .saturating_add(1024);
    // One permit per open connection, held by its task: tower's `ConcurrencyLimit` counts
    // requests in flight, not connections (an idle or stalled connection holds no request).
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let routes = verify.layer(service_fn(routes::route));
    // Outermost: note each request and its answer, including the verifier's refusals, and
    // diagnose a refused signature.
    let service = service_fn(move |request: Request<Incoming>| {
        let method = request.method().clone();
        // Cut now: anyone can send a 60 KB target, signed or not.
        let target = request.uri().path_and_query().map_or_else(
            || "/".to_owned(),
            |pq| cut(pq.as_str(), LOG_TARGET_MAX_BYTES),
        );
        // The limits the sandbox plays come first, as at a gateway in front of the API.
        let client = request.extensions().get::<Client>().map(|client| client.0);
        let limit = match (&shared.throttle, client) {
            (Some(throttle), Some(ip)) => throttle.check(ip, Instant::now()).err(),
            _ => None,
        };
        let routes = routes.clone();
        let shared = shared.clone();
        async move {
            let Shared {
                log,
                clock,
                keys,
                budget,
                ..
            } = &*shared;
            let mut rejection = None;
            let mut diagnosis = None;
            let mut response = match &limit {
                Some(limit) => limit_response(limit),
                None => {
                    let (request, kept) = refusals::keep(
                        request,
                        keys,
                        limits.body_read_timeout,
                        limits.max_body_size,
                    )
                    .await;
                    let mut response = routes.oneshot(request).await?;
                    rejection = response.extensions().get::<Rejection>().cloned();
                    if let (Some(rejection), Some(kept)) = (&rejection, &kept) {
                        let now = clock
                            .now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .ok()
                            .map(|d| d.as_secs());
                        (response, diagnosis) =
                            refusals::with_diagnosis(response, rejection, kept, keys, budget, now)
                                .await;
                    }
                    response
                }
            };
            // The `Date` a real server sends comes from its own clock, skew included; clients
            // that sync to the server's time learn from it.
            if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(clock.now())) {
                response.headers_mut().insert(DATE, date);
            }
            log.record(LogEntry {
                method,
                target,
                status: response.status(),
                rejection,
                limit,
                diagnosis,
            });
            Ok::<_, Infallible>(response)
        }
    });

    let mut connections = JoinSet::new();
    loop {
        // Forget finished connections, so the set does not grow.
        while connections.try_join_next().is_some() {}
        // At the cap, stop accepting until a connection closes: new clients wait in the
        // kernel's listen queue rather than being cut off.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // never: the semaphore is not closed
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors, or a connection reset before it was accepted: wait a
                // little rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = service.clone();
        let http = http.clone();
        connections.spawn(async move {
            let _slot = slot; // released when the connection ends, however it ends
            let handshake =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Err(_elapsed) => {
                    if !quiet {
                        eprintln!(
                            "rampnow-sandbox: closed the connection from {peer}: its TLS \
                             handshake did not finish within {:?}",
                            limits.tls_handshake_timeout
                        );
                    }
                    return;
                }
                Ok(Err(error)) => {
                    if quiet {
                        return;
                    }
                    eprintln!(
                        "rampnow-sandbox: TLS handshake with {peer} failed: {error} (does the \
                         client trust the sandbox's certificate?)"
                    );
                    return;
                }
            };
            // Follow the decrypted bytes to see each request line's raw target, which hyper's
            // `Uri` no longer shows, and refuse a fragment before the verifier.
            let targets = Targets::default();
            let io = TargetTracker::new(stream, targets.clone(), head_limit);
            let service = service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(Client(peer.ip()));
                let verdict = targets.check(&request);
                let service = service.clone();
                async move {
                    match verdict {
                        Ok(()) => service.oneshot(request).await,
                        Err(refusal) => Ok(refuse(&request, &refusal, quiet)),
                    }
                }
            });
            // A client that goes away mid-request, or misses the header read timeout, is its own
            // business: nothing to report.
            let _ = http
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_credentials_are_valid() {
        let credentials = sandbox_credentials();
        assert_eq!(credentials.api_key(), SANDBOX_API_KEY);
    }

    #[test]
    fn a_skewed_clock_moves_both_ways() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = |skew_secs| SkewedClock {
            base: Arc::new(move || base),
            skew_secs,
        };
        assert_eq!(clock(300).now(), base + Duration::from_secs(300));
        assert_eq!(clock(-300).now(), base - Duration::from_secs(300));
        assert_eq!(clock(0).now(), base);
    }

    fn entry(method: Method, target: &str, rejection: Option<Rejection>) -> LogEntry {
        LogEntry {
            method,
            target: cut(target, LOG_TARGET_MAX_BYTES),
            status: StatusCode::UNAUTHORIZED,
            rejection,
            limit: None,
            diagnosis: None,
        }
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_a_marker() {
        assert_eq!(cut("/short", 64), "/short");
        let exact = "a".repeat(64);
        assert_eq!(cut(&exact, 64), exact);
        for text in [
            "/".repeat(60_000),
            "é".repeat(30_000),  // two bytes each
            "€x".repeat(15_000), // three, then one
            "😀".repeat(15_000), // four
        ] {
            for max in [64, 65, 66, 67, LOG_TARGET_MAX_BYTES] {
                let kept = cut(&text, max);
                assert!(kept.len() <= max, "{} > {max}", kept.len());
                let marker = format!("…[truncated, {} bytes]", text.len());
                assert!(kept.ends_with(&marker), "{kept}");
                assert!(text.starts_with(&kept[..kept.len() - marker.len()]));
                assert!(kept.len() + 4 > max, "cut more than a character short");
            }
        }
    }

    #[test]
    fn the_log_is_bounded_in_entries_and_in_bytes() {
        let log = RequestLog::new(true);
        let huge = format!("/api/partner/v1/x?q={}", "a".repeat(60_000));
        let mut records = 0;
        for i in 0..2 * LOG_CAPACITY {
            log.record(entry(Method::GET, &huge, None));
            records += 1;
            assert!(log.held_bytes() <= LOG_MAX_BYTES, "{i}");
        }
        let entries = log.entries();
        assert!(entries.len() < LOG_CAPACITY && !entries.is_empty());
        assert!(entries
            .iter()
            .all(|e| e.target.len() <= LOG_TARGET_MAX_BYTES && e.target.ends_with("bytes]")));
        let counted: usize = entries.iter().map(RequestLog::bytes_of).sum();
        assert_eq!(counted, log.held_bytes());
        // Without the byte bound, these entries would hold about 1.2 GB.
        assert!(records * huge.len() > 100 * LOG_MAX_BYTES);

        // Extension methods as long as a head allows count too.
        let long_method = Method::from_bytes("M".repeat(60_000).as_bytes()).unwrap();
        for _ in 0..1_000 {
            log.record(entry(long_method.clone(), "/", None));
            assert!(log.held_bytes() <= LOG_MAX_BYTES);
        }
        // Small entries: the entry cap binds, not the byte cap.
        for _ in 0..2 * LOG_CAPACITY {
            log.record(entry(Method::POST, QUOTE_PATH, None));
        }
        assert_eq!(log.entries().len(), LOG_CAPACITY);
        assert!(log.held_bytes() <= LOG_MAX_BYTES);
    }

    #[test]
    fn a_log_line_is_bounded() {
        let long_method = Method::from_bytes("M".repeat(60_000).as_bytes()).unwrap();
        let huge = "/".repeat(60_000);
        let line = entry(long_method, &huge, None).to_string();
        assert!(
            line.len() <= LOG_METHOD_MAX_BYTES + LOG_TARGET_MAX_BYTES + 64,
            "{}",
            line.len()
        );
        assert!(line.contains("…[truncated, 60000 bytes] -> 401"), "{line}");
    }

    #[test]
    fn starting_outside_a_tokio_runtime_is_an_error_not_a_panic() {
        let start = std::pin::pin!(Sandbox::builder().quiet(true).start());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(Err(error)) = std::future::Future::poll(start, &mut cx) else {
            panic!("expected an immediate error");
        };
        assert!(
            error.to_string().contains("within a Tokio runtime"),
            "{error}"
        );
    }
}
