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
/// Usually built by [`RampnowAuthLayer`]; see [the module docs](crate::sign) for what it does
/// to each request.
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
        if let Err(error) = self.config.prepare(&parts.method, &mut parts.uri, lower) {
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
