//! Broken echo servers. The correct one (`servers/echo.rs`) sends every byte back in order, on
//! every connection at once, and answers a half-close with a half-close.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::spawn_each;

/// The read buffer of every variant, as in the correct server.
const BUF: usize = 64 * 1024;

/// The correct connection handler, for the variants whose bug is in the accept loop.
async fn echo(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
    }
    stream.shutdown().await
}

/// `echo-one-read`: answers the first read of a connection, then closes it.
///
/// The mistake: taking one read() for one whole message ("the client sends its line, we send it
/// back, done"). TCP is a byte stream: a message written in pieces, or slowly, arrives in pieces,
/// and everything after the first piece is lost. Caught by `echo-byte-at-a-time`.
pub(in crate::servers) async fn one_read(listener: TcpListener) {
    spawn_each(listener, |mut stream| async move {
        let mut buf = vec![0u8; BUF];
        // BUG: one read is taken for the whole message; whatever follows it is never read.
        if let Ok(n) = stream.read(&mut buf).await {
            let _ = stream.write_all(&buf[..n]).await;
        }
        let _ = stream.shutdown().await;
    })
    .await;
}

/// `echo-short-write`: writes each read back with a single write() and ignores its count.
///
/// The mistake: assuming write() takes the whole buffer, as it nearly always does in a quick test.
/// When the socket's send buffer is nearly full (a large transfer, a client reading slowly) the
/// kernel takes only part of it, and the rest is silently dropped: the echo has holes. Caught by
/// `echo-big-transfer`.
pub(in crate::servers) async fn short_write(listener: TcpListener) {
    spawn_each(listener, |mut stream| async move {
        let mut buf = vec![0u8; BUF];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // BUG: write() may take fewer than n bytes; the rest is never sent.
                    #[allow(clippy::unused_io_amount)]
                    if stream.write(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = stream.shutdown().await;
    })
    .await;
}

/// `echo-one-at-a-time`: serves each connection to its end before accepting the next.
///
/// The mistake: awaiting the connection's handler in the accept loop instead of spawning it, the
/// async twin of a single-threaded blocking server. It works for one client at a time; one client
/// that connects and then says nothing (or reads nothing) blocks everyone behind it. Caught by
/// `echo-stalled-client`.
pub(in crate::servers) async fn one_at_a_time(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // BUG: served inline: until this client leaves, no other connection is accepted.
        let _ = echo(stream).await;
    }
}

/// `echo-exit-on-reset`: the whole server ends when one client resets its connection.
///
/// The mistake: propagating a connection's I/O error with `?` into the server's main loop, where
/// it means "the server failed". A client that aborts (ECONNRESET) is an everyday event, but here
/// it ends the server, and with it every other client's connection. Caught by
/// `echo-clients-abort`.
pub(in crate::servers) async fn exit_on_reset(listener: TcpListener) {
    let _ = exit_on_reset_loop(listener).await;
}

async fn exit_on_reset_loop(listener: TcpListener) -> io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                connections.spawn_local(echo(stream));
            }
            Some(finished) = connections.join_next() => {
                // BUG: a client's error is taken for the server's: `?` ends the server.
                finished.map_err(io::Error::other)??;
            }
        }
    }
}

/// `echo-leak-closed`: keeps every connection in a registry, so a socket is never closed.
///
/// The mistake: a list of connected clients (for statistics, or to reach them all at shutdown)
/// holds a reference to each socket and nothing removes it when the client leaves. The handler
/// relies on dropping its reference to close the connection, but the registry's keeps the socket
/// open: the client never reads end of stream, and the server leaks a descriptor (in CLOSE_WAIT)
/// per client that ever connected. Caught by `echo-half-close`.
pub(in crate::servers) async fn leak_closed(listener: TcpListener) {
    let registry: Rc<RefCell<Vec<Rc<TcpStream>>>> = Rc::default();
    spawn_each(listener, |stream| {
        let stream = Rc::new(stream);
        // BUG: registered here, and never removed.
        registry.borrow_mut().push(stream.clone());
        async move {
            let _ = echo_shared(&stream).await;
            // The handler's reference is dropped here, expected to close the connection.
        }
    })
    .await;
}

/// Echo through a shared reference: the readiness-based calls of tokio's `TcpStream`.
async fn echo_shared(stream: &TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        stream.readable().await?;
        let n = match stream.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut rest = &buf[..n];
        // Each pass either writes something or waits for the socket to take more.
        while !rest.is_empty() {
            stream.writable().await?;
            match stream.try_write(rest) {
                Ok(k) => rest = &rest[k..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}
