//! [`RampnowMiddleware`]: the signing middleware for reqwest, through reqwest-middleware.

use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Extensions, Uri};
use http_body_util::BodyExt;
use reqwest::{Request, Response, Url};
use reqwest_middleware::{Middleware, Next};

use crate::error::{Error, ErrorKind};
use crate::sign::{Config, Sent};

/// Signs every request of a [`reqwest_middleware::ClientWithMiddleware`] exactly as
/// [`RampnowAuthLayer`](crate::RampnowAuthLayer) does; made by
/// [`RampnowAuthLayer::reqwest_middleware`](crate::RampnowAuthLayer::reqwest_middleware)
/// (feature `reqwest`).
///
/// **Build the client with
/// [`RampnowAuthLayer::reqwest_client`](crate::RampnowAuthLayer::reqwest_client)**, or pass
/// your own `reqwest::ClientBuilder` through [`RampnowMiddleware::harden`] before `build()`:
/// reqwest follows redirects *inside* the client, below every middleware, and keeps custom
/// headers on the next hop, so a default `reqwest::Client` would carry the API key and a
/// replayable signature (and, on a `307`, the body) to wherever a `302`/`307` points — another
/// host, or plain `http://` — past every check below. If you build the client yourself, set
/// `.redirect(reqwest::redirect::Policy::none())` and `.https_only(true)`; that is all `harden`
/// does. A redirect then comes back to you as the `3xx` response, and you follow it, if ever,
/// with a new request that the middleware checks and signs.
///
/// It shares the layer's configuration, not a copy of it: the same credentials (a
/// [rotation](crate::CredentialsHandle::rotate) reaches the middleware too), clock, header
/// names, body limit, `allow_http`, pinned origins and [server time](crate::ServerTime). And it
/// runs the same code as the layer for each request:
///
/// 1. refuses, before anything is sent, what the layer refuses: a scheme other than `https`,
///    an origin that is not pinned, a lower-case method, a body over
///    [`max_body_size`](crate::RampnowAuthLayer::max_body_size);
/// 2. signs the body bytes (a body set from bytes, a `String`, `.json(..)` or `.form(..)`; no
///    body signs as empty). A streaming body ([`reqwest::Body::wrap`], `wrap_stream`, a file)
///    is refused with [`ErrorKind::Body`]: it can be read only once, so it cannot be both
///    signed and sent;
/// 3. reads the clock, signs the timestamp, the method, the path and query as reqwest sends
///    them and the body, and sets the three headers, replacing any already there;
/// 4. sends the request through the rest of the chain;
/// 5. learns the server's time from the response's `Date` (with
///    [`sync_server_time`](crate::RampnowAuthLayer::sync_server_time)), and attaches a
///    [`SigningReceipt`](crate::SigningReceipt) to the extensions of a `401` response
///    ([`reqwest::Response::extensions`]).
///
/// The body is not copied: its bytes are taken out of the request, signed, and put back.
///
/// # Errors
///
/// A refusal is a [`reqwest_middleware::Error::Middleware`] holding a [`crate::Error`]: downcast
/// it to read its [`kind`](crate::Error::kind). Errors of reqwest and of the other middleware
/// pass through unchanged.
///
/// # Where it goes in the chain
///
/// Middleware runs in the order it is attached with `.with(..)`. Attach this one **last**, after
/// retries (reqwest-retry) and anything else that decides whether and when to send, so that
/// every attempt is signed afresh; nothing attached after it may change the method, the URL or
/// the body.
///
/// reqwest follows redirects *inside* the client, below every middleware (see the first
/// paragraph): use [`RampnowAuthLayer::reqwest_client`](crate::RampnowAuthLayer::reqwest_client)
/// or [`harden`](RampnowMiddleware::harden).
///
/// # Example
///
/// ```no_run
/// use rampnow_auth::{Credentials, RampnowAuthLayer, SigningReceipt};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = RampnowAuthLayer::new(Credentials::from_env()?)
///     .pin_origins(["https://api.rampnow.io"])?
///     .sync_server_time();
/// // HTTPS only, no redirects, the middleware attached: see above.
/// let client = layer.reqwest_client(reqwest::Client::builder())?;
///
/// let response = client
///     .post("https://api.rampnow.io/api/partner/v1/ext/ramp_order/quote")
///     .header("content-type", "application/json")
///     .body(r#"{"srcCurrency":"EUR","dstCurrency":"ETH","srcAmount":"100.0"}"#)
///     .send()
///     .await?;
/// if let Some(receipt) = response.extensions().get::<SigningReceipt>() {
///     eprintln!("refused with {}; {receipt}", response.status());
/// }
/// # Ok(()) }
/// ```
///
/// A refusal, downcast to the crate's [`Error`](crate::Error):
///
/// ```no_run
/// use rampnow_auth::{Credentials, ErrorKind, RampnowAuthLayer};
///
/// # async fn run(reqwest_client: reqwest::Client) -> Result<(), rampnow_auth::Error> {
/// let layer = RampnowAuthLayer::new(Credentials::from_env()?);
/// let client = reqwest_middleware::ClientBuilder::new(reqwest_client)
///     .with(layer.reqwest_middleware())
///     .build();
/// match client.get("http://api.rampnow.io/api/partner/v1/").send().await {
///     Err(reqwest_middleware::Error::Middleware(error)) => {
///         let error = error.downcast_ref::<rampnow_auth::Error>().expect("the middleware's own");
///         assert_eq!(error.kind(), ErrorKind::InsecureScheme); // nothing was sent
///     }
///     other => panic!("expected a refusal, got {other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RampnowMiddleware {
    config: Arc<Config>,
}

impl RampnowMiddleware {
    pub(crate) fn from_config(config: Arc<Config>) -> RampnowMiddleware {
        RampnowMiddleware { config }
    }

    /// `builder`, set so that the client it builds cannot send a signed request anywhere the
    /// middleware did not check: no redirects followed (`redirect::Policy::none()`: a `3xx`
    /// comes back as the response), and HTTPS only (`https_only(true)`). These are set last,
    /// so they override the same settings made earlier on `builder`; everything else (TLS
    /// roots, timeouts) is kept.
    ///
    /// When the layer has [`allow_http(true)`](crate::RampnowAuthLayer::allow_http) (plain HTTP
    /// to loopback hosts only), `https_only` is left as `builder` had it, and every proxy is
    /// removed (`no_proxy()`, the system's `HTTP_PROXY` included): a signed `http://127.0.0.1`
    /// request sent through a proxy would cross the network in clear to the proxy. Over HTTPS a
    /// proxy only relays the encrypted connection, so proxies are kept otherwise.
    ///
    /// For a client with more middleware than this one (retries), then attach this middleware
    /// last; otherwise [`RampnowAuthLayer::reqwest_client`](crate::RampnowAuthLayer::reqwest_client)
    /// does it all in one call.
    ///
    /// # Example
    ///
    /// ```
    /// use rampnow_auth::{Credentials, RampnowAuthLayer};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = RampnowAuthLayer::new(Credentials::new("ak_live_3f9a1c", "pk_live_secret")?);
    /// let middleware = layer.reqwest_middleware();
    /// let reqwest_client = middleware
    ///     .harden(reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)))
    ///     .build()?;
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest_client)
    ///     // .with(a retry middleware), then, last:
    ///     .with(middleware)
    ///     .build();
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn harden(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let builder = builder.redirect(reqwest::redirect::Policy::none());
        if self.config.settings.allow_http {
            builder.no_proxy()
        } else {
            builder.https_only(true)
        }
    }

    /// Checks and signs `request` in place: the layer's `prepare` and `sign`, on reqwest's
    /// request.
    async fn sign(&self, request: &mut Request) -> Result<Sent, Error> {
        let mut uri: Uri = request.url().as_str().parse().map_err(|e| {
            Error::new(
                ErrorKind::InvalidRequest,
                "the request URL is not a valid HTTP request target, so nothing was signed or \
                 sent; check the URL for characters that must be percent-encoded",
            )
            .with_source(e)
        })?;
        // No body is an empty one; a streaming body has no bytes to sign (`None`), refused
        // after what the layer checks before reading a body.
        let len = request
            .body()
            .map_or(Some(0), |body| body.as_bytes().map(<[u8]>::len));
        let method = request.method().clone();
        self.config
            .settings
            .prepare(&method, &mut uri, len.unwrap_or(0) as u64)?;
        if len.is_none() {
            return Err(streaming_body());
        }
        check_same_target(request.url(), &uri)?;
        let body = match request.body_mut().take() {
            // A body of bytes is one frame, ready at once: its `Bytes` (not a copy) go back into
            // the request, and to the receipt's seed.
            Some(body) => {
                let bytes = body.collect().await.map_err(body_error)?.to_bytes();
                *request.body_mut() = Some(reqwest::Body::from(bytes.clone()));
                bytes
            }
            None => Bytes::new(),
        };
        self.config
            .sign(&method, &uri, request.headers_mut(), &body)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Middleware for RampnowMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let sent = self
            .sign(&mut request)
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let mut response = next.run(request, extensions).await?;
        if let Some(receipt) =
            sent.received(Some(&self.config), response.status(), response.headers())
        {
            response.extensions_mut().insert(receipt);
        }
        Ok(response)
    }
}

fn body_error(error: reqwest::Error) -> Error {
    Error::new(
        ErrorKind::Body,
        format!(
            "failed to read the request body ({error}), so nothing was signed or sent; give \
             reqwest the body as bytes and send again"
        ),
    )
    .with_source(error)
}

fn streaming_body() -> Error {
    Error::new(
        ErrorKind::Body,
        "streaming bodies cannot be signed; give reqwest the body as bytes (`.body(Vec<u8>)`, \
         `.body(String)`, `.json(..)`) and send again (nothing was sent)",
    )
}

/// Makes sure reqwest sends the target that was signed. `prepare` puts the target in wire form,
/// which a reqwest `Url` always is already (an `http`/`https` URL's path starts with `/`, and
/// other schemes are refused before this); should the two ever differ, refusing is safer than
/// rewriting the caller's URL.
fn check_same_target(url: &Url, uri: &Uri) -> Result<(), Error> {
    let signed = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let (path, query) = match signed.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (signed, None),
    };
    if url.path() == path && url.query() == query {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidRequest,
        "the request target reqwest would send differs from the one that would be signed, so \
         nothing was sent; this is a bug in rampnow-auth, please report it with the URL",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    #[test]
    fn middleware_is_clone_debug_send_sync() {
        fn assert<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
        assert::<RampnowMiddleware>();
    }

    #[test]
    fn the_body_is_signed_and_sent_without_a_copy() {
        let layer = crate::RampnowAuthLayer::new(crate::Credentials::new("k", "s").unwrap());
        let middleware = layer.reqwest_middleware();
        let data = Bytes::from(vec![b'x'; 1000]);
        let url = Url::parse("https://api.rampnow.io/a").unwrap();
        let mut request = Request::new(reqwest::Method::POST, url);
        *request.body_mut() = Some(reqwest::Body::from(data.clone()));
        let sent = {
            let future = std::pin::pin!(middleware.sign(&mut request));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let std::task::Poll::Ready(sent) = future.poll(&mut cx) else {
                panic!("a body of bytes is signed without waiting")
            };
            sent.unwrap()
        };
        assert_eq!(sent.seed.body.as_ptr(), data.as_ptr());
        let sent_body = request.body().and_then(reqwest::Body::as_bytes).unwrap();
        assert_eq!(sent_body.as_ptr(), data.as_ptr());
        assert!(request.headers().contains_key("rn-access-sign"));
    }

    #[test]
    fn reqwest_urls_are_signed_as_sent() {
        for url in [
            "https://api.rampnow.io",
            "https://api.rampnow.io/",
            "https://api.rampnow.io?a=1",
            "https://api.rampnow.io/a%2Bb?z=1&a=2&z=0",
            "https://api.rampnow.io/p?",
            "https://api.rampnow.io/p#frag",
            "https://api.rampnow.io/a b?q=x y",
            "https://h:8443/x?y=%20",
        ] {
            let url = Url::parse(url).unwrap();
            let uri: Uri = url.as_str().parse().unwrap();
            assert!(check_same_target(&url, &uri).is_ok(), "{url}");
        }
        let url = Url::parse("https://h/a?b=1").unwrap();
        let other: Uri = "https://h/a?b=2".parse().unwrap();
        assert_eq!(
            check_same_target(&url, &other).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
    }
}
