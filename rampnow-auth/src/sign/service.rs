use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use http_body::Body;
use tower::{BoxError, Service};

use super::{Config, RampnowAuthLayer, ResponseFuture};
use crate::body::{CollectBody, SignedBody};
use crate::credentials::Credentials;

/// Middleware that signs each request with Rampnow credentials, then calls the inner service.
///
/// Usually built by [`RampnowAuthLayer`].
///
/// It is an adapter over the signing core, [`crate::signing`], which holds every rule below;
/// the service only moves the request's pieces in and out. For each request the service
///
/// 1. refuses, before anything is read or sent, a URI that is not absolute (`/api/...` with no
///    scheme and host: the transport would pick the destination, perhaps over plain TCP), a
///    scheme other than `https` (with [`allow_http`](RampnowAuthLayer::allow_http), `http`
///    to a loopback host only), an origin that is not [pinned](RampnowAuthLayer::pin_origins)
///    (when origins are pinned), a target that is not a path, and a method that is not in
///    upper case;
/// 2. reads the whole body, up to [`max_body_size`](RampnowAuthLayer::max_body_size). The
///    body is polled once in `call`: a body that is ready then — any body already in memory,
///    whatever its type ([`SignedBody`](crate::SignedBody), `http_body_util::Full<Bytes>`,
///    `String`, ...) — is taken without a copy (a body in one `Bytes` frame) and signed in
///    `call`, and the inner service made ready for the request is called at once, not cloned.
///    Any other body is read by the response future, which then calls the ready service it was
///    handed (a clone takes its place; a body in several frames is copied once);
/// 3. only then reads the clock, so a slow body never makes a stale signature;
/// 4. signs the timestamp, the method, the request target exactly as it goes on the wire (an
///    absolute URI with no path is sent and signed as `/`; the query is kept byte for byte) and
///    the body bytes;
/// 5. sets the three headers, replacing any value already there (never duplicating it), with
///    the API key and the signature marked sensitive;
/// 6. calls the inner service with the body as a [`SignedBody`](crate::SignedBody) of exactly
///    the signed bytes.
///
/// Errors the middleware raises itself are [`crate::Error`]s inside a [`tower::BoxError`];
/// errors of the inner service pass through unchanged.
///
/// # Where it goes in a stack
///
/// Outside the layer (listed before it in a `ServiceBuilder`): retries, so each attempt is
/// signed afresh; timeouts; redirect following; anything that decides *whether* and *where* to
/// send. Inside it (after it): only the transport. Nothing inside the layer may change the
/// body, the method or the URI — no compression, no body rewriting — or the signature no
/// longer matches what is sent.
///
/// # Example
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use http::Request;
/// use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # tokio_test_block_on(async {
/// let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv")?;
/// let client = ServiceBuilder::new()
///     .layer(
///         RampnowAuthLayer::new(credentials)
///             .with_clock(|| UNIX_EPOCH + Duration::from_secs(1727759033)),
///     )
///     .service(service_fn(|req: Request<SignedBody>| async move {
///         // A real client (hyper, ...) goes here; this one returns the headers it got.
///         Ok::<_, std::convert::Infallible>(http::Response::new(req.headers().clone()))
///     }));
///
/// let request = Request::post("https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC")
///     .body(SignedBody::from(r#"{"dummy": "value"}"#))?;
/// let headers = client.oneshot(request).await?.into_body();
/// assert_eq!(headers["rn-api-key"], "ak_live_3f9a1c");
/// assert_eq!(headers["rn-access-timestamp"], "1727759033");
/// assert_eq!(
///     headers["rn-access-sign"],
///     "558629fe8e7f4555ddbe63dd8d1523921eef1f8763ccc142e63d84c227f2ab5e"
/// );
/// # Ok::<(), tower::BoxError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
///
/// The request body type must be `Unpin` (hyper's `Incoming`, `SignedBody`, `Full`, `String`,
/// boxed bodies are): the service polls it once in `call`, and a body that is ready then (any
/// body already in memory) is signed at once and the inner service made ready for it is called
/// without a clone. Pin a body that is not `Unpin` in a `Box` (`BodyExt::boxed`).
#[derive(Clone, Debug)]
pub struct RampnowAuth<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RampnowAuth<S> {
    /// Wraps `inner` with the default configuration; use [`RampnowAuth::layer`] to configure.
    pub fn new(inner: S, credentials: Credentials) -> RampnowAuth<S> {
        RampnowAuth::from_config(inner, Arc::new(Config::new(credentials)))
    }

    /// A [`RampnowAuthLayer`] with these credentials.
    pub fn layer(credentials: Credentials) -> RampnowAuthLayer {
        RampnowAuthLayer::new(credentials)
    }

    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> RampnowAuth<S> {
        RampnowAuth { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for RampnowAuth<S>
where
    S: Service<Request<SignedBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<B, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let lower = body.size_hint().lower();
        if let Err(error) = self
            .config
            .settings
            .prepare(&parts.method, &mut parts.uri, lower)
        {
            return ResponseFuture::failed(error);
        }
        let mut collect = CollectBody::new(body, self.config.settings.max_body_size);
        // One poll with a waker that does nothing: a body in memory is ready at once. One that
        // is not goes on in the response future, which polls it again with its own waker (the
        // only one that then has to be woken).
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(collected) = Pin::new(&mut collect).poll(&mut cx) {
            // Nothing to wait for: sign now and call the service made ready for this request,
            // with no clone of it.
            return ResponseFuture::call_now(parts, collected, &mut self.inner, &self.config);
        }
        // The body is read before the inner service is called, so the service that was made
        // ready is moved into the future and a clone (not ready) takes its place.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::collect(parts, collect, ready, Arc::clone(&self.config))
    }
}
