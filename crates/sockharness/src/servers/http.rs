//! A minimal HTTP/1.1 server: keep-alive, Content-Length bodies, pipelined requests answered in
//! order. Every request gets `200 OK` with a body naming the method, path and body length.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Requests larger than this are refused with 431 and the connection closed.
const MAX_HEAD: usize = 64 * 1024;

pub(super) async fn serve(mut stream: TcpStream) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Answer every complete request already received, in order, before reading more.
        while let Some(request) = next_request(&mut pending) {
            let request = match request {
                Ok(r) => r,
                Err(status) => {
                    if stream
                        .write_all(response(status, b"", false).as_slice())
                        .await
                        .is_ok()
                    {
                        linger(stream).await;
                    }
                    return;
                }
            };
            let body = format!("{} {} {}\n", request.method, request.path, request.body_len);
            let reply = response("200 OK", body.as_bytes(), request.keep_alive);
            if stream.write_all(&reply).await.is_err() {
                return;
            }
            if !request.keep_alive {
                linger(stream).await;
                return;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// Closes the way a careful server does (nginx's lingering close): the answer is sent and the
/// write side shut, then what the client still sends is read and dropped until it closes, for a
/// while. Closing at once with unread bytes would reset the connection, and the reset may reach
/// the client before it has read the answer, which is then lost.
async fn linger(mut stream: TcpStream) {
    const LINGER: Duration = Duration::from_secs(2);
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

struct Request {
    method: String,
    path: String,
    body_len: usize,
    keep_alive: bool,
}

/// Takes one complete request off the front of `pending`; `None` until one has arrived.
fn next_request(pending: &mut Vec<u8>) -> Option<Result<Request, &'static str>> {
    let Some(head_end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (pending.len() > MAX_HEAD).then_some(Err("431 Request Header Fields Too Large"));
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (method, path, version) = (first.next(), first.next(), first.next());
    let (Some(method), Some(path), Some(version)) = (method, path, version) else {
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
    let total = head_end + 4 + body_len;
    if pending.len() < total {
        return None;
    }
    pending.drain(..total);
    Some(Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        body_len,
        keep_alive,
    }))
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
