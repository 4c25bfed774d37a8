use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

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
        B::Error: Into<BoxError>,
        S: Service<Request<SignedBody>>,
    {
        #[pin]
        state: State<CollectBody<B>, S::Future>,
        pending: Option<Pending<S>>,
        sent: Option<(Sent, Arc<Config>)>,
    }
}

/// What the signing step needs once the body is in.
struct Pending<S> {
    parts: Parts,
    inner: S,
    config: Arc<Config>,
}

pin_project! {
    #[project = StateProj]
    enum State<C, F> {
        Collect { #[pin] collect: C },
        Call { #[pin] future: F },
        Failed { error: Option<Error> },
    }
}

impl<B, S> ResponseFuture<B, S>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<SignedBody>>,
{
    pub(super) fn new(request: Request<B>, inner: S, config: Arc<Config>) -> Self {
        let (mut parts, body) = request.into_parts();
        match config.prepare(&mut parts, body.size_hint().lower()) {
            Ok(()) => ResponseFuture {
                state: State::Collect {
                    collect: CollectBody::new(body, config.max_body_size),
                },
                pending: Some(Pending {
                    parts,
                    inner,
                    config,
                }),
                sent: None,
            },
            Err(error) => ResponseFuture {
                state: State::Failed { error: Some(error) },
                pending: None,
                sent: None,
            },
        }
    }
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
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Collect { collect } => {
                    let collected = ready!(collect.poll(cx));
                    let pending = this
                        .pending
                        .as_mut()
                        .expect("future polled after completion");
                    // The headers are set in place: `Parts` is large, and moving it costs more
                    // than signing a small body.
                    let signed = collected
                        .map_err(|failure| body_error(failure, &pending.config))
                        .and_then(|body| {
                            Ok((pending.config.sign(&mut pending.parts, &body)?, body))
                        });
                    match signed {
                        Ok((sent, body)) => {
                            let Pending {
                                parts,
                                mut inner,
                                config,
                            } = this.pending.take().expect("checked above");
                            let future =
                                inner.call(Request::from_parts(parts, SignedBody::from(body)));
                            *this.sent = Some((sent, config));
                            this.state.set(State::Call { future });
                        }
                        Err(error) => {
                            *this.pending = None;
                            this.state.set(State::Failed { error: None });
                            return Poll::Ready(Err(error.into()));
                        }
                    }
                }
                StateProj::Call { future } => {
                    let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if let Some((sent, config)) = this.sent.take() {
                        let receipt = config.received(response.status(), response.headers(), sent);
                        if let Some(receipt) = receipt {
                            response.extensions_mut().insert(receipt);
                        }
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Failed { error } => {
                    let error = error.take().expect("future polled after completion");
                    return Poll::Ready(Err(error.into()));
                }
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
    // A body that limits itself (`http_body_util::Limited`) is too large, too.
    if error.is::<http_body_util::LengthLimitError>() {
        return config.body_too_large();
    }
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
    B::Error: Into<BoxError>,
    S: Service<Request<SignedBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Collect { .. } => "reading body",
            State::Call { .. } => "calling inner service",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
