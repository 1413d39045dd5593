//! A fault-injecting HTTP/1.1 proxy to put in front of a real [`Registry`].
//!
//! [`FaultProxy`] listens on 127.0.0.1 (so fluke speaks plain HTTP to it, as to any
//! loopback registry) and forwards every request to the registry over its own upstream
//! connection, one per client connection. Rules ([`Rule`]) pick requests by method and a
//! substring of the request target and make the proxy answer an error status, reset the
//! connection, cut a response body short, drop the `Range` header, or flip a body byte.
//! It records every request it saw (method, target, `Range` header, arrival time, faults
//! applied, status sent) so tests can assert what the client did.
//!
//! Bodies are read whole before they are passed on (test blobs are small), and re-framed
//! with `Content-Length`; the registry's `Location` headers point back at the proxy because
//! the client's `Host` header is forwarded unchanged.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::registry::Registry;

/// How long the proxy waits on a silent client or registry before giving up a connection.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest request or response head accepted.
const MAX_HEAD: usize = 64 << 10;

/// What the proxy does to a request a [`Rule`] picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (with a registry-style JSON error body) instead of forwarding.
    Status(u16),
    /// Read the whole request, then reset the connection (TCP RST) without answering.
    Reset,
    /// Forward, but pass on only the first `n` bytes of the response body, then close the
    /// connection (a connection lost mid-blob). A body of `n` bytes or fewer passes whole.
    CutAfter(u64),
    /// Forward without the `Range` and `If-Range` headers: the registry answers 200 with
    /// the whole body, as a registry or cache that ignores ranges would.
    IgnoreRange,
    /// Forward, inverting the response-body byte at this offset (the last byte when the
    /// body is shorter). The status and headers are unchanged.
    Corrupt(u64),
}

impl Fault {
    /// Status and Reset answer the request themselves; the others change what is forwarded.
    fn answers(&self) -> bool {
        matches!(self, Fault::Status(_) | Fault::Reset)
    }
}

/// Which requests get a [`Fault`], and how many times.
///
/// A request gets the first matching *answering* fault (`Status`, `Reset`) if there is
/// one; otherwise every matching forwarding fault (`IgnoreRange`, `CutAfter`, `Corrupt`)
/// together. Each rule applied uses up one of its times.
#[derive(Debug, Clone)]
pub struct Rule {
    method: String,
    path_contains: String,
    fault: Fault,
    remaining: Option<usize>,
}

impl Rule {
    /// `fault` for every request whose method is `method` (`"*"` for any, case-insensitive)
    /// and whose target (path and query) contains `path_contains`.
    pub fn new(method: &str, path_contains: &str, fault: Fault) -> Rule {
        Rule {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            fault,
            remaining: None,
        }
    }

    /// Applies only to the first `n` matching requests.
    pub fn times(mut self, n: usize) -> Rule {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.remaining != Some(0)
            && (self.method == "*" || self.method.eq_ignore_ascii_case(method))
            && target.contains(&self.path_contains)
    }

    fn use_once(&mut self) -> Fault {
        if let Some(n) = &mut self.remaining {
            *n -= 1;
        }
        self.fault.clone()
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// The client's `Range` header, if any (before [`Fault::IgnoreRange`] removed it).
    pub range: Option<String>,
    /// When the request head had arrived.
    pub at: Instant,
    /// The faults applied to it.
    pub faults: Vec<Fault>,
    /// The status answered (None when the connection was reset, or the registry could not
    /// be reached). Logged just before the answer is written.
    pub status: Option<u16>,
    /// Response body bytes passed on: all of them, or the first n of a [`Fault::CutAfter`].
    pub body_sent: u64,
}

struct State {
    upstream: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
    next_conn: AtomicU64,
    /// Open client connections, so that dropping the proxy can shut them down.
    conns: Mutex<HashMap<u64, TcpStream>>,
}

impl State {
    /// The faults for one request, using up the rules applied (see [`Rule`]).
    fn take_faults(&self, method: &str, target: &str) -> Vec<Fault> {
        let mut rules = self.rules.lock().unwrap();
        if let Some(rule) = rules
            .iter_mut()
            .find(|r| r.fault.answers() && r.matches(method, target))
        {
            return vec![rule.use_once()];
        }
        rules
            .iter_mut()
            .filter(|r| r.matches(method, target))
            .map(Rule::use_once)
            .collect()
    }

    fn record(&self, seen: Seen) -> usize {
        let mut log = self.seen.lock().unwrap();
        log.push(seen);
        log.len() - 1
    }

    fn answered(&self, index: usize, status: u16, body_sent: u64) {
        let mut log = self.seen.lock().unwrap();
        log[index].status = Some(status);
        log[index].body_sent = body_sent;
    }
}

/// A running fault proxy; dropping it closes the listener and every connection and joins
/// its threads.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy in front of `registry`.
    pub fn start(registry: &Registry) -> FaultProxy {
        FaultProxy::to(&registry.addr())
    }

    /// A proxy in front of the HTTP server at `upstream` (`IP:PORT`).
    pub fn to(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|e| panic!("FaultProxy upstream {upstream:?}: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        let state = Arc::new(State {
            upstream,
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let accept_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("testkit-fault-proxy".into())
            .spawn(move || accept_loop(listener, accept_state))
            .expect("spawn fault proxy thread");
        FaultProxy {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// "127.0.0.1:PORT" (a loopback address: clients use plain HTTP).
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// "docker://127.0.0.1:PORT/{name}".
    pub fn docker_ref(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.addr)
    }

    /// Adds a rule (after those already there).
    pub fn add(&self, rule: Rule) {
        self.state.rules.lock().unwrap().push(rule);
    }

    /// Removes every rule: requests are forwarded untouched from now on.
    pub fn clear_rules(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// Forgets the requests seen so far.
    pub fn clear_log(&self) {
        self.state.seen.lock().unwrap().clear();
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The requests with this method (`"*"` for any) whose target contains `path_contains`.
    pub fn matching(&self, method: &str, path_contains: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| {
                (method == "*" || s.method.eq_ignore_ascii_case(method))
                    && s.target.contains(path_contains)
            })
            .collect()
    }

    /// How many requests [`FaultProxy::matching`] would return.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.matching(method, path_contains).len()
    }

    /// Every `Range` header seen, in order.
    pub fn ranges(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter_map(|s| s.range)
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    for stream in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            break;
        }
        handlers.retain(|h| !h.is_finished());
        let Ok(stream) = stream else { continue };
        let id = state.next_conn.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            state.conns.lock().unwrap().insert(id, clone);
        }
        let conn_state = Arc::clone(&state);
        let spawned = std::thread::Builder::new()
            .name("testkit-fault-conn".into())
            .spawn(move || {
                let _ = serve(&stream, &conn_state);
                // Close for good: remove the clone kept for Drop, then drop ours.
                conn_state.conns.lock().unwrap().remove(&id);
            });
        match spawned {
            Ok(h) => handlers.push(h),
            Err(_) => {
                state.conns.lock().unwrap().remove(&id);
            }
        }
    }
    drop(listener);
    for (_, conn) in state.conns.lock().unwrap().drain() {
        let _ = conn.shutdown(Shutdown::Both);
    }
    for h in handlers {
        let _ = h.join();
    }
}

/// A request or response head: the first line and the header fields, in order.
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    fn set(&mut self, name: &str, value: String) {
        self.remove(name);
        self.headers.push((name.to_string(), value));
    }

    fn is_chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn content_length(&self) -> io::Result<Option<u64>> {
        self.get("content-length")
            .map(|v| v.trim().parse().map_err(|_| invalid("bad Content-Length")))
            .transpose()
    }

    fn wants_close(&self) -> bool {
        self.get("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
            || self.start.contains("HTTP/1.0")
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        out.push_str(&self.start);
        out.push_str("\r\n");
        for (n, v) in &self.headers {
            out.push_str(n);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// One line without its CRLF; Ok(None) at a clean end of stream.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_HEAD as u64)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(invalid("header line too long or cut off"));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| invalid("header line is not UTF-8"))
}

/// A head; Ok(None) if the peer closed before sending anything.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let Some(start) = read_line(r)? else {
        return Ok(None);
    };
    let mut headers = Vec::new();
    let mut total = start.len();
    loop {
        let line = read_line(r)?.ok_or_else(|| invalid("connection closed inside a head"))?;
        if line.is_empty() {
            break;
        }
        total += line.len();
        if total > MAX_HEAD {
            return Err(invalid("head too large"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("header line without a colon"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Some(Head { start, headers }))
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| invalid("connection closed inside a chunk"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailer fields, then the empty line.
            while !read_line(r)?.unwrap_or_default().is_empty() {}
            return Ok(out);
        }
        let start = out.len();
        out.resize(start + size, 0);
        r.read_exact(&mut out[start..])?;
        if !read_line(r)?.unwrap_or_default().is_empty() {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

/// How a message's body is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn read_body(r: &mut impl BufRead, framing: &Framing) -> io::Result<Vec<u8>> {
    match framing {
        Framing::None => Ok(Vec::new()),
        Framing::Length(n) => {
            let mut body = Vec::new();
            r.by_ref().take(*n).read_to_end(&mut body)?;
            if body.len() as u64 != *n {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body shorter than Content-Length",
                ));
            }
            Ok(body)
        }
        Framing::Chunked => read_chunked(r),
        Framing::UntilClose => {
            let mut body = Vec::new();
            r.read_to_end(&mut body)?;
            Ok(body)
        }
    }
}

fn request_framing(head: &Head) -> io::Result<Framing> {
    if head.is_chunked() {
        return Ok(Framing::Chunked);
    }
    Ok(match head.content_length()? {
        Some(n) => Framing::Length(n),
        None => Framing::None,
    })
}

fn response_framing(head: &Head, status: u16, method: &str) -> io::Result<Framing> {
    if method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return Ok(Framing::None);
    }
    if head.is_chunked() {
        return Ok(Framing::Chunked);
    }
    Ok(match head.content_length()? {
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

fn status_of(head: &Head) -> io::Result<u16> {
    head.start
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line"))
}

/// The registry side of one client connection, opened on first use.
struct Upstream {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Upstream {
    fn connect(addr: SocketAddr) -> io::Result<Upstream> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Upstream {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends the request and reads the whole response: (head, body, upstream must close).
    fn exchange(
        &mut self,
        request: &[u8],
        method: &str,
    ) -> io::Result<Option<(Head, Vec<u8>, bool)>> {
        self.writer.write_all(request)?;
        self.writer.flush()?;
        let head = loop {
            let Some(head) = read_head(&mut self.reader)? else {
                return Ok(None);
            };
            // Interim answers (100 Continue) are not passed on: the proxy already has
            // the whole request body.
            if !(100..200).contains(&status_of(&head)?) {
                break head;
            }
        };
        let status = status_of(&head)?;
        let framing = response_framing(&head, status, method)?;
        let body = read_body(&mut self.reader, &framing)?;
        let close = matches!(framing, Framing::UntilClose) || head.wants_close();
        Ok(Some((head, body, close)))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected Fault",
    }
}

/// Makes closing `stream` send a TCP RST instead of a FIN.
fn arm_reset(stream: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(stream, Some(Duration::ZERO));
}

/// Serves one client connection until either side closes or a fault ends it.
fn serve(client: &TcpStream, state: &State) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client.try_clone()?;
    let mut upstream: Option<Upstream> = None;
    loop {
        let Some(mut request) = read_head(&mut from_client)? else {
            return Ok(());
        };
        let body = read_body(&mut from_client, &request_framing(&request)?)?;
        let mut parts = request.start.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let faults = state.take_faults(&method, &target);
        let index = state.record(Seen {
            method: method.clone(),
            target: target.clone(),
            range: request.get("range").map(str::to_string),
            at: Instant::now(),
            faults: faults.clone(),
            status: None,
            body_sent: 0,
        });
        let client_close = request.wants_close();

        match faults.first() {
            Some(Fault::Reset) => {
                arm_reset(client);
                // Every descriptor of the socket must close for the RST to go out: ours
                // here, the one kept for Drop by the caller right after we return.
                return Ok(());
            }
            Some(Fault::Status(status)) => {
                let status = *status;
                let body = if method.eq_ignore_ascii_case("HEAD") {
                    String::new()
                } else {
                    format!(
                        r#"{{"errors":[{{"code":"UNAVAILABLE","message":"HTTP {status} injected by testkit FaultProxy"}}]}}"#
                    )
                };
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
                    reason(status),
                    body.len()
                );
                // Logged first: a client that has its answer must find it in the log.
                state.answered(index, status, body.len() as u64);
                to_client.write_all(head.as_bytes())?;
                to_client.write_all(body.as_bytes())?;
                to_client.flush()?;
                if client_close {
                    return Ok(());
                }
                continue;
            }
            _ => {}
        }

        if faults.contains(&Fault::IgnoreRange) {
            request.remove("range");
            request.remove("if-range");
        }
        if request.is_chunked() {
            request.remove("transfer-encoding");
            request.set("Content-Length", body.len().to_string());
        }
        let mut wire = request.encode();
        wire.extend_from_slice(&body);

        // A kept-alive upstream connection may have been closed by the registry meanwhile:
        // then try once more on a fresh one.
        let mut response = None;
        for _ in 0..2 {
            let reused = upstream.is_some();
            let conn = match &mut upstream {
                Some(c) => c,
                None => upstream.insert(Upstream::connect(state.upstream)?),
            };
            match conn.exchange(&wire, &method) {
                Ok(Some(r)) => {
                    response = Some(r);
                    break;
                }
                Ok(None) if reused => upstream = None,
                Err(_) if reused => upstream = None,
                Ok(None) => return Err(invalid("the registry closed without answering")),
                Err(e) => return Err(e),
            }
        }
        let (mut head, mut body, upstream_close) =
            response.ok_or_else(|| invalid("the registry closed without answering"))?;
        if upstream_close {
            upstream = None;
        }
        let status = status_of(&head)?;
        if head.is_chunked() || (head.content_length()?.is_none() && !body.is_empty()) {
            head.remove("transfer-encoding");
            head.set("Content-Length", body.len().to_string());
        }
        for fault in &faults {
            if let Fault::Corrupt(offset) = fault {
                if !body.is_empty() {
                    let i = (*offset).min(body.len() as u64 - 1) as usize;
                    body[i] ^= 0xff;
                }
            }
        }
        let cut = faults.iter().find_map(|f| match f {
            Fault::CutAfter(n) if (*n as usize) < body.len() => Some(*n as usize),
            _ => None,
        });
        // Logged first: a client that has its answer must find it in the log.
        state.answered(index, status, cut.unwrap_or(body.len()) as u64);
        to_client.write_all(&head.encode())?;
        match cut {
            Some(n) => {
                to_client.write_all(&body[..n])?;
                to_client.flush()?;
                // FIN after the first n bytes: the client sees the body end early.
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            None => {
                to_client.write_all(&body)?;
                to_client.flush()?;
            }
        }
        if client_close || head.wants_close() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_bodies() {
        let mut r = &b"4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: 1\r\n\r\nrest"[..];
        assert_eq!(read_chunked(&mut r).unwrap(), b"Wikipedia");
        assert_eq!(r, b"rest");
    }

    #[test]
    fn heads_round_trip() {
        let mut r = &b"GET /v2/ HTTP/1.1\r\nHost: x\r\nRange: bytes=5-\r\n\r\n"[..];
        let mut head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.get("range"), Some("bytes=5-"));
        head.remove("Range");
        assert_eq!(head.encode(), b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(read_head(&mut &b""[..]).unwrap().is_none());
    }

    #[test]
    fn answering_faults_win_and_rules_run_out() {
        let state = State {
            upstream: "127.0.0.1:1".parse().unwrap(),
            rules: Mutex::new(vec![
                Rule::new("GET", "/blobs/", Fault::CutAfter(3)).times(1),
                Rule::new("get", "/blobs/", Fault::Status(503)).times(1),
                Rule::new("*", "/blobs/", Fault::IgnoreRange),
            ]),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        };
        let t = "/v2/a/blobs/sha256:00";
        assert_eq!(state.take_faults("GET", t), vec![Fault::Status(503)]);
        assert_eq!(
            state.take_faults("GET", t),
            vec![Fault::CutAfter(3), Fault::IgnoreRange]
        );
        assert_eq!(state.take_faults("GET", t), vec![Fault::IgnoreRange]);
        assert!(state.take_faults("GET", "/v2/a/manifests/1").is_empty());
    }
}
