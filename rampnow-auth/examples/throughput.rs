//! End-to-end throughput over loopback: requests per second through a hyper client, unsigned
//! and signed by [`RampnowAuthLayer`].
//!
//! A hyper 1 server on 127.0.0.1 (an ephemeral port) reads each request and answers 200. A
//! hyper-util client with keep-alive sends 200-byte POSTs from several concurrent tasks in
//! three modes: unsigned (the client directly), signed (through the layer), and, to tell the
//! cost of signing from the cost of sending three more headers, with the same three headers
//! set to fixed values and no signing. Each round runs every mode once, in rotating order, so
//! that noise on the machine falls on all alike. It prints requests per second for each mode
//! and the ratios, and stops by itself.
//!
//! On Linux it also prints the process's CPU time per request in each mode (client and server
//! together, from `/proc`). Unlike throughput, that does not depend on how much of the machine
//! other programs leave free, so it says more steadily what signing costs.
//!
//! ```text
//! cargo run --release --example throughput        # 8 rounds, about 5 seconds
//! cargo run --release --example throughput -- 40  # 40 rounds, a steadier median
//! ```
//!
//! Client and server share the machine, so the numbers say how much signing slows a client
//! that does nothing else, not what a real Rampnow deployment achieves.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody, SIGNATURE_HEX_LEN};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::set_header::SetRequestHeaderLayer;

/// Tasks sending requests at the same time.
const CONCURRENCY: usize = 32;
/// Requests per mode per round, shared out between the tasks as they go.
const REQUESTS: usize = 10_000;
/// Rounds of all modes, after one warm-up round that is not counted: short rounds, many
/// times, so a change in the machine's load falls on every mode alike. The first command-line
/// argument sets another number (more rounds, a steadier median on a busy machine).
const ROUNDS: usize = 8;
/// A run that takes longer than this has hung: stop with an error rather than wait.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The header the server counts, to check that each mode sent what it should.
const SIGNATURE_HEADER: &str = "rn-access-sign";

/// The ways a request is sent, each measured in every round.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Straight to the hyper client.
    Unsigned,
    /// Through a layer that sets the three headers to fixed values, without signing: sending
    /// and parsing the headers costs this much even if signing were free.
    Headers,
    /// Through [`RampnowAuthLayer`].
    Signed,
}

const MODES: [Mode; 3] = [Mode::Unsigned, Mode::Headers, Mode::Signed];

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let rounds = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                format!("the number of rounds must be a whole number above 0, not {arg:?}")
            })?,
        None => ROUNDS,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let with_signature = Counters::default();
    tokio::spawn(serve(listener, with_signature.clone()));

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, SignedBody> =
        Client::builder(TokioExecutor::new()).build(connector);
    let credentials = Credentials::new("ak_live_3f9a1c", "pk_live_asjhdvcjahsgvjqhwcasdv")?;
    // Plain HTTP is allowed only because this server is on loopback.
    let signed = RampnowAuthLayer::new(credentials)
        .allow_http(true)
        .layer(client.clone());
    let headers = ServiceBuilder::new()
        .layer(fixed_header("rn-api-key", "ak_live_3f9a1c"))
        .layer(fixed_header("rn-access-timestamp", "1764288000"))
        .layer(fixed_header(
            "rn-access-sign",
            &"0".repeat(SIGNATURE_HEX_LEN),
        ))
        .service(client.clone());

    let uri: Uri = format!(
        "http://{address}/api/partner/v1/ext/ramp_order/quote?srcCurrency=USD&dstCurrency=BTC"
    )
    .parse()?;
    let body = Bytes::from(body_of(200));

    println!(
        "{REQUESTS} requests per mode per round, {CONCURRENCY} concurrent, {rounds} rounds \
         (after one warm-up round), 200-byte POST bodies, server on {address}"
    );
    println!(
        "{:>8}  {:^29}  {:^29}  {:>15}",
        "", "requests per second", "CPU µs per request", "throughput"
    );
    println!(
        "{:>8}  {:>9} {:>9} {:>9}  {:>9} {:>9} {:>9}  {:>15}",
        "round",
        "unsigned",
        "headers",
        "signed",
        "unsigned",
        "headers",
        "signed",
        "signed/unsigned"
    );
    let mut totals = [Spent::default(); MODES.len()];
    // signed / unsigned throughput, headers only / unsigned throughput, per round.
    let mut ratios = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        let mut spent = [Spent::default(); MODES.len()];
        // Rotate which mode goes first, so that none always runs on a warmer machine.
        for i in 0..MODES.len() {
            let m = (round + i) % MODES.len();
            spent[m] = match MODES[m] {
                Mode::Unsigned => run(client.clone(), &uri, &body).await?,
                Mode::Headers => run(headers.clone(), &uri, &body).await?,
                Mode::Signed => run(signed.clone(), &uri, &body).await?,
            };
        }
        let label = if round == 0 {
            "warm-up".to_owned()
        } else {
            for (total, spent) in totals.iter_mut().zip(spent) {
                *total += spent;
            }
            let [unsigned, headers, signed] = spent.map(|s| s.wall.as_secs_f64());
            ratios.0.push(unsigned / signed);
            ratios.1.push(unsigned / headers);
            round.to_string()
        };
        print_row(&label, spent, REQUESTS);
    }

    let expected = 2 * (rounds + 1) * REQUESTS;
    let seen = with_signature.total();
    if seen != expected {
        return Err(format!("the server saw {seen} signature headers, expected {expected}").into());
    }
    print_row("total", totals, rounds * REQUESTS);
    let [unsigned, headers, signed] = totals.map(|s| s.wall.as_secs_f64());
    println!(
        "throughput: signed / unsigned = {:.3}; headers only / unsigned = {:.3}; \
         signed / headers only = {:.3}",
        unsigned / signed,
        unsigned / headers,
        headers / signed,
    );
    // A round disturbed by something else on the machine moves the median less than the total.
    println!(
        "median of the rounds: signed / unsigned = {:.3}; headers only / unsigned = {:.3}",
        median(ratios.0),
        median(ratios.1),
    );
    if let [Some(unsigned), Some(headers), Some(signed)] = totals.map(|s| s.cpu) {
        let per_request = |cpu: Duration| cpu.as_secs_f64() * 1e6 / (rounds * REQUESTS) as f64;
        println!(
            "CPU per request: signing adds {:.2} µs, of which {:.2} µs is carrying the headers",
            per_request(signed) - per_request(unsigned),
            per_request(headers) - per_request(unsigned),
        );
    }
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Prints one line: requests per second and CPU time per request, in the order of [`MODES`].
fn print_row(label: &str, spent: [Spent; 3], requests: usize) {
    let rate = spent.map(|s| requests as f64 / s.wall.as_secs_f64());
    let cpu = spent.map(|s| match s.cpu {
        Some(cpu) => format!("{:.2}", cpu.as_secs_f64() * 1e6 / requests as f64),
        None => "–".to_owned(),
    });
    println!(
        "{label:>8}  {:>9.0} {:>9.0} {:>9.0}  {:>9} {:>9} {:>9}  {:>15.3}",
        rate[0],
        rate[1],
        rate[2],
        cpu[0],
        cpu[1],
        cpu[2],
        rate[2] / rate[0],
    );
}

/// A layer that sets header `name` to a fixed `value` on every request.
fn fixed_header(name: &'static str, value: &str) -> SetRequestHeaderLayer<HeaderValue> {
    SetRequestHeaderLayer::overriding(
        HeaderName::from_static(name),
        HeaderValue::from_str(value).expect("a valid header value"),
    )
}

/// `len` bytes of JSON-like ASCII.
fn body_of(len: usize) -> Vec<u8> {
    let pattern = br#"{"srcCurrency":"USD","dstCurrency":"BTC","srcAmount":"100.00"},"#;
    pattern.iter().copied().cycle().take(len).collect()
}

/// Wall-clock and CPU time of one run, or of several added up.
#[derive(Clone, Copy)]
struct Spent {
    wall: Duration,
    /// CPU time of the whole process (client and server), where Linux tells it.
    cpu: Option<Duration>,
}

impl Default for Spent {
    /// Nothing spent yet: adding a run without a CPU time makes the sum have none either.
    fn default() -> Self {
        Spent {
            wall: Duration::ZERO,
            cpu: Some(Duration::ZERO),
        }
    }
}

impl std::ops::AddAssign for Spent {
    fn add_assign(&mut self, other: Spent) {
        self.wall += other.wall;
        self.cpu = self.cpu.zip(other.cpu).map(|(a, b)| a + b);
    }
}

/// CPU time used so far by this process's threads, from `/proc/self/task/*/schedstat`
/// (nanoseconds on a CPU); `None` where that is not available. The runtime's threads live as
/// long as the process, so differences between two readings are exact.
fn process_cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let schedstat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Sends [`REQUESTS`] requests through `service` from [`CONCURRENCY`] tasks, reading every
/// response whole, and returns the time that took.
async fn run<S>(service: S, uri: &Uri, body: &Bytes) -> Result<Spent, BoxError>
where
    S: Service<Request<SignedBody>, Response = Response<Incoming>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let start = Instant::now();
    let cpu_start = process_cpu_time();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let mut service = service.clone();
        let (uri, body, sent) = (uri.clone(), body.clone(), sent.clone());
        tasks.spawn(async move {
            while sent.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                let request = Request::post(uri.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(SignedBody::from(body.clone()))?;
                let response = service
                    .ready()
                    .await
                    .map_err(Into::into)?
                    .call(request)
                    .await
                    .map_err(Into::into)?;
                if response.status() != StatusCode::OK {
                    return Err(format!("the server answered {}", response.status()).into());
                }
                response.into_body().collect().await?;
            }
            Ok::<_, BoxError>(())
        });
    }
    tokio::time::timeout(RUN_TIMEOUT, async {
        while let Some(result) = tasks.join_next().await {
            result??;
        }
        Ok::<_, BoxError>(())
    })
    .await
    .map_err(|_| format!("a run did not finish within {RUN_TIMEOUT:?}"))??;
    Ok(Spent {
        wall: start.elapsed(),
        cpu: process_cpu_time()
            .zip(cpu_start)
            .map(|(end, start)| end.saturating_sub(start)),
    })
}

/// Accepts connections and answers every request with 200 after reading its body.
///
/// Each connection counts the requests that carried a signature header on its own counter,
/// registered in `with_signature` and added up at the end: one counter shared by all
/// connections would be an atomic that both cores fight over, paid only by the modes that send
/// the header, and would show up as a cost of signing.
async fn serve(listener: TcpListener, with_signature: Counters) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let counter = Arc::new(AtomicUsize::new(0));
        with_signature.register(counter.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            if request.headers().contains_key(SIGNATURE_HEADER) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            async move {
                // Read the body whole, as a real server would, before answering.
                let _ = request.into_body().collect().await;
                Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One counter per connection, added up on demand.
#[derive(Clone, Default)]
struct Counters(Arc<std::sync::Mutex<Vec<Arc<AtomicUsize>>>>);

impl Counters {
    fn register(&self, counter: Arc<AtomicUsize>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(counter);
    }

    fn total(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|counter| counter.load(Ordering::Relaxed))
            .sum()
    }
}
