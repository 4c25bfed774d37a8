//! The sandbox's side of [`diagnose`](crate::diagnose): what it keeps of each request to
//! diagnose a refusal (the signing headers, and a copy of the body as the verifier reads it),
//! the budget that bounds the hashing, and the refusal's reason rewritten with the diagnosis.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, SizeHint};
use rampnow_auth::verify::{Rejection, RejectionKind};
use rampnow_auth::{Credentials, HeaderNames};

use crate::diagnose::{self, Diagnosis, Mistake, Outcome, Received, Skip, MAX_DIAGNOSED_BODY};

/// The most bytes hashed for diagnoses in one second, all clients together (16 MiB, a few
/// milliseconds of one core); past it a refusal says it was not diagnosed.
pub(crate) const DIAGNOSIS_BYTES_PER_SECOND: usize = 16 * 1024 * 1024;

/// The most bytes hashed for one diagnosis (4 MiB: every candidate over a 64 KiB body, or
/// the milliseconds search over 1 KiB, with room to spare).
pub(crate) const DIAGNOSIS_BYTES_PER_REQUEST: usize = 4 * 1024 * 1024;

/// The body type the verifier reads: the connection's body with a copy kept, or a body the
/// sandbox read first.
pub(crate) type DiagnosedBody<B> = Either<Tee<B>, Full<Bytes>>;

/// The first [`MAX_DIAGNOSED_BODY`] bytes of a body as it was read, or none once it is longer.
#[derive(Debug, Default)]
struct Copied {
    bytes: Vec<u8>,
    read: bool,
    too_large: bool,
    /// Read first for the diagnosis, it did not arrive whole in time (or failed).
    not_arrived: bool,
}

/// A body that copies what is read of it (up to [`MAX_DIAGNOSED_BODY`]) for the diagnosis,
/// when there may be one (`copy` is `None` for a request that cannot reach a signature check).
#[derive(Debug)]
pub(crate) struct Tee<B> {
    inner: B,
    copy: Option<Arc<Mutex<Copied>>>,
}

impl<B> Body for Tee<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let Some(copy) = &this.copy else {
            return Poll::Ready(frame);
        };
        let mut copy = copy.lock().unwrap_or_else(PoisonError::into_inner);
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if !copy.too_large {
                        if copy.bytes.len() + data.len() > MAX_DIAGNOSED_BODY {
                            copy.too_large = true;
                            copy.bytes = Vec::new();
                        } else {
                            copy.bytes.extend_from_slice(data);
                        }
                    }
                }
            }
            None => copy.read = true,
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the sandbox keeps of a request to diagnose its refusal.
#[derive(Debug)]
pub(crate) struct Kept {
    method: String,
    target: String,
    host: Option<String>,
    api_key: String,
    timestamp: String,
    signature: String,
    copy: Arc<Mutex<Copied>>,
}

/// Takes what a diagnosis needs from a request with the three signing headers and a known
/// API key, and wraps its body to copy it. A request whose signature header is malformed is
/// refused before its body is read; when the header is a known wrong encoding of a signature
/// and the body is short (an exact length up to [`MAX_DIAGNOSED_BODY`] and `max_body_size`),
/// the body is read here first, within `timeout`, to check it.
pub(crate) async fn keep<B>(
    request: Request<B>,
    keys: &[Credentials],
    timeout: Duration,
    max_body_size: usize,
) -> (Request<DiagnosedBody<B>>, Option<Kept>)
where
    B: Body<Data = Bytes> + Unpin,
{
    let copy = Arc::new(Mutex::new(Copied::default()));
    let kept = signing_headers(request.headers())
        // An unknown key is refused before any signature check: nothing to keep.
        .filter(|(api_key, _, _)| keys.iter().any(|k| k.api_key() == api_key))
        .map(|(api_key, timestamp, signature)| Kept {
            method: request.method().as_str().to_owned(),
            target: request
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
            host: request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
                .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned())),
            api_key,
            timestamp,
            signature,
            copy: copy.clone(),
        });
    let (parts, body) = request.into_parts();
    let read_first = kept
        .as_ref()
        .is_some_and(|kept| diagnose::is_encoded_signature(&kept.signature))
        && body
            .size_hint()
            .exact()
            .is_some_and(|len| len <= MAX_DIAGNOSED_BODY.min(max_body_size) as u64);
    if read_first {
        let bytes = match tokio::time::timeout(timeout, body.collect()).await {
            Ok(Ok(collected)) => {
                let bytes = collected.to_bytes();
                let mut copy = copy.lock().unwrap_or_else(PoisonError::into_inner);
                copy.bytes = bytes.to_vec();
                copy.read = true;
                bytes
            }
            // The verifier refuses such a request on its headers whatever its body.
            _ => {
                copy.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .not_arrived = true;
                Bytes::new()
            }
        };
        return (
            Request::from_parts(parts, Either::Right(Full::new(bytes))),
            kept,
        );
    }
    let copy = kept.as_ref().map(|_| copy);
    (
        Request::from_parts(parts, Either::Left(Tee { inner: body, copy })),
        kept,
    )
}

/// The API key, timestamp and signature headers of the first header set whose API key
/// header is there (as the verifier picks it), if all three are there once, as text.
fn signing_headers(headers: &HeaderMap) -> Option<(String, String, String)> {
    let names = [HeaderNames::RN, HeaderNames::X_RAMPNOW]
        .into_iter()
        .find(|names| headers.contains_key(names.api_key()))?;
    let one = |name| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok().map(str::to_owned),
            _ => None,
        }
    };
    Some((
        one(names.api_key())?,
        one(names.timestamp())?,
        one(names.signature())?,
    ))
}

/// The bytes hashed for diagnoses in the current second, shared by all connections.
#[derive(Debug)]
pub(crate) struct Budget {
    state: Mutex<(Instant, usize)>,
}

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget {
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Up to [`DIAGNOSIS_BYTES_PER_REQUEST`] bytes from this second's budget.
    fn take(&self) -> Grant {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Grant {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(state.0) >= Duration::from_secs(1) {
            *state = (now, 0);
        }
        let bytes = DIAGNOSIS_BYTES_PER_REQUEST.min(DIAGNOSIS_BYTES_PER_SECOND - state.1);
        state.1 += bytes;
        Grant {
            second: state.0,
            bytes,
        }
    }

    /// Returns what a diagnosis did not use of `grant`, to the second it was taken from: once
    /// another second has begun, nothing (its budget is whole already).
    fn give_back(&self, grant: Grant, used: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 == grant.second {
            state.1 = state.1.saturating_sub(grant.bytes.saturating_sub(used));
        }
    }
}

/// Bytes taken from the budget of the second that began at `second`.
#[derive(Debug, Clone, Copy)]
struct Grant {
    second: Instant,
    bytes: usize,
}

/// The refusal `response` with its reason rewritten by [`diagnose_refusal`] and the
/// [`Diagnosis`] found, if any, in its extensions; or the response as it is.
pub(crate) async fn with_diagnosis(
    response: Response<Full<Bytes>>,
    rejection: &Rejection,
    kept: &Kept,
    keys: &[Credentials],
    budget: &Budget,
    now_secs: Option<u64>,
) -> (Response<Full<Bytes>>, Option<Diagnosis>) {
    let Some((found, reason)) = diagnose_refusal(rejection, kept, keys, budget, now_secs) else {
        return (response, None);
    };
    let mut response = with_reason(response, reason).await;
    if let Some(found) = &found {
        response.extensions_mut().insert(found.clone());
    }
    (response, found)
}

/// The diagnosis of a refusal, if there is one, and the reason to send instead of the
/// verifier's.
fn diagnose_refusal(
    rejection: &Rejection,
    kept: &Kept,
    keys: &[Credentials],
    budget: &Budget,
    now_secs: Option<u64>,
) -> Option<(Option<Diagnosis>, String)> {
    match rejection.kind() {
        RejectionKind::StaleTimestamp => {
            let diagnosis = diagnose::stale_timestamp_hint(&kept.timestamp, now_secs?)?;
            let reason = format!("{}; {}", rejection.reason(), diagnosis.sentence());
            Some((Some(diagnosis), reason))
        }
        RejectionKind::SignatureMismatch | RejectionKind::InvalidSignature => {
            let credentials = keys.iter().find(|c| c.api_key() == kept.api_key)?;
            let copy = kept.copy.lock().unwrap_or_else(PoisonError::into_inner);
            let (body, skip): (&[u8], _) = if copy.too_large {
                (&[], Some(Skip::BodyTooLarge))
            } else if copy.not_arrived {
                (&[], Some(Skip::BodyNotArrived))
            } else if !copy.read && rejection.kind() != RejectionKind::SignatureMismatch {
                // A mismatch is found only once the verifier has read the whole body (it may
                // stop polling at the announced end, so `read` may be unset); a malformed
                // signature is refused before, and only a body read first is there.
                (&[], Some(Skip::BodyNotRead))
            } else {
                (&copy.bytes, None)
            };
            let received = Received {
                method: &kept.method,
                target: &kept.target,
                host: kept.host.as_deref(),
                api_key: &kept.api_key,
                timestamp: &kept.timestamp,
                signature: &kept.signature,
                body,
            };
            let lead = if rejection.kind() == RejectionKind::SignatureMismatch {
                "the signature does not match the request"
            } else {
                "the signature header is not 64 hex digits"
            };
            if let Some(skip) = skip {
                // No body to search with: name an encoding mistake alone, if any.
                let encoding = diagnose::signature_encoding(&kept.signature);
                return Some(not_searched(rejection, lead, skip, encoding));
            }
            let grant = budget.take();
            let search = diagnose::search(&received, credentials, keys, grant.bytes);
            budget.give_back(grant, search.hashed_bytes);
            match search.outcome {
                Outcome::Found(finding) => {
                    let diagnosis = finding.diagnosis().clone();
                    let reason = format!("{lead}: {}", diagnosis.sentence());
                    Some((Some(diagnosis), reason))
                }
                Outcome::Skipped(skip, encoding) => {
                    Some(not_searched(rejection, lead, skip, encoding))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// A refusal whose search did not run (or not to the end): the encoding mistake if one was
/// seen, and the reason saying why there is no more.
fn not_searched(
    rejection: &Rejection,
    lead: &str,
    skip: Skip,
    encoding: Option<Mistake>,
) -> (Option<Diagnosis>, String) {
    match encoding {
        Some(mistake) => (
            Some(Diagnosis::encoding_only(mistake)),
            format!("{lead}: {}; {}", mistake.alone(), skip.sentence()),
        ),
        None => (None, format!("{}; {}", rejection.reason(), skip.sentence())),
    }
}

/// The refusal with `reason` in place of its JSON body's `reason`, every other field kept.
async fn with_reason(response: Response<Full<Bytes>>, reason: String) -> Response<Full<Bytes>> {
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let bytes = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("reason".to_owned(), serde_json::Value::String(reason));
            Bytes::from(serde_json::Value::Object(object).to_string())
        }
        _ => bytes,
    };
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Full::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_runs_out_within_a_second_and_comes_back_after_it() {
        let budget = Budget::new();
        let start = budget.state.lock().unwrap().0;
        let mut total = 0;
        let mut grants = 0;
        loop {
            let granted = budget.take_at(start).bytes;
            assert!(granted <= DIAGNOSIS_BYTES_PER_REQUEST);
            if granted == 0 {
                break;
            }
            total += granted;
            grants += 1;
        }
        assert_eq!(total, DIAGNOSIS_BYTES_PER_SECOND);
        assert_eq!(
            grants,
            DIAGNOSIS_BYTES_PER_SECOND / DIAGNOSIS_BYTES_PER_REQUEST
        );
        let grant = Grant {
            second: start,
            bytes: 150,
        };
        budget.give_back(grant, 50);
        assert_eq!(budget.take_at(start).bytes, 100);
        assert_eq!(budget.take_at(start).bytes, 0);
        let later = start + Duration::from_secs(1);
        assert_eq!(budget.take_at(later).bytes, DIAGNOSIS_BYTES_PER_REQUEST);
    }

    /// A diagnosis that ends after the next second began gives back nothing to that second:
    /// no second hashes more than its budget.
    #[test]
    fn what_is_given_back_late_does_not_swell_the_next_second() {
        let budget = Budget::new();
        let start = budget.state.lock().unwrap().0;
        let early = budget.take_at(start);
        let later = start + Duration::from_secs(1);
        let mut total = budget.take_at(later).bytes;
        budget.give_back(early, 0); // unused, but its second is over
        loop {
            let granted = budget.take_at(later).bytes;
            if granted == 0 {
                break;
            }
            total += granted;
        }
        assert_eq!(total, DIAGNOSIS_BYTES_PER_SECOND);
    }
}
