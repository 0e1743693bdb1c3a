//! The kernel boundary: sockets, options, raw I/O calls and socket properties.
//!
//! Reads and writes go straight to the system call on the non-blocking descriptor, so a `nowait`
//! statement sees what the kernel has now, not what the runtime last heard about it. Blocking
//! statements wait for readiness through tokio and then make the same calls.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::script::{IoCall, ShutdownHow, SockOpts, TCP_STATES};

/// Backlog for `listen` without `backlog=`: Linux's historical SOMAXCONN.
pub(crate) const DEFAULT_BACKLOG: i32 = 128;

/// A socket of the scenario, registered with the runtime.
pub(crate) struct Sock {
    pub(crate) io: AsyncFd<Socket>,
    pub(crate) listener: bool,
}

impl Sock {
    fn new(socket: Socket, listener: bool) -> io::Result<Sock> {
        socket.set_nonblocking(true)?;
        // SAFETY: `socket` owns its descriptor and the AsyncFd owns `socket`, so the descriptor
        // stays open and the same until the AsyncFd is dropped; socket2 never swaps it.
        let io = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(Sock { io, listener })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.io.get_ref().as_raw_fd()
    }

    pub(crate) fn socket(&self) -> &Socket {
        self.io.get_ref()
    }
}

/// Applies `OPTS` to a socket.
pub(crate) fn apply_opts(s: &Socket, o: &SockOpts) -> io::Result<()> {
    if let Some(n) = o.rcvbuf {
        s.set_recv_buffer_size(usize::try_from(n).unwrap_or(usize::MAX))?;
    }
    if let Some(n) = o.sndbuf {
        s.set_send_buffer_size(usize::try_from(n).unwrap_or(usize::MAX))?;
    }
    if o.nodelay {
        s.set_tcp_nodelay(true)?;
    }
    if o.reuseaddr {
        s.set_reuse_address(true)?;
    }
    if o.reuseport {
        s.set_reuse_port(true)?;
    }
    if o.keepalive {
        s.set_keepalive(true)?;
    }
    Ok(())
}

fn tcp_socket(addr: &SocketAddr) -> io::Result<Socket> {
    Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )
}

/// socket(), options, bind(), listen().
pub(crate) fn listen(addr: SocketAddr, backlog: Option<u32>, opts: &SockOpts) -> io::Result<Sock> {
    let s = tcp_socket(&addr)?;
    apply_opts(&s, opts)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(backlog.map_or(DEFAULT_BACKLOG, |b| i32::try_from(b).unwrap_or(i32::MAX)))?;
    Sock::new(s, true)
}

/// socket(), options, and a non-blocking connect() that has been started but not finished.
/// A connect() that fails at once still leaves a socket, as it does for a program; its error is
/// returned beside it.
pub(crate) fn start_connect(
    addr: SocketAddr,
    opts: &SockOpts,
) -> io::Result<(Sock, Option<io::Error>)> {
    let s = tcp_socket(&addr)?;
    apply_opts(&s, opts)?;
    s.set_nonblocking(true)?;
    let early = match s.connect(&SockAddr::from(addr)) {
        Ok(()) => None,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => None,
        Err(e) => Some(e),
    };
    Ok((Sock::new(s, false)?, early))
}

/// Waits until a started connect() finishes; its error, if any, comes from SO_ERROR.
pub(crate) async fn finish_connect(sock: &Sock) -> io::Result<()> {
    loop {
        let mut guard = sock.io.writable().await?;
        if let Some(e) = sock.socket().take_error()? {
            return Err(e);
        }
        match sock.socket().peer_addr() {
            Ok(_) => return Ok(()),
            // Not connected yet: the readiness was stale.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => guard.clear_ready(),
            Err(e) => return Err(e),
        }
    }
}

/// accept() one connection.
pub(crate) async fn accept(listener: &Sock) -> io::Result<Sock> {
    loop {
        let mut guard = listener.io.readable().await?;
        match guard.try_io(|s| s.get_ref().accept()) {
            Ok(Ok((s, _))) => return Sock::new(s, false),
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

fn check(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// One write call, non-blocking.
pub(crate) fn write_once(sock: &Sock, call: IoCall, buf: &[u8]) -> io::Result<usize> {
    let fd = sock.fd();
    // SAFETY: `fd` is open for the lifetime of `sock`, and `buf` is valid for `buf.len()` bytes.
    let n = unsafe {
        match call {
            IoCall::Socket => libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL),
            IoCall::File => libc::write(fd, buf.as_ptr().cast(), buf.len()),
        }
    };
    check(n)
}

/// One read call, non-blocking; `peek` leaves the bytes in the queue.
pub(crate) fn read_once(
    sock: &Sock,
    call: IoCall,
    buf: &mut [u8],
    peek: bool,
) -> io::Result<usize> {
    let fd = sock.fd();
    // SAFETY: `fd` is open for the lifetime of `sock`, and `buf` is valid for `buf.len()` bytes.
    let n = unsafe {
        match (call, peek) {
            (_, true) => libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK),
            (IoCall::Socket, false) => libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0),
            (IoCall::File, false) => libc::read(fd, buf.as_mut_ptr().cast(), buf.len()),
        }
    };
    check(n)
}

/// Writes until the whole buffer is taken, blocking as the kernel blocks; `progress` hears of
/// every accepted piece, so a write cut short by an error still records what went out.
pub(crate) async fn write_all(
    sock: &Sock,
    call: IoCall,
    mut buf: &[u8],
    mut progress: impl FnMut(&[u8]),
) -> io::Result<()> {
    while !buf.is_empty() {
        let mut guard = sock.io.writable().await?;
        match guard.try_io(|_| write_once(sock, call, buf)) {
            Ok(Ok(n)) => {
                progress(&buf[..n]);
                buf = &buf[n..];
            }
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// One read call that waits until the socket is readable.
pub(crate) async fn read_blocking(
    sock: &Sock,
    call: IoCall,
    buf: &mut [u8],
    peek: bool,
) -> io::Result<usize> {
    loop {
        let mut guard = sock.io.readable().await?;
        match guard.try_io(|_| read_once(sock, call, buf, peek)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// shutdown().
pub(crate) fn shutdown(sock: &Sock, how: ShutdownHow) -> io::Result<()> {
    sock.socket().shutdown(match how {
        ShutdownHow::Read => std::net::Shutdown::Read,
        ShutdownHow::Write => std::net::Shutdown::Write,
        ShutdownHow::Both => std::net::Shutdown::Both,
    })
}

fn tcp_info(sock: &Sock) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; the kernel fills at most `len` bytes of it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            sock.fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(info)
    }
}

/// The TCP state's language name, from TCP_INFO.
pub(crate) fn state(sock: &Sock) -> io::Result<&'static str> {
    let s = usize::from(tcp_info(sock)?.tcpi_state);
    Ok(TCP_STATES
        .get(s.wrapping_sub(1))
        .copied()
        .unwrap_or("UNKNOWN"))
}

/// Completed connections in a listener's accept queue: for a listener, Linux reports the queue
/// length in `tcpi_unacked`.
pub(crate) fn queued(sock: &Sock) -> io::Result<u64> {
    Ok(u64::from(tcp_info(sock)?.tcpi_unacked))
}

fn ioctl_int(sock: &Sock, request: libc::Ioctl) -> io::Result<u64> {
    let mut value: libc::c_int = 0;
    // SAFETY: SIOCINQ and SIOCOUTQ write one int through the pointer.
    let r = unsafe { libc::ioctl(sock.fd(), request, &mut value) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(value).unwrap_or(0))
}

/// Bytes in the receive queue (SIOCINQ).
pub(crate) fn unread(sock: &Sock) -> io::Result<u64> {
    ioctl_int(sock, libc::FIONREAD)
}

/// Bytes in the send queue not yet acknowledged (SIOCOUTQ).
pub(crate) fn unsent(sock: &Sock) -> io::Result<u64> {
    ioctl_int(sock, libc::TIOCOUTQ)
}
