//! The response future of [`RateLimit`](super::RateLimit): wait for a turn, then for the
//! inner service, then for its response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tower::{BoxError, Service};

use super::{LimitError, Limiter};

pin_project! {
    /// The future [`RateLimit`](super::RateLimit) returns: it waits until the limiter admits
    /// the request, then until the inner service is ready, then for the inner service's
    /// response. Dropping it at any point leaves nothing behind.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Waiting {
            admission: Admission,
            inner: S,
            request: Option<Req>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Done,
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(super) fn new(limiter: Limiter, inner: S, request: Req) -> ResponseFuture<S, Req> {
        ResponseFuture {
            state: State::Waiting {
                admission: Admission::new(limiter),
                inner,
                request: Some(request),
            },
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Waiting {
                    admission,
                    inner,
                    request,
                } => {
                    if let Err(err) = ready!(admission.poll(cx)) {
                        state.set(State::Done);
                        return Poll::Ready(Err(err.into()));
                    }
                    if let Err(err) = ready!(inner.poll_ready(cx)) {
                        state.set(State::Done);
                        return Poll::Ready(Err(err.into()));
                    }
                    let request = request
                        .take()
                        .expect("rampnow_auth::limit::ResponseFuture polled after completion");
                    let future = inner.call(request);
                    state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(result.map_err(Into::into));
                }
                StateProj::Done => {
                    panic!("rampnow_auth::limit::ResponseFuture polled after completion")
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { admission, .. } if admission.admitted => "waiting for the service",
            State::Waiting { .. } => "waiting for a turn",
            State::Calling { .. } => "calling",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

/// Waiting for the limiter: `Unpin` (the timer is boxed, created only when there is a wait, and
/// reused across waits), so the response future has no allocation when nothing waits.
pub(super) struct Admission {
    limiter: Limiter,
    admitted: bool,
    /// Where this request stands in the limiter's line.
    line: Line,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether the current sleep ends in admission (a slot reserved in Redis) or in asking
    /// again (the local limiter, or Redis past its reservation horizon).
    sleeping: Option<AfterSleep>,
    #[cfg(feature = "redis")]
    asking: Option<super::redis::ReserveFuture>,
}

/// A request's place in the limiter's line ([`Limiter::queue`]).
enum Line {
    /// Not in it yet.
    NotYet,
    /// Behind others, waiting for the permit.
    Behind(Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>),
    /// At the head, holding the permit until admitted.
    Head(#[allow(dead_code)] Option<OwnedSemaphorePermit>),
    /// Admitted: the permit is given back.
    Left,
}

#[derive(Debug, Clone, Copy)]
enum AfterSleep {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Admitted,
    AskAgain,
}

impl Admission {
    fn new(limiter: Limiter) -> Admission {
        Admission {
            limiter,
            admitted: false,
            line: Line::NotYet,
            sleep: None,
            sleeping: None,
            #[cfg(feature = "redis")]
            asking: None,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LimitError>> {
        loop {
            if self.admitted {
                // The next in line may ask now.
                self.line = Line::Left;
                return Poll::Ready(Ok(()));
            }
            match &mut self.line {
                Line::NotYet => {
                    // First in line, or behind the others (the semaphore is fair: `try_acquire`
                    // does not jump the line).
                    let queue = Arc::clone(self.limiter.queue());
                    self.line = match Arc::clone(&queue).try_acquire_owned() {
                        Ok(permit) => Line::Head(Some(permit)),
                        Err(_) => Line::Behind(Box::pin(async move {
                            // Never closed; if it were, the request goes on without the line.
                            queue.acquire_owned().await.ok()
                        })),
                    };
                    continue;
                }
                Line::Behind(waiting) => {
                    let permit = ready!(waiting.as_mut().poll(cx));
                    self.line = Line::Head(permit);
                    continue;
                }
                Line::Head(_) | Line::Left => {}
            }
            if let Some(after) = self.sleeping {
                if let Some(sleep) = self.sleep.as_mut() {
                    ready!(sleep.as_mut().poll(cx));
                }
                self.sleeping = None;
                if let AfterSleep::Admitted = after {
                    self.admitted = true;
                }
                continue;
            }
            #[cfg(feature = "redis")]
            if let Some(asking) = self.asking.as_mut() {
                let reply = ready!(asking.as_mut().poll(cx));
                self.asking = None;
                match reply? {
                    super::redis::Reply::Reserved(wait) if wait.is_zero() => self.admitted = true,
                    super::redis::Reply::Reserved(wait) => {
                        self.sleep_until(Instant::now() + wait, AfterSleep::Admitted)?;
                    }
                    super::redis::Reply::NotYet(wait) => {
                        self.sleep_until(Instant::now() + wait, AfterSleep::AskAgain)?;
                    }
                }
                continue;
            }
            match &self.limiter {
                Limiter::Local(local) => match local.check() {
                    Ok(()) => self.admitted = true,
                    Err(earliest) => self.sleep_until(earliest, AfterSleep::AskAgain)?,
                },
                #[cfg(feature = "redis")]
                Limiter::Redis(redis) => self.asking = Some(redis.reserve()),
            }
        }
    }

    /// Sets the timer, or fails if there is no Tokio timer.
    fn sleep_until(&mut self, deadline: Instant, after: AfterSleep) -> Result<(), LimitError> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => {
                let sleep = crate::timer::sleep_until(deadline).ok_or_else(LimitError::no_timer)?;
                self.sleep = Some(Box::pin(sleep));
            }
        }
        self.sleeping = Some(after);
        Ok(())
    }
}
