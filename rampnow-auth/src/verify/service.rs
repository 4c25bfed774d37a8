use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower::{BoxError, Service};

use super::{RampnowVerifyLayer, ResponseFuture, VerifyConfig};
use crate::body::SignedBody;
use crate::keys::KeyStore;

/// Middleware that verifies each request's Rampnow signature before calling the inner
/// service, and answers refused requests itself. Built by
/// [`RampnowVerifyLayer`].
///
/// The inner service's response body must be buildable from [`Bytes`] (for the JSON refusal),
/// as `Full<Bytes>`, axum's `Body` and most server bodies are.
#[derive(Clone, Debug)]
pub struct RampnowVerify<S> {
    inner: S,
    config: Arc<VerifyConfig>,
}

impl<S> RampnowVerify<S> {
    /// Wraps `inner`, verifying against the keys in `keys` with the defaults of
    /// [`RampnowVerifyLayer::new`]; use [`RampnowVerify::layer`] to configure.
    ///
    /// # Example
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use rampnow_auth::verify::RampnowVerify;
    /// use rampnow_auth::{Credentials, SignedBody};
    /// use tower::service_fn;
    ///
    /// let inner = service_fn(|_req: http::Request<SignedBody>| async {
    ///     Ok::<_, Infallible>(http::Response::new(String::new()))
    /// });
    /// let verify = RampnowVerify::new(inner, Credentials::new("ak_live_3f9a1c", "pk_live_secret")?);
    /// # let _ = verify;
    /// # Ok::<(), rampnow_auth::Error>(())
    /// ```
    pub fn new(inner: S, keys: impl KeyStore) -> RampnowVerify<S> {
        RampnowVerify::from_config(inner, Arc::new(VerifyConfig::new(Arc::new(keys))))
    }

    /// A [`RampnowVerifyLayer`] verifying against `keys`.
    pub fn layer(keys: impl KeyStore) -> RampnowVerifyLayer {
        RampnowVerifyLayer::new(keys)
    }

    pub(crate) fn from_config(inner: S, config: Arc<VerifyConfig>) -> RampnowVerify<S> {
        RampnowVerify { inner, config }
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

impl<S, B, ResBody> Service<Request<B>> for RampnowVerify<S>
where
    S: Service<Request<SignedBody>, Response = Response<ResBody>> + Clone,
    B: Body,
    B::Error: Into<BoxError>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<B, S, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        // The target and headers are checked first: a refusal needs no inner service, and keeps
        // the one made ready for the next request.
        let checked = VerifyConfig::check_target(&parts.method, &parts.uri).and_then(|()| {
            self.config
                .check_headers(&parts.headers, body.size_hint().lower())
        });
        match checked {
            Err(rejection) => ResponseFuture::refused(rejection.into_response()),
            Ok(claim) => {
                // The service made ready is the one called, after the body is read.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::collect(parts, body, claim, ready, Arc::clone(&self.config))
            }
        }
    }
}
