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
use tokio::time::Sleep;
use tower::{BoxError, Service};

use super::{Claim, ReplayFuture, VerifiedApiKey, VerifyConfig};
use crate::body::{CollectBody, SignedBody};

pin_project! {
    /// Response future of [`RampnowVerify`](super::RampnowVerify): reads the body, verifies,
    /// then drives the inner service's future, or answers a refusal.
    pub struct ResponseFuture<B, S, ResBody>
    where
        B: Body,
        S: Service<Request<SignedBody>, Response = Response<ResBody>>,
    {
        #[pin]
        state: State<CollectBody<B>, S, S::Future, ResBody>,
    }
}

pin_project! {
    /// Each state holds only what it needs, as in the signer's future.
    #[project = StateProj]
    #[project_replace = StateOwn]
    enum State<C, S, F, R> {
        /// Reading the body; the request's head, its checked headers and the ready inner
        /// service wait beside it.
        Collect {
            #[pin] collect: C,
            // Made the first time the body is not ready (boxed: a body already in memory
            // needs neither the timer nor the room for it).
            deadline: Option<Pin<Box<Sleep>>>,
            parts: Parts,
            claim: Claim,
            inner: S,
            config: Arc<VerifyConfig>,
        },
        /// Verified; waiting for the replay memory's answer.
        Replay {
            check: ReplayFuture,
            parts: Parts,
            body: Bytes,
            key: VerifiedApiKey,
            inner: S,
        },
        Call { #[pin] future: F },
        Refused { response: Response<R> },
        Done,
    }
}

impl<B, S, ResBody> ResponseFuture<B, S, ResBody>
where
    B: Body,
    S: Service<Request<SignedBody>, Response = Response<ResBody>>,
{
    /// Headers checked: reads the body, then verifies; `inner` is the service made ready.
    pub(super) fn collect(
        parts: Parts,
        body: B,
        claim: Claim,
        inner: S,
        config: Arc<VerifyConfig>,
    ) -> Self {
        ResponseFuture {
            state: State::Collect {
                collect: CollectBody::new(body, config.max_body_size),
                deadline: None,
                parts,
                claim,
                inner,
                config,
            },
        }
    }

    /// Refused before the body was read.
    pub(super) fn refused(response: Response<ResBody>) -> Self {
        ResponseFuture {
            state: State::Refused { response },
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
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Collect {
                    collect,
                    deadline,
                    config,
                    ..
                } => {
                    let collected = match collect.poll(cx) {
                        Poll::Ready(collected) => collected,
                        Poll::Pending => {
                            let Some(timeout) = config.body_read_timeout else {
                                return Poll::Pending;
                            };
                            let sleep = match deadline {
                                Some(sleep) => sleep,
                                None => match crate::timer::sleep(timeout) {
                                    Some(sleep) => deadline.insert(Box::pin(sleep)),
                                    None => {
                                        let refusal = VerifyConfig::no_timer_rejection();
                                        state.set(State::Done);
                                        return Poll::Ready(Ok(refusal.into_response()));
                                    }
                                },
                            };
                            ready!(sleep.as_mut().poll(cx));
                            state.set(State::Done);
                            let refusal = VerifyConfig::body_timeout_rejection(timeout);
                            return Poll::Ready(Ok(refusal.into_response()));
                        }
                    };
                    let StateOwn::Collect {
                        mut parts,
                        claim,
                        mut inner,
                        config,
                        ..
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Collect")
                    };
                    let verified = collected
                        .map_err(|failure| config.body_rejection(failure))
                        .and_then(|body| {
                            let (key, replay) = config.check_signature(
                                claim,
                                &parts.method,
                                parts.uri.path_and_query(),
                                &body,
                            )?;
                            Ok((key, replay, body))
                        });
                    match verified {
                        Ok((key, Some(check), body)) => state.set(State::Replay {
                            check,
                            parts,
                            body,
                            key,
                            inner,
                        }),
                        Ok((key, None, body)) => {
                            parts.extensions.insert(key);
                            let request = Request::from_parts(parts, SignedBody::from(body));
                            state.set(State::Call {
                                future: inner.call(request),
                            });
                        }
                        Err(rejection) => return Poll::Ready(Ok(rejection.into_response())),
                    }
                }
                StateProj::Replay { check, .. } => {
                    let answer = ready!(Pin::new(check).poll(cx));
                    let StateOwn::Replay {
                        mut parts,
                        body,
                        key,
                        mut inner,
                        ..
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Replay")
                    };
                    if let Some(rejection) = VerifyConfig::replay_rejection(answer) {
                        return Poll::Ready(Ok(rejection.into_response()));
                    }
                    parts.extensions.insert(key);
                    let request = Request::from_parts(parts, SignedBody::from(body));
                    state.set(State::Call {
                        future: inner.call(request),
                    });
                }
                StateProj::Call { future } => return future.poll(cx),
                StateProj::Refused { .. } => {
                    let StateOwn::Refused { response } =
                        state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Refused")
                    };
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => {
                    panic!("rampnow_auth::verify::ResponseFuture polled after completion")
                }
            }
        }
    }
}

impl<B, S, ResBody> fmt::Debug for ResponseFuture<B, S, ResBody>
where
    B: Body,
    S: Service<Request<SignedBody>, Response = Response<ResBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Collect { .. } => "reading body",
            State::Replay { .. } => "checking for a replay",
            State::Call { .. } => "calling inner service",
            State::Refused { .. } => "refused",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
