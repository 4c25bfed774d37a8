//! The raw request targets of a connection, as the client sent them, to refuse a target with a
//! fragment (`GET /x#frag HTTP/1.1`).
//!
//! hyper accepts `#` in a request target (httparse allows it) and `http::Uri` then drops the
//! fragment without a word, so the verifier would check a signature over `/x` for a request
//! whose target was `/x#frag`. Neither hyper nor httparse has a setting to refuse it, and the
//! parsed request no longer shows it, so [`TargetTracker`] reads the decrypted bytes on their
//! way to hyper and follows HTTP/1 request framing as hyper does (request line, headers,
//! `Content-Length` or chunked body, trailers), noting each request line's target in a queue
//! that the connection's service takes from, one entry per request, in order.
//!
//! Robustness: each entry carries a keyed hash of the target without its fragment, and
//! [`Targets::check`] compares it with the target hyper parsed; an entry missing or different
//! (the tracker lost step with hyper, or gave up on input it does not follow) refuses the
//! request and closes the connection rather than guessing. Memory is bounded: one header line
//! (at most the head limit) and at most [`MAX_PENDING`] entries of 16 bytes a connection.
//! Nothing here panics on any input.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http::Request;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most request heads noted ahead of hyper on one connection (pipelined requests);
/// past it the tracker gives up and the connection's next requests are refused.
const MAX_PENDING: usize = 1024;

/// hyper's limit on chunk extensions, in bytes per body.
const CHUNK_EXTENSIONS_LIMIT: u64 = 16 * 1024;

/// A line buffer larger than this is released once the line is done.
const KEEP_LINE_CAPACITY: usize = 8 * 1024;

/// What the tracker saw of one request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// The connection's keyed hash (SipHash with random keys, so a client cannot aim at a
    /// collision) of the target up to its first `#`. Not SHA-256: it hashes every target
    /// twice, and a 60 KB target is common enough in tests to make that cost show.
    digest: u64,
    /// Whether the target has a `#`.
    fragment: bool,
}

/// The queue shared by a connection's tracker (which pushes) and service (which takes).
#[derive(Debug, Clone, Default)]
pub(super) struct Targets(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    keys: RandomState,
    queue: Mutex<VecDeque<Seen>>,
}

/// Why a request is refused before the verifier.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The target has a fragment.
    Fragment,
    /// The tracker has no matching entry for this request.
    Untracked,
}

impl Refusal {
    /// The reason sent in the `400` answer.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Refusal::Fragment => {
                "the request target has a fragment (a part from #); a fragment is not sent in \
                 HTTP and must not be signed: remove it from the URL, and sign and send the path \
                 and query only"
            }
            Refusal::Untracked => {
                "the sandbox could not match this request's target to the bytes received on the \
                 connection; send an origin-form target such as /path?query with Content-Length \
                 or chunked framing, on a new connection (if the request was well formed, this \
                 is a bug in rampnow-auth: please report it)"
            }
        }
    }
}

impl Targets {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Seen>> {
        // Every update completes or does nothing, so a poisoned lock is still usable.
        self.0.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn digest(&self, target: &[u8]) -> u64 {
        self.0.keys.hash_one(target)
    }

    /// What the tracker notes of a request line's target.
    fn seen(&self, target: &[u8]) -> Seen {
        let hash = target.iter().position(|&b| b == b'#');
        Seen {
            digest: self.digest(target.get(..hash.unwrap_or(target.len())).unwrap_or(target)),
            fragment: hash.is_some(),
        }
    }

    /// Takes the entry for `request` (the next one: hyper serves a connection's requests in
    /// order) and says whether the request may go on.
    pub(super) fn check<B>(&self, request: &Request<B>) -> Result<(), Refusal> {
        let Some(seen) = self.queue().pop_front() else {
            return Err(Refusal::Untracked);
        };
        // What hyper kept of the target: the path and query of an origin-form target, else
        // the whole URI (absolute form, authority form, `*`).
        let uri = request.uri();
        let parsed = match uri.path_and_query() {
            Some(pq) if pq.as_str().starts_with('/') && uri.authority().is_none() => {
                self.digest(pq.as_str().as_bytes())
            }
            _ => self.digest(uri.to_string().as_bytes()),
        };
        if parsed != seen.digest {
            return Err(Refusal::Untracked);
        }
        if seen.fragment {
            return Err(Refusal::Fragment);
        }
        Ok(())
    }

    fn push(&self, seen: Seen) -> bool {
        let mut queue = self.queue();
        if queue.len() >= MAX_PENDING {
            return false;
        }
        queue.push_back(seen);
        true
    }
}

/// An IO stream that follows the HTTP/1 requests read through it (see the module docs).
#[derive(Debug)]
pub(super) struct TargetTracker<T> {
    inner: T,
    framing: Framing,
}

impl<T> TargetTracker<T> {
    /// Tracks the requests read from `inner` into `targets`; a head longer than `head_limit`
    /// bytes (hyper refuses it too) stops the tracking.
    pub(super) fn new(inner: T, targets: Targets, head_limit: usize) -> TargetTracker<T> {
        TargetTracker {
            inner,
            framing: Framing::new(targets, head_limit),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TargetTracker<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            if let Some(new) = buf.filled().get(before..) {
                this.framing.feed(new);
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TargetTracker<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the tracker is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a request head (request line or headers), or before one.
    Head,
    /// In a `Content-Length` body, with this many bytes left.
    Body(u64),
    /// In a chunked body.
    Chunked(Chunk),
    /// Gave up: input hyper refuses too, or more than the tracker follows. Nothing more is
    /// noted, so the connection's next requests are refused.
    Lost,
}

/// The chunked decoder's states, as hyper 1's (`proto/h1/decode.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// The head being read: its request line and the framing its headers give.
#[derive(Debug, Default)]
struct Head {
    /// The request line's target, once read.
    seen: Option<Seen>,
    http11: bool,
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
}

#[derive(Debug)]
struct Framing {
    targets: Targets,
    head_limit: usize,
    state: State,
    /// The head line being read (without its line feed).
    line: Vec<u8>,
    /// Bytes of the current head so far, leading empty lines included.
    head_bytes: usize,
    head: Head,
    chunk_size: u64,
    extension_bytes: u64,
    trailer_bytes: usize,
}

impl Framing {
    fn new(targets: Targets, head_limit: usize) -> Framing {
        Framing {
            targets,
            head_limit,
            state: State::Head,
            line: Vec::new(),
            head_bytes: 0,
            head: Head::default(),
            chunk_size: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
        }
    }

    fn lose(&mut self) {
        self.state = State::Lost;
        self.line = Vec::new();
    }

    /// Follows `bytes`, the next bytes of the connection.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Lost => return,
                State::Head => {
                    let (part, rest, complete) = match bytes.iter().position(|&b| b == b'\n') {
                        Some(at) => (&bytes[..at], &bytes[at + 1..], true),
                        None => (bytes, &[][..], false),
                    };
                    bytes = rest;
                    self.head_bytes = self
                        .head_bytes
                        .saturating_add(part.len() + usize::from(complete));
                    if self.head_bytes > self.head_limit {
                        return self.lose();
                    }
                    self.line.extend_from_slice(part);
                    if complete {
                        let line = std::mem::take(&mut self.line);
                        self.head_line(&line);
                        if line.capacity() <= KEEP_LINE_CAPACITY && self.state != State::Lost {
                            self.line = line;
                            self.line.clear();
                        }
                    }
                }
                State::Body(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[take..];
                    let left = left - take as u64; // take <= left
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                }
                State::Chunked(Chunk::Data(left)) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[take..];
                    let left = left - take as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    });
                }
                State::Chunked(chunk) => {
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match self.chunk_byte(chunk, byte) {
                        Some(state) => state,
                        None => return self.lose(),
                    };
                }
            }
        }
    }

    /// One line of a head, without its line feed.
    fn head_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.head.seen.is_none() {
            if line.is_empty() {
                return; // httparse skips empty lines before a request line
            }
            match request_line(line) {
                Some((target, http11)) => {
                    self.head.seen = Some(self.targets.seen(target));
                    self.head.http11 = http11;
                }
                None => self.lose(),
            }
            return;
        }
        if line.is_empty() {
            return self.end_of_head();
        }
        if self.header(line).is_none() {
            self.lose();
        }
    }

    /// Notes one header's effect on framing, as hyper does; `None` where hyper refuses.
    fn header(&mut self, line: &[u8]) -> Option<()> {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return None; // also a folded line (starting with a space)
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if !self.head.http11 {
                return None;
            }
            self.head.transfer_encoding = true;
            self.head.content_length = None;
            self.head.chunked = last_coding_is_chunked(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if self.head.transfer_encoding {
                return Some(());
            }
            let length = digits(value)?;
            match self.head.content_length {
                Some(previous) if previous != length => return None,
                _ => self.head.content_length = Some(length),
            }
        }
        Some(())
    }

    fn end_of_head(&mut self) {
        let head = std::mem::take(&mut self.head);
        self.head_bytes = 0;
        let Some(seen) = head.seen else {
            return self.lose();
        };
        if head.transfer_encoding && !head.chunked {
            return self.lose(); // hyper refuses it
        }
        if !self.targets.push(seen) {
            return self.lose();
        }
        self.state = if head.chunked {
            self.chunk_size = 0;
            self.extension_bytes = 0;
            self.trailer_bytes = 0;
            State::Chunked(Chunk::Start)
        } else {
            match head.content_length {
                Some(length) if length > 0 => State::Body(length),
                _ => State::Head,
            }
        };
    }

    /// One byte of a chunked body outside chunk data, as hyper's decoder reads it; `None`
    /// where hyper refuses.
    fn chunk_byte(&mut self, chunk: Chunk, byte: u8) -> Option<State> {
        let next = match (chunk, byte) {
            (Chunk::Start | Chunk::Size, _) if hex(byte).is_some() => {
                let digit = u64::from(hex(byte)?);
                self.chunk_size = self.chunk_size.checked_mul(16)?.checked_add(digit)?;
                Chunk::Size
            }
            (Chunk::Size | Chunk::SizeLws, b'\t' | b' ') => Chunk::SizeLws,
            (Chunk::Size | Chunk::SizeLws, b';') => Chunk::Extension,
            (Chunk::Size | Chunk::SizeLws | Chunk::Extension, b'\r') => Chunk::SizeLf,
            (Chunk::Extension, b'\n') => return None,
            (Chunk::Extension, _) => {
                self.extension_bytes += 1;
                if self.extension_bytes >= CHUNK_EXTENSIONS_LIMIT {
                    return None;
                }
                Chunk::Extension
            }
            (Chunk::SizeLf, b'\n') => {
                let size = std::mem::take(&mut self.chunk_size);
                if size == 0 {
                    Chunk::EndCr
                } else {
                    Chunk::Data(size)
                }
            }
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Start,
            (Chunk::EndCr, b'\r') => Chunk::EndLf,
            (Chunk::EndCr | Chunk::Trailer, _) => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > self.head_limit {
                    return None;
                }
                if byte == b'\r' {
                    Chunk::TrailerLf
                } else {
                    Chunk::Trailer
                }
            }
            (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
            (Chunk::EndLf, b'\n') => return Some(State::Head),
            _ => return None,
        };
        Some(State::Chunked(next))
    }
}

/// `METHOD SP target SP HTTP/1.x`, as httparse reads it (single spaces): the target, and
/// whether it is HTTP/1.1.
fn request_line(line: &[u8]) -> Option<(&[u8], bool)> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) || target.is_empty() {
        return None;
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return None,
    };
    Some((target, http11))
}

/// RFC 9110 `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(value: &[u8]) -> &[u8] {
    let space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !space(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

/// hyper's `Content-Length`: plain decimal digits, no sign, no list.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// hyper's test: the value is visible ASCII and its last coding is `chunked`.
fn last_coding_is_chunked(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    if !value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return false;
    }
    text.rsplit(',')
        .next()
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(stream: &[u8], step: usize) -> (Vec<Seen>, State, Targets) {
        let targets = Targets::default();
        let mut framing = Framing::new(targets.clone(), 64 * 1024);
        for piece in stream.chunks(step.max(1)) {
            framing.feed(piece);
        }
        let seen = targets.queue().iter().copied().collect();
        (seen, framing.state, targets)
    }

    fn check(targets: &Targets, uri: &str) -> Result<(), Refusal> {
        targets.check(&Request::get(uri).body(()).unwrap())
    }

    #[test]
    fn requests_are_followed_through_every_kind_of_body_in_any_pieces() {
        let stream = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /b?q=1 HTTP/1.1\r\nContent-Length: 6\r\n\r\nGET /c\
            POST /c#frag HTTP/1.1\r\ncontent-length:  3 \r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            5;ext=1\r\nGET /\r\n0A\r\n0123456789\r\n0\r\nX-Trailer: GET /x\r\n\r\n\
            GET /d HTTP/1.0\nContent-Length: 0\n\n";
        for step in [1, 2, 3, 7, 64, stream.len()] {
            let (queue, state, targets) = track(stream, step);
            let seen = |target: &str| targets.seen(target.as_bytes());
            assert_eq!(
                queue,
                [seen("/a"), seen("/b?q=1"), seen("/c#frag"), seen("/d")],
                "{step}"
            );
            assert!(queue[2].fragment && !queue[1].fragment);
            assert_eq!(state, State::Head);
        }
    }

    #[test]
    fn what_hyper_refuses_stops_the_tracking() {
        for stream in [
            &b"GET /a HTTP/2.0\r\n\r\n"[..],
            b"GET  /a HTTP/1.1\r\n\r\n",
            b"GET /a HTTP/1.1\r\n folded: x\r\n\r\n",
            b"GET /a HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"GET /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"GET /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZ\r\n",
            b"GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            b"GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        ] {
            let (_, state, _) = track(stream, 1);
            assert_eq!(state, State::Lost, "{}", String::from_utf8_lossy(stream));
        }
        // A head over the limit.
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70 * 1024));
        assert_eq!(track(long.as_bytes(), 1000).1, State::Lost);
        // Too many pipelined requests ahead of hyper.
        let many = "GET / HTTP/1.1\r\n\r\n".repeat(MAX_PENDING + 1);
        let (queue, state, _) = track(many.as_bytes(), 4096);
        assert_eq!((queue.len(), state), (MAX_PENDING, State::Lost));
    }

    #[test]
    fn any_bytes_in_any_pieces_never_panic() {
        // A small deterministic generator: no dependency, same bytes every run.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet =
            b"GET /#?\r\n :0123456789abcdefABCDEF;\tHTTP/1.1chunkedContent-LengthTransfer-Encoding";
        for _ in 0..2_000 {
            let mut stream = Vec::new();
            for _ in 0..(x % 300) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                stream.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let _ = track(&stream, (x % 17) as usize + 1);
        }
    }

    #[test]
    fn the_service_side_refuses_fragments_and_mismatches() {
        let targets = Targets::default();
        assert_eq!(check(&targets, "/a"), Err(Refusal::Untracked));
        for target in ["/a?x=1", "/a#frag", "/b", "*", "http://h/a?x#y"] {
            assert!(targets.push(targets.seen(target.as_bytes())));
        }
        assert_eq!(check(&targets, "/a?x=1"), Ok(()));
        assert_eq!(check(&targets, "/a"), Err(Refusal::Fragment));
        assert_eq!(check(&targets, "/c"), Err(Refusal::Untracked));
        assert_eq!(check(&targets, "*"), Ok(()));
        assert_eq!(check(&targets, "http://h/a?x"), Err(Refusal::Fragment));
        assert_eq!(check(&targets, "/a"), Err(Refusal::Untracked));
    }
}
