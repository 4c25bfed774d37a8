//! The signing middleware: [`RampnowAuthLayer`] and the service it builds, [`RampnowAuth`],
//! a thin adapter over the signing core ([`crate::signing`]).

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::RampnowAuthLayer;
pub use service::RampnowAuth;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, Method, StatusCode};

use crate::clock::{Clock, SystemClock};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::headers::{HeaderNames, Preset};
use crate::receipt::{Seed, SigningReceipt};
use crate::signing::{self, SigningSettings};
use crate::sync::{OriginTime, ServerTime};

/// The default [`max_body_size`](RampnowAuthLayer::max_body_size): 10 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = signing::DEFAULT_MAX_BODY_SIZE;

/// Swaps the credentials of a layer, and of every service built from it, at once.
///
/// Got from [`RampnowAuthLayer::credentials_handle`]. A rotation takes effect from the next
/// request that starts signing; a request signs with one snapshot of the credentials (its API
/// key header and its signature always match). Reading the credentials on the signing path
/// takes no lock.
///
/// # Example
///
/// ```
/// use rampnow_auth::{Credentials, RampnowAuthLayer};
///
/// let layer = RampnowAuthLayer::new(Credentials::new("ak_live_old", "pk_live_old")?);
/// let handle = layer.credentials_handle();
/// handle.rotate(Credentials::new("ak_live_new", "pk_live_new")?);
/// assert_eq!(handle.current().api_key(), "ak_live_new");
/// # Ok::<(), rampnow_auth::Error>(())
/// ```
#[derive(Clone)]
pub struct CredentialsHandle {
    cell: Arc<ArcSwap<Credentials>>,
}

impl CredentialsHandle {
    /// Replaces the credentials for every clone of the layer and every service built from it.
    pub fn rotate(&self, credentials: Credentials) {
        self.cell.store(Arc::new(credentials));
    }

    /// The credentials signing now.
    #[must_use]
    pub fn current(&self) -> Credentials {
        Credentials::clone(&self.cell.load())
    }
}

impl fmt::Debug for CredentialsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsHandle")
            .field("current", &*self.cell.load())
            .finish()
    }
}

/// Configuration shared by a layer, every service it builds and its reqwest middleware: what
/// the signing core needs (credentials, a clock, the settings), and the server-time state the
/// responses teach.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) credentials: Arc<ArcSwap<Credentials>>,
    /// The clock given to `with_clock` (the system clock by default); with server-time sync,
    /// each request's origin's offset is added to it (the [`ServerClock`](crate::ServerClock)
    /// correction).
    clock: Arc<dyn Clock>,
    pub(crate) settings: SigningSettings,
    pub(crate) server_time: Option<ServerTime>,
}

/// What is kept of a signed request until its response arrives.
pub(crate) struct Sent {
    /// The local clock's reading when the request was signed, for server-time sync.
    pub(crate) at: SystemTime,
    /// What server-time sync learns of the request's origin, when it is on.
    pub(crate) origin_time: Option<Arc<OriginTime>>,
    pub(crate) seed: Seed,
}

impl Sent {
    /// What the response to this request teaches (server-time sync, when `config` is kept: see
    /// [`Config::for_response`]), and the receipt for a 401, to put into its extensions: the one
    /// place every adapter's response goes through.
    #[must_use = "a 401's receipt must be put into the response's extensions"]
    #[inline]
    pub(crate) fn received(
        &self,
        config: Option<&Config>,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<SigningReceipt> {
        // The usual response: nothing to learn, nothing to explain (inlined into the futures).
        if config.is_none() && status != StatusCode::UNAUTHORIZED {
            return None;
        }
        self.learn_and_explain(config, status, headers)
    }

    fn learn_and_explain(
        &self,
        config: Option<&Config>,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<SigningReceipt> {
        if let (Some(config), Some(origin)) = (config, &self.origin_time) {
            if let Some(server_time) = &config.server_time {
                server_time.observe(origin, headers, self.at, config.clock.now());
            }
        }
        if status != StatusCode::UNAUTHORIZED {
            return None;
        }
        // Without the configuration, the names are a preset (`for_response` keeps it otherwise).
        let names = match config {
            Some(config) => config.settings.names.clone(),
            None => HeaderNames::of_preset(self.seed.names)?,
        };
        Some(self.seed.to_receipt(&names))
    }
}

impl Config {
    pub(crate) fn new(credentials: Credentials) -> Config {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Config {
            credentials: Arc::new(ArcSwap::from_pointee(credentials)),
            clock,
            settings: SigningSettings::new(),
            server_time: None,
        }
    }

    /// Times signatures by `clock` (corrected by the server time when it is synced).
    pub(crate) fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    pub(crate) fn set_server_time(&mut self, server_time: ServerTime) {
        self.server_time = Some(server_time);
    }

    /// Signs the prepared request whose body has been read (within the limit) with the core,
    /// and applies the instructions to its headers; returns what is kept for the response.
    pub(crate) fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        body: &Bytes,
    ) -> Result<Sent, Error> {
        let local = self.clock.now();
        // Server-time sync: the offset learned for this request's origin, and only that one.
        let origin_time = self
            .server_time
            .as_ref()
            .and_then(|server_time| server_time.origin(uri));
        let at = origin_time
            .as_ref()
            .map_or(local, |origin| origin.correct(local));
        let target = uri.path_and_query();
        // One snapshot: the key header and the signature come from the same credentials.
        let credentials = self.credentials.load();
        let signed = signing::sign_into(
            &self.settings,
            &credentials,
            at,
            method,
            target.map_or("/", PathAndQuery::as_str),
            body,
            headers,
        )?;
        let seed = Seed {
            timestamp: signed.timestamp_secs,
            method: method.clone(),
            target: target.cloned(),
            // No clone (a call through `Bytes`' vtable) for the usual empty body of a GET.
            body: if body.is_empty() {
                Bytes::new()
            } else {
                body.clone()
            },
            signature_head: signed.signature_head,
            names: self.settings.names.preset(),
        };
        Ok(Sent {
            at: local,
            origin_time,
            seed,
        })
    }

    /// The configuration, when a response has something to tell it or needs it: server-time
    /// sync is on, or a 401's receipt needs custom header names. Otherwise `None`, and the
    /// response future keeps no reference to the configuration (an `Arc` clone that every
    /// thread sending requests would contend for).
    pub(crate) fn for_response(self: &Arc<Config>) -> Option<Arc<Config>> {
        self.needed_by_responses().then(|| Arc::clone(self))
    }

    /// [`Config::for_response`], from an `Arc` the caller no longer needs.
    pub(crate) fn into_for_response(self: Arc<Config>) -> Option<Arc<Config>> {
        self.needed_by_responses().then_some(self)
    }

    fn needed_by_responses(&self) -> bool {
        self.server_time.is_some() || self.settings.names.preset() == Preset::Custom
    }

    pub(crate) fn body_too_large(&self) -> Error {
        signing::body_too_large(self.settings.max_body_size)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("credentials", &*self.credentials.load())
            .field("header_names", &self.settings.names)
            .field("max_body_size", &self.settings.max_body_size)
            .field("allow_http", &self.settings.allow_http)
            .field("origins", &self.settings.origins)
            .field("server_time", &self.server_time)
            .finish_non_exhaustive()
    }
}
