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

use super::{Claim, VerifyConfig};
use crate::body::{CollectBody, SignedBody};

pin_project! {
    /// Response future of [`RampnowVerify`](super::RampnowVerify): reads the body, verifies,
    /// then drives the inner service's future, or answers a refusal.
    pub struct ResponseFuture<B, S, ResBody>
    where
        B: Body,
        B::Error: Into<BoxError>,
        S: Service<Request<SignedBody>, Response = Response<ResBody>>,
    {
        #[pin]
        state: State<CollectBody<B>, S::Future, ResBody>,
        pending: Option<Pending<S>>,
    }
}

struct Pending<S> {
    parts: Parts,
    claim: Claim,
    inner: S,
    config: Arc<VerifyConfig>,
}

pin_project! {
    #[project = StateProj]
    enum State<C, F, R> {
        Collect { #[pin] collect: C },
        Call { #[pin] future: F },
        Refused { response: Option<Response<R>> },
    }
}

impl<B, S, ResBody> ResponseFuture<B, S, ResBody>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<SignedBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    pub(super) fn new(request: Request<B>, inner: S, config: Arc<VerifyConfig>) -> Self {
        let (parts, body) = request.into_parts();
        match config.check_headers(&parts.headers, body.size_hint().lower()) {
            Ok(claim) => ResponseFuture {
                state: State::Collect {
                    collect: CollectBody::new(body, config.max_body_size),
                },
                pending: Some(Pending {
                    parts,
                    claim,
                    inner,
                    config,
                }),
            },
            Err(rejection) => ResponseFuture {
                state: State::Refused {
                    response: Some(rejection.into_response()),
                },
                pending: None,
            },
        }
    }
}

impl<B, S, ResBody> Future for ResponseFuture<B, S, ResBody>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<SignedBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Collect { collect } => {
                    let collected = ready!(collect.poll(cx));
                    let Pending {
                        mut parts,
                        claim,
                        mut inner,
                        config,
                    } = this.pending.take().expect("future polled after completion");
                    let verified = collected
                        .map_err(|failure| config.body_rejection(failure))
                        .and_then(|body| {
                            let key = config.check_signature(
                                &claim,
                                &parts.method,
                                parts.uri.path_and_query(),
                                &body,
                            )?;
                            Ok((key, body))
                        });
                    match verified {
                        Ok((key, body)) => {
                            parts.extensions.insert(key);
                            let request = Request::from_parts(parts, SignedBody::from(body));
                            this.state.set(State::Call {
                                future: inner.call(request),
                            });
                        }
                        Err(rejection) => {
                            this.state.set(State::Refused { response: None });
                            return Poll::Ready(Ok(rejection.into_response()));
                        }
                    }
                }
                StateProj::Call { future } => return future.poll(cx),
                StateProj::Refused { response } => {
                    let response = response.take().expect("future polled after completion");
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

impl<B, S, ResBody> fmt::Debug for ResponseFuture<B, S, ResBody>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<SignedBody>, Response = Response<ResBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Collect { .. } => "reading body",
            State::Call { .. } => "calling inner service",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
