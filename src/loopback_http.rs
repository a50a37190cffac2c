//! One small HTTP/1.1 server on 127.0.0.1 for everything that pretends to be a remote
//! service: the simulated Genesys Cloud ([`crate::sim`]), the client's scripted test
//! server and the tests' gate in front of InfluxDB. Each brings a handler
//! (`Fn(&Request) -> Reply`); the server does the rest: one thread per connection
//! (bounded, the surplus answered 503), keep-alive because ureq pools connections,
//! `Content-Length` request bodies (bounded; chunked bodies are refused with 411, as no
//! client here sends them), `Connection: close` honoured.
//!
//! Every blocking call has a short timeout so each loop re-checks the stop flag: dropping
//! the [`Server`] ends the accept loop and every connection within a fraction of a second.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked reads and the accept loop look at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// How long connections may wait: a server's constant, a test's choice.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// An idle keep-alive connection is closed after this long.
    idle: Duration,
    /// A request must arrive completely within this time of its first byte.
    request: Duration,
}

const TIMEOUTS: Timeouts = Timeouts {
    // Longer than ureq's pool age, so the client is the one that gives a connection up.
    idle: Duration::from_secs(120),
    request: Duration::from_secs(10),
};
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What differs between the servers built on this module.
#[derive(Debug, Clone)]
pub struct Options {
    /// Names the threads (`<name>-accept`, `<name>-conn`) and the log lines.
    pub name: &'static str,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Larger request bodies are answered 413 and the connection closed.
    pub max_body_bytes: usize,
    /// False: every answer carries `Connection: close` (one request per connection).
    pub keep_alive: bool,
}

/// The stop flag shared by a [`Server`] and its handler, so a handler's waits end when
/// the server stops.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Sleeps for `delay`, or less when the server stops meanwhile.
    pub fn sleep(&self, delay: Duration) {
        let until = Instant::now() + delay;
        while !self.is_set() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(POLL));
        }
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running server; dropping it stops it and waits for its threads.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Stop,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds a free port on 127.0.0.1 and answers every request with `handler`.
    pub fn start(
        options: Options,
        stop: Stop,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Server> {
        Server::start_timed(options, TIMEOUTS, stop, handler)
    }

    fn start_timed(
        options: Options,
        timeouts: Timeouts,
        stop: Stop,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let context = Arc::new(Context {
            options,
            timeouts,
            stop: stop.clone(),
            handler: Box::new(handler),
        });
        let accept = thread::Builder::new()
            .name(format!("{}-accept", context.options.name))
            .spawn(move || accept_loop(listener, context))?;
        Ok(Server {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// What the accept loop hands every connection thread.
struct Context {
    options: Options,
    timeouts: Timeouts,
    stop: Stop,
    handler: Box<Handler>,
}

/// One parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Raw query string (without `?`), still percent-encoded.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    keep_alive: bool,
}

impl Request {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler wants sent back.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status, "application/json", value.to_string())
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// The handler's verdict.
#[derive(Debug)]
pub enum Reply {
    Send(Response),
    /// Close the socket without a word (a dropped connection).
    Drop,
    /// Keep the connection open and never answer (a hung server), until the peer closes
    /// or the server stops.
    Hold,
}

/// Accepts connections until the stop flag is set, then joins every connection thread.
fn accept_loop(listener: TcpListener, context: Arc<Context>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !context.stop.is_set() {
        match listener.accept() {
            Ok((stream, _)) => {
                connections.retain(|c| !c.is_finished());
                if connections.len() >= context.options.max_connections.max(1) {
                    refuse(stream);
                    continue;
                }
                let context = Arc::clone(&context);
                let name = context.options.name;
                match thread::Builder::new()
                    .name(format!("{name}-conn"))
                    .spawn(move || serve_connection(stream, &context))
                {
                    Ok(handle) => connections.push(handle),
                    Err(e) => log::warn!("{name}: cannot start a connection thread: {e}"),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(e) => {
                log::debug!("{}: accept failed: {e}", context.options.name);
                thread::sleep(POLL);
            }
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Over the connection limit: a 503 and close, as an overloaded gateway would.
fn refuse(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let response = Response::new(503, "text/plain", "too many connections");
    let _ = write_response(&mut stream, &response, true);
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve_connection(mut stream: TcpStream, context: &Context) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(POLL)).is_err()
        || stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buf, context) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(response) => {
                let _ = write_response(&mut stream, &response, true);
                return;
            }
        };
        let close = !(request.keep_alive && context.options.keep_alive);
        match (context.handler)(&request) {
            Reply::Drop => {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            Reply::Hold => {
                hold(&mut stream, &context.stop);
                return;
            }
            Reply::Send(response) => {
                if write_response(&mut stream, &response, close).is_err() || close {
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
        if context.stop.is_set() {
            return;
        }
    }
}

/// Reads and discards until the peer closes or the server stops.
fn hold(stream: &mut TcpStream, stop: &Stop) {
    let mut chunk = [0u8; 1024];
    while !stop.is_set() {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Reads one request. `Ok(None)`: the peer closed, went idle or the server stops.
/// `Err`: a malformed request, answered and then closed.
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    context: &Context,
) -> Result<Option<Request>, Response> {
    // The request's time runs from its first byte, not from when the connection went
    // idle: a keep-alive connection idle for longer than the request timeout must still
    // get the whole of it for its next request.
    if buf.is_empty()
        && !fill(
            stream,
            buf,
            &context.stop,
            Instant::now(),
            context.timeouts.idle,
        )
    {
        return Ok(None);
    }
    let started = Instant::now();
    let limit = context.timeouts.request;
    let head_end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(Response::new(431, "text/plain", "request head too large"));
        }
        if !fill(stream, buf, &context.stop, started, limit) {
            return Ok(None);
        }
    };
    let mut request = parse_head(&buf[..head_end])?;
    let length = content_length(&request)?;
    if length > context.options.max_body_bytes {
        return Err(Response::new(413, "text/plain", "request body too large"));
    }
    while buf.len() < head_end + length {
        if !fill(stream, buf, &context.stop, started, limit) {
            return Ok(None);
        }
    }
    request.body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Ok(Some(request))
}

/// Reads more bytes into `buf`; false on EOF, error, timeout or stop.
fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    stop: &Stop,
    started: Instant,
    limit: Duration,
) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if stop.is_set() || started.elapsed() > limit {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => return false,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let bad = || Response::new(400, "text/plain", "malformed request");
    let text = std::str::from_utf8(head).map_err(|_| bad())?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().ok_or_else(bad)?.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => (m, t, v),
        _ => return Err(bad()),
    };
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
        keep_alive: version == "HTTP/1.1",
    };
    if let Some(connection) = request.header("Connection") {
        let connection = connection.to_ascii_lowercase();
        if connection.contains("close") {
            request.keep_alive = false;
        } else if connection.contains("keep-alive") {
            request.keep_alive = true;
        }
    }
    Ok(request)
}

fn content_length(request: &Request) -> Result<usize, Response> {
    if request.header("Transfer-Encoding").is_some() {
        return Err(Response::new(
            411,
            "text/plain",
            "send a Content-Length body",
        ));
    }
    match request.header("Content-Length") {
        None => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| Response::new(400, "text/plain", "bad Content-Length")),
    }
}

fn write_response(stream: &mut TcpStream, response: &Response, close: bool) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response.body);
    stream.write_all(&bytes)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn options(max_body_bytes: usize, keep_alive: bool) -> Options {
        Options {
            name: "test",
            max_connections: 4,
            max_body_bytes,
            keep_alive,
        }
    }

    /// Sends `request` on a fresh connection and reads until the server closes it.
    fn exchange(server: &Server, request: &str) -> String {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[test]
    fn without_keep_alive_every_answer_closes_its_connection() {
        let server = Server::start(options(1024, false), Stop::default(), |request| {
            Reply::Send(Response::new(200, "text/plain", request.query.clone()))
        })
        .unwrap();
        let answer = exchange(&server, "GET /x?a=1 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\na=1"), "{answer}");
    }

    #[test]
    fn oversized_and_chunked_bodies_are_refused_before_the_handler() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let server = Server::start(options(4, true), Stop::default(), move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Reply::Send(Response::new(200, "text/plain", ""))
        })
        .unwrap();
        let answer = exchange(&server, "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n12345");
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        let answer = exchange(
            &server,
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 411 "), "{answer}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    /// A keep-alive connection idle for longer than the request timeout, then a request
    /// whose body comes in two pieces: served (it was dropped, resetting the client's
    /// write, when the request's time counted from the end of the previous one).
    #[test]
    fn a_request_after_a_long_idle_gets_the_whole_request_timeout() {
        let timeouts = Timeouts {
            idle: Duration::from_secs(5),
            request: Duration::from_millis(300),
        };
        let server = Server::start_timed(options(1024, true), timeouts, Stop::default(), |r| {
            Reply::Send(Response::new(200, "text/plain", r.body.clone()))
        })
        .unwrap();
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answers = Vec::new();
        for _ in 0..2 {
            thread::sleep(Duration::from_millis(400));
            stream
                .write_all(b"POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc")
                .unwrap();
            thread::sleep(Duration::from_millis(100));
            stream.write_all(b"def").unwrap();
            let mut answer = [0u8; 1024];
            let n = stream.read(&mut answer).unwrap();
            answers.push(String::from_utf8_lossy(&answer[..n]).into_owned());
        }
        for answer in answers {
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            assert!(answer.ends_with("\r\n\r\nabcdef"), "{answer}");
        }
    }

    #[test]
    fn dropped_and_held_connections_get_no_answer_and_dropping_the_server_ends_them() {
        let server = Server::start(options(1024, true), Stop::default(), |request| {
            if request.path == "/drop" {
                Reply::Drop
            } else {
                Reply::Hold
            }
        })
        .unwrap();
        assert_eq!(exchange(&server, "GET /drop HTTP/1.1\r\n\r\n"), "");
        let mut held = TcpStream::connect(server.addr()).unwrap();
        held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        held.write_all(b"GET /hold HTTP/1.1\r\n\r\n").unwrap();
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(2));
        let mut answer = Vec::new();
        let _ = held.read_to_end(&mut answer);
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
}
