use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::{Config, CredentialsHandle, RampnowAuth};
use crate::clock::Clock;
use crate::credentials::Credentials;
use crate::error::Error;
use crate::headers::HeaderNames;
use crate::sync::ServerTime;

/// A [`Layer`] that signs every request with Rampnow credentials; builds [`RampnowAuth`].
///
/// Configured with consuming builder methods; cheap to clone (the configuration is shared).
///
/// # Example
///
/// ```
/// use rampnow_auth::{Credentials, HeaderNames, RampnowAuthLayer};
///
/// let layer = RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?)
///     .header_names(HeaderNames::X_RAMPNOW)
///     .max_body_size(1024 * 1024);
/// assert!(!format!("{layer:?}").contains("pk_live_secret"));
/// # Ok::<(), rampnow_auth::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RampnowAuthLayer {
    config: Arc<Config>,
}

impl RampnowAuthLayer {
    /// Signs with these credentials, the system clock, the [`HeaderNames::RN`] header names, a
    /// 10 MiB body limit, and HTTPS only.
    pub fn new(credentials: Credentials) -> RampnowAuthLayer {
        RampnowAuthLayer {
            config: Arc::new(Config::new(credentials)),
        }
    }

    /// Takes the signing time from `clock` instead of the system clock: a closure
    /// `Fn() -> SystemTime` or any [`Clock`].
    pub fn with_clock(mut self, clock: impl Clock) -> RampnowAuthLayer {
        Arc::make_mut(&mut self.config).set_clock(Arc::new(clock));
        self
    }

    /// Sends the credentials under these header names (default [`HeaderNames::RN`]).
    pub fn header_names(mut self, names: HeaderNames) -> RampnowAuthLayer {
        Arc::make_mut(&mut self.config).settings.names = names;
        self
    }

    /// The largest body, in bytes, that is read and signed (default 10 MiB). A larger body is
    /// refused with [`ErrorKind::BodyTooLarge`](crate::ErrorKind::BodyTooLarge) and nothing is
    /// sent.
    pub fn max_body_size(mut self, limit: usize) -> RampnowAuthLayer {
        Arc::make_mut(&mut self.config).settings.max_body_size = limit;
        self
    }

    /// A handle that swaps the credentials of this layer, its clones and every service built
    /// from them, at once and without rebuilding the stack. See [`CredentialsHandle`].
    pub fn credentials_handle(&self) -> CredentialsHandle {
        CredentialsHandle {
            cell: self.config.credentials.clone(),
        }
    }

    /// Signs only requests to these origins (`scheme://host[:port]`, such as
    /// `https://api.rampnow.io`; the default port of the scheme may be left out). Any other
    /// request, and a request in origin form (no scheme and host to check), is refused with
    /// [`ErrorKind::OriginNotAllowed`](crate::ErrorKind::OriginNotAllowed) before anything is
    /// sent, so neither a shared client nor a redirect can carry the API key to another host.
    ///
    /// Put redirect following (tower-http's `FollowRedirectLayer`) *outside* this layer, so
    /// that each hop comes back through it and is checked and signed afresh.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidOrigin`](crate::ErrorKind::InvalidOrigin) for an origin that is not
    /// `scheme://host[:port]` (a path, a missing scheme).
    ///
    /// # Example
    ///
    /// ```
    /// use rampnow_auth::{Credentials, RampnowAuthLayer};
    ///
    /// let layer = RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?)
    ///     .pin_origins(["https://api.rampnow.io"])?;
    /// assert!(RampnowAuthLayer::new(Credentials::new("k", "s")?)
    ///     .pin_origins(["api.rampnow.io/path"])
    ///     .is_err());
    /// # Ok::<(), rampnow_auth::Error>(())
    /// ```
    pub fn pin_origins<I>(mut self, origins: I) -> Result<RampnowAuthLayer, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let settings = self.config.settings.clone().pin_origins(origins)?;
        Arc::make_mut(&mut self.config).settings = settings;
        Ok(self)
    }

    /// Learns the offset between the local clock and the server's from the `Date` header of
    /// responses, and signs with the corrected time. See [`ServerTime`] for how, and
    /// [`server_time`](RampnowAuthLayer::server_time) to read the offset.
    ///
    /// The offset is bounded: a `Date` more than [`DEFAULT_MAX_OFFSET`] (one hour) from the
    /// local clock is ignored, so no response can push the clock further; use
    /// [`sync_server_time_within`](RampnowAuthLayer::sync_server_time_within) for another
    /// bound. Only responses to requests this layer signed teach it; pin the origins
    /// ([`pin_origins`](RampnowAuthLayer::pin_origins)) so that only Rampnow's do.
    ///
    /// [`DEFAULT_MAX_OFFSET`]: crate::DEFAULT_MAX_OFFSET
    pub fn sync_server_time(self) -> RampnowAuthLayer {
        self.sync_server_time_within(crate::sync::DEFAULT_MAX_OFFSET)
    }

    /// [`sync_server_time`](RampnowAuthLayer::sync_server_time), ignoring any `Date` further
    /// than `max_offset` from the local clock (so the offset stays within it).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampnow_auth::{Credentials, RampnowAuthLayer};
    ///
    /// let layer = RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?)
    ///     .sync_server_time_within(Duration::from_secs(5 * 60));
    /// assert_eq!(layer.server_time().unwrap().max_offset(), Duration::from_secs(300));
    /// # Ok::<(), rampnow_auth::Error>(())
    /// ```
    pub fn sync_server_time_within(mut self, max_offset: Duration) -> RampnowAuthLayer {
        Arc::make_mut(&mut self.config).set_server_time(ServerTime::within(max_offset));
        self
    }

    /// The server-time state, shared by every service built from this layer, when
    /// [`sync_server_time`](RampnowAuthLayer::sync_server_time) is on.
    #[must_use]
    pub fn server_time(&self) -> Option<ServerTime> {
        self.config.server_time.clone()
    }

    /// Whether `http://` URIs to this machine may be signed (default `false`, which refuses
    /// every `http://` URI with [`ErrorKind::InsecureScheme`](crate::ErrorKind::InsecureScheme)).
    ///
    /// It exists for a test server on your own machine, and even when on it allows plain HTTP
    /// only to loopback hosts — `localhost`, `127.0.0.0/8`, `::1` (and `::ffff:127.x.y.z`), as
    /// written in the URI, without any name lookup. An `http://` URI to any other host is still
    /// refused with `InsecureScheme`, so a test setting that leaks into production sends
    /// nothing in clear.
    ///
    /// # Example
    ///
    /// ```
    /// use http::Request;
    /// use rampnow_auth::{Credentials, ErrorKind, RampnowAuthLayer, SignedBody};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let layer = RampnowAuthLayer::new(Credentials::new("ak_test", "pk_test")?).allow_http(true);
    /// let client = layer.layer(service_fn(|_req: http::Request<SignedBody>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// }));
    /// let local = Request::get("http://127.0.0.1:8080/x").body(SignedBody::empty())?;
    /// assert!(client.clone().oneshot(local).await.is_ok());
    /// let remote = Request::get("http://api.rampnow.io/x").body(SignedBody::empty())?;
    /// let error = client.oneshot(remote).await.unwrap_err();
    /// let error = error.downcast_ref::<rampnow_auth::Error>().unwrap();
    /// assert_eq!(error.kind(), ErrorKind::InsecureScheme);
    /// # Ok::<(), tower::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn allow_http(mut self, allow: bool) -> RampnowAuthLayer {
        Arc::make_mut(&mut self.config).settings.allow_http = allow;
        self
    }

    /// The same signing as this layer, as middleware for reqwest through reqwest-middleware
    /// (feature `reqwest`). It shares this layer's configuration — credentials (and their
    /// rotation), clock, header names, limits, pinned origins and server time — with every
    /// service the layer builds. See [`RampnowMiddleware`](crate::RampnowMiddleware).
    ///
    /// A method on the layer rather than a second builder, so that there is one place to
    /// configure signing, whichever client sends.
    ///
    /// # Example
    ///
    /// ```
    /// use rampnow_auth::{Credentials, RampnowAuthLayer};
    ///
    /// # fn attach(reqwest_client: reqwest::Client) -> Result<(), rampnow_auth::Error> {
    /// let layer = RampnowAuthLayer::new(Credentials::from_env()?).sync_server_time();
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest_client)
    ///     .with(layer.reqwest_middleware())
    ///     .build();
    /// # let _ = client; Ok(()) }
    /// # let layer = RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?);
    /// assert!(!format!("{:?}", layer.reqwest_middleware()).contains("pk_live_secret"));
    /// # Ok::<(), rampnow_auth::Error>(())
    /// ```
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    #[must_use]
    pub fn reqwest_middleware(&self) -> crate::RampnowMiddleware {
        crate::RampnowMiddleware::from_config(self.config.clone())
    }

    /// A reqwest client that signs every request with this layer's configuration and cannot
    /// send a signed request anywhere the middleware did not check: `builder` (your TLS roots,
    /// timeouts, proxies, ...) with redirects off and HTTPS only
    /// ([`RampnowMiddleware::harden`](crate::RampnowMiddleware::harden)), then the
    /// [`reqwest_middleware`](RampnowAuthLayer::reqwest_middleware) attached (feature
    /// `reqwest`).
    ///
    /// A default `reqwest::Client` follows a `302`/`307` below every middleware, carrying the
    /// API key and a replayable signature to another host or over plain HTTP; this one returns
    /// the `3xx` response instead.
    ///
    /// # Errors
    ///
    /// reqwest's own, when `builder` cannot build a client (a TLS backend that fails to
    /// initialize, ...).
    ///
    /// # Example
    ///
    /// ```
    /// use rampnow_auth::{Credentials, RampnowAuthLayer};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?)
    ///     .pin_origins(["https://api.rampnow.io"])?;
    /// let client = layer.reqwest_client(reqwest::Client::builder())?;
    /// // client.post("https://api.rampnow.io/api/partner/v1/...").body(..).send().await
    /// # let _ = client; Ok(()) }
    /// ```
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn reqwest_client(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> reqwest::Result<reqwest_middleware::ClientWithMiddleware> {
        let middleware = self.reqwest_middleware();
        let client = middleware.harden(builder).build()?;
        Ok(reqwest_middleware::ClientBuilder::new(client)
            .with(middleware)
            .build())
    }
}

impl<S> Layer<S> for RampnowAuthLayer {
    type Service = RampnowAuth<S>;

    fn layer(&self, inner: S) -> RampnowAuth<S> {
        RampnowAuth::from_config(inner, self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_is_clone_debug_send_sync() {
        fn assert<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
        assert::<RampnowAuthLayer>();
    }

    #[test]
    fn builders_do_not_change_other_clones() {
        let a = RampnowAuthLayer::new(Credentials::new("k", "s").unwrap());
        let b = a.clone().max_body_size(5).allow_http(true);
        assert_eq!(
            a.config.settings.max_body_size,
            super::super::DEFAULT_MAX_BODY_SIZE
        );
        assert!(!a.config.settings.allow_http);
        assert_eq!(b.config.settings.max_body_size, 5);
        assert!(b.config.settings.allow_http);
    }
}
