//! Broken HTTP/1.1 servers. The correct one (`servers/http.rs`) gathers requests across reads,
//! waits for each Content-Length body, answers pipelined requests in order, finishes what it read
//! before a half-close, and keeps accepting whatever happens to one connection. Every response is
//! `200 OK` with the body `METHOD PATH BODY_LENGTH\n`, as there.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::spawn_each;

/// Requests larger than this are refused with 431 and the connection closed.
const MAX_HEAD: usize = 64 * 1024;
/// The read buffer, as in the correct server.
const BUF: usize = 16 * 1024;

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    /// Bytes of the head, blank line included.
    len: usize,
    body_len: usize,
    keep_alive: bool,
}

/// Parses the request head at the front of `pending` without taking anything off it; `None`
/// until the whole head has arrived.
fn parse_head(pending: &[u8]) -> Option<Result<Head, &'static str>> {
    let Some(head_end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (pending.len() > MAX_HEAD).then_some(Err("431 Request Header Fields Too Large"));
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(path), Some(version)) = (first.next(), first.next(), first.next())
    else {
        return Some(Err("400 Bad Request"));
    };
    let mut body_len = 0usize;
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (
            name.trim().to_ascii_lowercase(),
            value.trim().to_ascii_lowercase(),
        );
        match name.as_str() {
            "content-length" => match value.parse() {
                Ok(n) => body_len = n,
                Err(_) => return Some(Err("400 Bad Request")),
            },
            "connection" if value == "close" => keep_alive = false,
            "connection" if value == "keep-alive" => keep_alive = true,
            _ => {}
        }
    }
    Some(Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        len: head_end + 4,
        body_len,
        keep_alive,
    }))
}

/// The correct way to take one request off the front of `pending`: the head and its whole
/// body, or nothing until both have arrived.
fn next_request(pending: &mut Vec<u8>) -> Option<Result<Head, &'static str>> {
    let head = match parse_head(pending)? {
        Ok(h) => h,
        Err(status) => return Some(Err(status)),
    };
    let total = head.len + head.body_len;
    if pending.len() < total {
        return None;
    }
    pending.drain(..total);
    Some(Ok(head))
}

fn response(status: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: {connection}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// What the server did with one request.
enum Answered {
    /// Go on with the connection.
    KeepAlive,
    /// The connection is finished (closed by request, refused, or failed).
    Close,
}

/// Answers one parsed request (or refuses one that did not parse), as the correct server does.
async fn answer(stream: &mut TcpStream, request: Result<Head, &'static str>) -> Answered {
    let head = match request {
        Ok(h) => h,
        Err(status) => {
            let _ = stream.write_all(&response(status, b"", false)).await;
            return Answered::Close;
        }
    };
    let body = format!("{} {} {}\n", head.method, head.path, head.body_len);
    let reply = response("200 OK", body.as_bytes(), head.keep_alive);
    if stream.write_all(&reply).await.is_err() {
        return Answered::Close;
    }
    if !head.keep_alive {
        let _ = stream.shutdown().await;
        return Answered::Close;
    }
    Answered::KeepAlive
}

/// `http-one-read`: parses whatever one read returned as whole requests.
///
/// The mistake: reading into a fresh buffer each time and parsing it as if a read returned whole
/// requests, which it does when a client writes each request at once on a quiet machine. A
/// request that arrives in pieces (a slow client, a proxy, a large header) is parsed half-done
/// and refused with 400. Caught by `http-byte-at-a-time`.
pub(in crate::servers) async fn one_read(listener: TcpListener) {
    spawn_each(listener, |mut stream| async move {
        let mut buf = vec![0u8; BUF];
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // BUG: the bytes of this one read are taken for whole requests; nothing is carried
            // over to the next read.
            let mut pending = buf[..n].to_vec();
            while let Some(request) = next_request(&mut pending) {
                if let Answered::Close = answer(&mut stream, request).await {
                    return;
                }
            }
            if !pending.is_empty() {
                let _ = stream
                    .write_all(&response("400 Bad Request", b"", false))
                    .await;
                return;
            }
        }
    })
    .await;
}

/// `http-first-pipelined`: answers the first request of what it read and discards the rest.
///
/// The mistake: a request/response loop that clears its buffer after each response ("ready for
/// the next request"), as if a client waited for each response before sending the next request.
/// A pipelining client sends several at once; all but the first are lost, and the client waits
/// for answers that never come. Caught by `http-pipelining`.
pub(in crate::servers) async fn first_pipelined(listener: TcpListener) {
    spawn_each(listener, |mut stream| async move {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; BUF];
        loop {
            if let Some(request) = next_request(&mut pending) {
                if let Answered::Close = answer(&mut stream, request).await {
                    return;
                }
                // BUG: whatever came after this request (the next pipelined ones) is thrown away.
                pending.clear();
                continue;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
}

/// `http-body-as-request`: answers once the head is in and leaves the body in the buffer.
///
/// The mistake: a server written for GET requests, whose parser stops at the blank line. It
/// reads Content-Length (and reports it), but neither waits for the body nor takes it off the
/// buffer, so the body's bytes are parsed as the start of the next request on the connection.
/// Caught by `http-request-body`.
pub(in crate::servers) async fn body_as_request(listener: TcpListener) {
    spawn_each(listener, |mut stream| async move {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; BUF];
        loop {
            while let Some(parsed) = parse_head(&pending) {
                if let Ok(head) = &parsed {
                    // BUG: only the head is taken off the buffer; the body stays, to be read as
                    // the next request.
                    pending.drain(..head.len);
                }
                if let Answered::Close = answer(&mut stream, parsed).await {
                    return;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
}

/// `http-half-close-drop`: drops the response to a request when the client has half-closed.
///
/// The mistake: before doing the work of a request, the server checks whether the client is still
/// there (no point answering a client that left) by peeking at the socket and taking end of
/// stream for "gone".
/// But end of stream only says the client has finished *sending*: a client that writes its
/// request and then shuts down its sending side (`shutdown(SHUT_WR)`, as HTTP/1.0 tools and
/// `nc -N` do) is waiting for the answer, and gets a closed connection instead. Caught by
/// `http-half-close`.
pub(in crate::servers) async fn half_close_drop(listener: TcpListener) {
    spawn_each(listener, |mut stream| async move {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; BUF];
        loop {
            while let Some(request) = next_request(&mut pending) {
                // BUG: end of stream is taken for a client that has gone away, and the request
                // it is waiting for is dropped.
                if client_gone(&stream) {
                    return;
                }
                if let Answered::Close = answer(&mut stream, request).await {
                    return;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
}

/// Whether the client has hung up, by a non-blocking peek (`recv(MSG_PEEK)` on the non-blocking
/// socket, the usual idiom): 0 bytes is end of stream. The peek asks the kernel itself, not tokio's record of
/// readiness, which may not have heard of the end of stream yet.
fn client_gone(stream: &TcpStream) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    // The socket is non-blocking (tokio's), so the peek returns at once.
    matches!(socket2::SockRef::from(stream).peek(&mut probe), Ok(0))
}

/// `http-stop-accepting`: the accept loop ends when one connection fails.
///
/// The mistake: the accept loop also collects its connections' results and propagates their
/// errors with `?`, which ends the loop (and drops the listener) the first time a client resets
/// its connection mid-request. The server keeps running, still serving the clients it has, but
/// refuses everyone else. Caught by `http-clients-abort`.
pub(in crate::servers) async fn stop_accepting(listener: TcpListener) {
    let mut connections = JoinSet::new();
    let _ = accept_loop(listener, &mut connections).await;
    // The server carries on, as a program's main would, until it is told to stop: the clients
    // already connected are still served.
    while connections.join_next().await.is_some() {}
    std::future::pending::<()>().await;
}

async fn accept_loop(
    listener: TcpListener,
    connections: &mut JoinSet<io::Result<()>>,
) -> io::Result<()> {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                connections.spawn_local(serve_fallibly(stream));
            }
            Some(finished) = connections.join_next() => {
                // BUG: one connection's error ends the accept loop, and the listener with it.
                finished.map_err(io::Error::other)??;
            }
        }
    }
}

/// The correct connection handler, but reporting I/O errors instead of swallowing them.
async fn serve_fallibly(mut stream: TcpStream) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; BUF];
    loop {
        while let Some(request) = next_request(&mut pending) {
            if let Answered::Close = answer(&mut stream, request).await {
                return Ok(());
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&buf[..n]);
    }
}
