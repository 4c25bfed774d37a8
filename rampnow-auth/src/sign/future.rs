use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::{BoxError, Service};

use super::{Config, Sent};
use crate::body::{BodyFailure, CollectBody, SignedBody};
use crate::error::{Error, ErrorKind};

pin_project! {
    /// Response future of [`RampnowAuth`](super::RampnowAuth): reads the body, signs, then
    /// drives the inner service's future.
    pub struct ResponseFuture<B, S>
    where
        B: Body,
        S: Service<Request<SignedBody>>,
    {
        #[pin]
        state: State<CollectBody<B>, S, S::Future>,
    }
}

pin_project! {
    /// Each state holds only what it needs, so the future is no larger than its largest state
    /// and nothing is moved twice.
    #[project = StateProj]
    #[project_replace = StateOwn]
    enum State<C, S, F> {
        /// Reading the body; the request's head and the ready inner service wait beside it.
        Collect { #[pin] collect: C, parts: Parts, inner: S, config: Arc<Config> },
        /// Signed and sent; what the response is checked against waits beside it.
        Call { #[pin] future: F, sent: Sent, config: Option<Arc<Config>> },
        Failed { error: Error },
        Done,
    }
}

impl<B, S> ResponseFuture<B, S>
where
    B: Body,
    S: Service<Request<SignedBody>>,
{
    /// The body is still being read: `inner` is the service made ready for this request.
    pub(super) fn collect(
        parts: Parts,
        collect: CollectBody<B>,
        inner: S,
        config: Arc<Config>,
    ) -> ResponseFuture<B, S> {
        ResponseFuture {
            state: State::Collect {
                collect,
                parts,
                inner,
                config,
            },
        }
    }

    /// The body has been read (or failed to): signs and calls `inner` now.
    pub(super) fn call_now(
        mut parts: Parts,
        collected: Result<Bytes, BodyFailure>,
        inner: &mut S,
        config: &Arc<Config>,
    ) -> ResponseFuture<B, S> {
        let state = match sign(&mut parts, collected, config) {
            Ok((body, sent)) => State::Call {
                future: inner.call(Request::from_parts(parts, SignedBody::from(body))),
                sent,
                config: config.for_response(),
            },
            Err(error) => State::Failed { error },
        };
        ResponseFuture { state }
    }

    pub(super) fn failed(error: Error) -> ResponseFuture<B, S> {
        ResponseFuture {
            state: State::Failed { error },
        }
    }
}

/// The one signing step of the layer, whether the body was read in `call` or by the future:
/// signs `parts` in place (the request's head is not moved to be signed) and returns the body.
#[inline]
fn sign(
    parts: &mut Parts,
    collected: Result<Bytes, BodyFailure>,
    config: &Config,
) -> Result<(Bytes, Sent), Error> {
    let body = collected.map_err(|failure| body_error(failure, config))?;
    let sent = config.sign(&parts.method, &parts.uri, &mut parts.headers, &body)?;
    Ok((body, sent))
}

impl<B, S, ResBody> Future for ResponseFuture<B, S>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<SignedBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Collect { collect, .. } => {
                    let collected = ready!(collect.poll(cx));
                    let StateOwn::Collect {
                        mut parts,
                        mut inner,
                        config,
                        ..
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Collect")
                    };
                    match sign(&mut parts, collected, &config) {
                        Ok((body, sent)) => {
                            let future =
                                inner.call(Request::from_parts(parts, SignedBody::from(body)));
                            state.set(State::Call {
                                future,
                                sent,
                                config: config.into_for_response(),
                            });
                        }
                        Err(error) => return Poll::Ready(Err(error.into())),
                    }
                }
                StateProj::Call {
                    future,
                    sent,
                    config,
                } => {
                    let result = ready!(future.poll(cx));
                    let receipt = match &result {
                        Ok(response) => {
                            sent.received(config.as_deref(), response.status(), response.headers())
                        }
                        Err(_) => None,
                    };
                    state.set(State::Done);
                    let mut response = result.map_err(Into::into)?;
                    if let Some(receipt) = receipt {
                        response.extensions_mut().insert(receipt);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Failed { .. } => {
                    let StateOwn::Failed { error } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Failed")
                    };
                    return Poll::Ready(Err(error.into()));
                }
                StateProj::Done => panic!("rampnow_auth::ResponseFuture polled after completion"),
            }
        }
    }
}

fn body_error(failure: BodyFailure, config: &Config) -> Error {
    let error = match failure {
        BodyFailure::TooLarge => return config.body_too_large(),
        BodyFailure::Trailers => {
            return Error::new(
                ErrorKind::Body,
                "the request body has trailers, which the Rampnow signature cannot cover, so \
                 nothing was sent; send the request without trailers",
            )
        }
        BodyFailure::Failed(error) => error,
    };
    Error::new(
        ErrorKind::Body,
        format!(
            "failed to read the request body ({error}), so nothing was signed or sent; fix the \
             body's source and send the request again"
        ),
    )
    .with_source(error)
}

impl<B, S> fmt::Debug for ResponseFuture<B, S>
where
    B: Body,
    S: Service<Request<SignedBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Collect { .. } => "reading body",
            State::Call { .. } => "calling inner service",
            State::Failed { .. } => "failed",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
