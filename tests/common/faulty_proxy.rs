//! A TCP proxy in front of a test S3 server that breaks things at set
//! rates: 500 InternalError and 503 SlowDown answers, connections reset in
//! the middle of a GET reply's body, slow and stalled bodies, and lost PUT
//! replies (the PUT reaches the server and is applied; its reply never
//! reaches the client). Faults are drawn from a seeded counter, not the
//! clock, so a sequential run meets the same faults every time.
//!
//! It speaks just enough HTTP/1.1 to find message boundaries
//! (Content-Length and chunked bodies); everything stays on 127.0.0.1.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Fault rates, each per 10,000 requests. A drawn fault that does not fit
/// the request (a body reset on a PUT) is not injected.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// Any request: answered 500 InternalError without reaching the server.
    pub internal_error: u32,
    /// Any request: answered 503 SlowDown without reaching the server.
    pub slow_down: u32,
    /// GET with a body: the reply is cut off halfway through its body.
    pub reset_body: u32,
    /// GET with a body: the body trickles in small pieces.
    pub slow_body: u32,
    /// GET with a body: half the body, then nothing for [`STALL`], then
    /// the connection closes.
    pub stall_body: u32,
    /// PUT: applied by the server, then the connection is dropped before
    /// the reply.
    pub lost_put_reply: u32,
}

/// How long a stalled body stays silent.
pub const STALL: Duration = Duration::from_secs(2);
/// Pieces and pause of a slow body.
const SLOW_PIECES: usize = 6;
const SLOW_PAUSE: Duration = Duration::from_millis(15);

/// Faults injected so far, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub internal_error: u64,
    pub slow_down: u64,
    pub reset_body: u64,
    pub slow_body: u64,
    pub stall_body: u64,
    pub lost_put_reply: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    InternalError,
    SlowDown,
    ResetBody,
    SlowBody,
    StallBody,
    LostPutReply,
}

struct Shared {
    upstream: SocketAddr,
    seed: u64,
    rates: Mutex<Rates>,
    drawn: AtomicU64,
    counts: Mutex<Counts>,
}

impl Shared {
    /// The fault for the next request, from the seeded counter.
    fn draw(&self, method: &str) -> Option<Fault> {
        let n = self.drawn.fetch_add(1, Ordering::SeqCst);
        let r = (splitmix64(self.seed.wrapping_add(n)) % 10_000) as u32;
        let rates = *self.rates.lock().unwrap();
        let table: &[(u32, Fault)] = match method {
            "GET" => &[
                (rates.internal_error, Fault::InternalError),
                (rates.slow_down, Fault::SlowDown),
                (rates.reset_body, Fault::ResetBody),
                (rates.slow_body, Fault::SlowBody),
                (rates.stall_body, Fault::StallBody),
            ],
            "PUT" => &[
                (rates.internal_error, Fault::InternalError),
                (rates.slow_down, Fault::SlowDown),
                (rates.lost_put_reply, Fault::LostPutReply),
            ],
            _ => &[
                (rates.internal_error, Fault::InternalError),
                (rates.slow_down, Fault::SlowDown),
            ],
        };
        let mut upto = 0;
        for &(rate, fault) in table {
            upto += rate;
            if r < upto {
                return Some(fault);
            }
        }
        None
    }

    fn count(&self, fault: Option<Fault>) {
        let mut c = self.counts.lock().unwrap();
        c.requests += 1;
        match fault {
            None => {}
            Some(Fault::InternalError) => c.internal_error += 1,
            Some(Fault::SlowDown) => c.slow_down += 1,
            Some(Fault::ResetBody) => c.reset_body += 1,
            Some(Fault::SlowBody) => c.slow_body += 1,
            Some(Fault::StallBody) => c.stall_body += 1,
            Some(Fault::LostPutReply) => c.lost_put_reply += 1,
        }
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The proxy, listening on 127.0.0.1; stops when dropped.
pub struct FaultyProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    pub async fn start(upstream: SocketAddr, rates: Rates, seed: u64) -> Self {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("binding the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            seed,
            rates: Mutex::new(rates),
            drawn: AtomicU64::new(0),
            counts: Mutex::new(Counts::default()),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) ends every
            // connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(serve_conn(sock, s.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        FaultyProxy { addr, shared, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_rates(&self, rates: Rates) {
        *self.shared.rates.lock().unwrap() = rates;
    }

    pub fn counts(&self) -> Counts {
        *self.shared.counts.lock().unwrap()
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One side of a connection, with what was read but not yet consumed.
struct Wire {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.sock.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// A message head up to and including its blank line; `None` when the
    /// peer closed between messages.
    async fn read_head(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..i + 4).collect()));
            }
            if self.buf.len() > 64 * 1024 {
                return Err(std::io::Error::other("head over 64 KiB"));
            }
            if self.fill().await? == 0 {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(std::io::ErrorKind::UnexpectedEof.into()),
                };
            }
        }
    }

    async fn read_exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn read_line(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                return Ok(self.buf.drain(..i + 2).collect());
            }
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// A chunked body, raw (sizes, chunks and trailers), to forward as is.
    async fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        loop {
            let line = self.read_line().await?;
            let text = String::from_utf8_lossy(&line);
            let hex = text.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {text:?}")))?;
            raw.extend_from_slice(&line);
            if size == 0 {
                loop {
                    let l = self.read_line().await?;
                    raw.extend_from_slice(&l);
                    if l == b"\r\n" {
                        return Ok(raw);
                    }
                }
            }
            raw.extend(self.read_exact(size + 2).await?);
        }
    }

    /// The body of a message with this head. `bodiless` for replies to
    /// HEAD and for 1xx/204/304 replies.
    async fn read_body(&mut self, head: &Head, bodiless: bool) -> std::io::Result<Vec<u8>> {
        if bodiless {
            Ok(Vec::new())
        } else if head.chunked {
            self.read_chunked().await
        } else {
            self.read_exact(head.content_length.unwrap_or(0)).await
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What the proxy needs from a message head.
struct Head {
    /// The method of a request, the status code of a reply.
    first: String,
    content_length: Option<usize>,
    chunked: bool,
    expect_continue: bool,
}

impl Head {
    fn parse(raw: &[u8], reply: bool) -> Head {
        let text = String::from_utf8_lossy(raw);
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or("");
        let first = start
            .split(' ')
            .nth(usize::from(reply))
            .unwrap_or("")
            .to_string();
        let mut head = Head {
            first,
            content_length: None,
            chunked: false,
            expect_continue: false,
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => head.content_length = value.parse().ok(),
                "transfer-encoding" => {
                    head.chunked = value.to_ascii_lowercase().contains("chunked")
                }
                "expect" => head.expect_continue = value.eq_ignore_ascii_case("100-continue"),
                _ => {}
            }
        }
        head
    }
}

/// A canned S3 error reply (no body for HEAD, as S3 does).
fn error_reply(fault: Fault, method: &str) -> Vec<u8> {
    let (status, code) = match fault {
        Fault::SlowDown => ("503 Slow Down", "SlowDown"),
        _ => ("500 Internal Server Error", "InternalError"),
    };
    let body = if method == "HEAD" {
        String::new()
    } else {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
             <Message>injected fault</Message><RequestId>fault</RequestId></Error>"
        )
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        if method == "HEAD" { 0 } else { body.len() }
    )
    .into_bytes()
}

/// Relays the requests of one client connection, one at a time, over a
/// connection of its own to the server.
async fn serve_conn(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let mut client = Wire {
        sock: client,
        buf: Vec::new(),
    };
    let mut server = Wire {
        sock: server,
        buf: Vec::new(),
    };
    while let Ok(true) = relay_one(&mut client, &mut server, &shared).await {}
}

/// Relays one request and its reply, faults included; `false` once the
/// connection is over.
async fn relay_one(client: &mut Wire, server: &mut Wire, shared: &Shared) -> std::io::Result<bool> {
    let Some(req_raw) = client.read_head().await? else {
        return Ok(false);
    };
    let req = Head::parse(&req_raw, false);
    if req.expect_continue {
        client
            .sock
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    let req_body = client.read_body(&req, false).await?;
    let method = req.first.clone();
    let fault = shared.draw(&method);
    if let Some(f @ (Fault::InternalError | Fault::SlowDown)) = fault {
        shared.count(fault);
        client.sock.write_all(&error_reply(f, &method)).await?;
        return Ok(true);
    }
    // The server answers `100 Continue` itself when asked; we did already.
    let req_raw = strip_expect(&req_raw);
    server.sock.write_all(&req_raw).await?;
    server.sock.write_all(&req_body).await?;
    let (resp_raw, resp) = loop {
        let raw = server
            .read_head()
            .await?
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let head = Head::parse(&raw, true);
        if !head.first.starts_with('1') {
            break (raw, head);
        }
    };
    let bodiless = method == "HEAD" || matches!(resp.first.as_str(), "204" | "304");
    let body = server.read_body(&resp, bodiless).await?;
    let body_fault = matches!(
        fault,
        Some(Fault::ResetBody | Fault::SlowBody | Fault::StallBody)
    );
    let fault = match fault {
        Some(_) if body_fault && (body.len() < 2 || !resp.first.starts_with('2')) => None,
        f => f,
    };
    shared.count(fault);
    match fault {
        // Applied, and the reply goes nowhere.
        Some(Fault::LostPutReply) => return Ok(false),
        Some(Fault::ResetBody) => {
            client.sock.write_all(&resp_raw).await?;
            client.sock.write_all(&body[..body.len() / 2]).await?;
            return Ok(false);
        }
        Some(Fault::StallBody) => {
            client.sock.write_all(&resp_raw).await?;
            client.sock.write_all(&body[..body.len() / 2]).await?;
            tokio::time::sleep(STALL).await;
            return Ok(false);
        }
        Some(Fault::SlowBody) => {
            client.sock.write_all(&resp_raw).await?;
            for piece in body.chunks(body.len().div_ceil(SLOW_PIECES)) {
                tokio::time::sleep(SLOW_PAUSE).await;
                client.sock.write_all(piece).await?;
            }
        }
        _ => {
            client.sock.write_all(&resp_raw).await?;
            client.sock.write_all(&body).await?;
        }
    }
    Ok(true)
}

fn strip_expect(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    text.split_inclusive("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("expect:"))
        .collect::<String>()
        .into_bytes()
}
