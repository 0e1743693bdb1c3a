//! The fault-injecting proxy: forwards each accepted connection to a server, applying faults per
//! direction and per connection. A half-close passes through as a half-close and a reset as a
//! reset. A direction without faults is forwarded with splice(2), never copied into user space.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::script::{Direction, Fault, FaultKind};

/// A proxy's faults, shared with the script so that `fault P ...` changes them mid-scenario.
pub type Faults = Rc<RefCell<Vec<Fault>>>;

/// Hears one line per connection when it ends (for the standalone proxy's log).
pub type Log = Rc<dyn Fn(String)>;

/// Makes the socket the proxy's connection N (from 1) to the server `SocketAddr` is made from:
/// for a proxy on a scenario's host, in the host's namespace, and bound, so that the scenario
/// can name it.
pub type Connector = Rc<dyn Fn(u32, SocketAddr) -> io::Result<TcpSocket>>;

/// A socket in the calling thread's namespace, of `addr`'s family.
pub fn socket_for(addr: SocketAddr) -> io::Result<TcpSocket> {
    if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

/// Accepts on `listener` and forwards each connection to `upstream` until dropped.
pub async fn serve(listener: TcpListener, upstream: SocketAddr, faults: Faults, log: Option<Log>) {
    serve_with(
        listener,
        upstream,
        faults,
        log,
        Rc::new(|_, a| socket_for(a)),
    )
    .await;
}

/// As [`serve`], connecting to `upstream` from the sockets `connector` makes.
pub async fn serve_with(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: Faults,
    log: Option<Log>,
    connector: Connector,
) {
    let mut connections = JoinSet::new();
    let mut n = 0u32;
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            continue;
        };
        n += 1;
        let (faults, log, connector) = (faults.clone(), log.clone(), connector.clone());
        connections.spawn_local(async move {
            let summary = connection(n, client, upstream, &faults, &connector).await;
            if let Some(log) = log {
                log(format!("conn {n} from {peer}: {summary}"));
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// End of stream, passed on as a half-close (or held back by a stall).
    Eof,
    /// A reset, received or injected: both sides get one.
    Reset,
}

async fn connection(
    n: u32,
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: &Faults,
    connector: &Connector,
) -> String {
    let connected = match connector(n, upstream) {
        Ok(socket) => socket.connect(upstream).await,
        Err(e) => Err(e),
    };
    let mut server = match connected {
        Ok(s) => s,
        Err(e) => {
            // The client learns of it the way it would without a proxy: a reset.
            reset_on_close(&client);
            return format!("upstream {upstream} refused: {e}");
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut up_bytes, mut down_bytes) = (0u64, 0u64);
    let end = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let up = pump(n, Direction::Up, &mut cr, &mut sw, faults, &mut up_bytes);
        let down = pump(
            n,
            Direction::Down,
            &mut sr,
            &mut cw,
            faults,
            &mut down_bytes,
        );
        tokio::pin!(up, down);
        let (mut up_open, mut down_open) = (true, true);
        loop {
            let end = tokio::select! {
                e = &mut up, if up_open => { up_open = false; e }
                e = &mut down, if down_open => { down_open = false; e }
            };
            if end == End::Reset || (!up_open && !down_open) {
                break end;
            }
        }
    };
    if end == End::Reset {
        reset_on_close(&client);
        reset_on_close(&server);
    }
    format!(
        "{up_bytes} bytes up, {down_bytes} bytes down, ended by {}",
        if end == End::Reset { "RST" } else { "FIN" }
    )
}

/// A pipe for splice(2): socket to pipe to socket, in the kernel.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// What one splice moves at most: the default pipe capacity.
const PIPE_CAPACITY: usize = 64 * 1024;

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        Ok(unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice takes descriptors and null offsets only; no memory is passed.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Moves what `src` has (up to a pipe's capacity) to `dst` through `pipe`; 0 at end of stream.
async fn splice_once(src: &TcpStream, dst: &TcpStream, pipe: &Pipe) -> io::Result<usize> {
    let n = loop {
        src.readable().await?;
        match src.try_io(Interest::READABLE, || {
            splice(src.as_raw_fd(), pipe.write.as_raw_fd(), PIPE_CAPACITY)
        }) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    let mut left = n;
    while left > 0 {
        dst.writable().await?;
        match dst.try_io(Interest::WRITABLE, || {
            splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), left)
        }) {
            Ok(k) => left -= k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Makes closing `stream` send RST: SO_LINGER {on, 0}, which never blocks.
fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// The faults that apply to this direction of connection `n`, as they are now.
fn active(faults: &Faults, n: u32, dir: Direction) -> Vec<FaultKind> {
    faults
        .borrow()
        .iter()
        .filter(|f| {
            f.conn.is_none_or(|c| c == n) && (f.direction == dir || f.direction == Direction::Both)
        })
        .map(|f| f.kind.clone())
        .collect()
}

async fn pump(
    n: u32,
    dir: Direction,
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    faults: &Faults,
    forwarded: &mut u64,
) -> End {
    let mut buf = vec![0u8; 64 * 1024];
    let mut closed = false;
    let pipe = Pipe::new().ok();
    loop {
        // Without a fault on this direction the bytes never enter user space.
        if let (Some(pipe), false) = (&pipe, closed) {
            if active(faults, n, dir).is_empty() {
                match splice_once(src.as_ref(), dst.as_ref(), pipe).await {
                    Ok(0) => {
                        let _ = dst.shutdown().await;
                        return End::Eof;
                    }
                    Ok(k) => {
                        *forwarded += k as u64;
                        continue;
                    }
                    Err(_) => return End::Reset,
                }
            }
        }
        let read = match src.read(&mut buf).await {
            Ok(0) => {
                // A stalled direction keeps its silence; otherwise the FIN goes through.
                let stalled = active(faults, n, dir)
                    .iter()
                    .any(|k| matches!(k, FaultKind::StallAfter(l) if *forwarded >= *l));
                if !closed && !stalled {
                    let _ = dst.shutdown().await;
                }
                return End::Eof;
            }
            Ok(k) => k,
            Err(_) => return End::Reset,
        };
        if closed {
            continue;
        }
        let kinds = active(faults, n, dir);
        // Byte limits first: how much of this read may go on at all.
        let mut allowed = read as u64;
        for k in &kinds {
            match k {
                FaultKind::Drop => allowed = 0,
                FaultKind::StallAfter(l) | FaultKind::RstAfter(l) | FaultKind::FinAfter(l) => {
                    allowed = allowed.min(l.saturating_sub(*forwarded));
                }
                _ => {}
            }
        }
        let mut data = &buf[..allowed as usize];
        for k in &kinds {
            if let FaultKind::Delay(d) = k {
                tokio::time::sleep(*d).await;
            }
        }
        let (piece, gap) = kinds
            .iter()
            .find_map(|k| match k {
                FaultKind::Slice { size, gap } => Some((*size as usize, *gap)),
                _ => None,
            })
            .unwrap_or((data.len().max(1), None));
        let rate = kinds.iter().find_map(|k| match k {
            FaultKind::Rate(r) => Some(*r),
            _ => None,
        });
        let mut first = true;
        while !data.is_empty() {
            let take = data.len().min(piece);
            if !first {
                if let Some(g) = gap {
                    tokio::time::sleep(g).await;
                }
            }
            first = false;
            if dst.write_all(&data[..take]).await.is_err() {
                return End::Reset;
            }
            *forwarded += take as u64;
            data = &data[take..];
            if let Some(r) = rate {
                tokio::time::sleep(Duration::from_secs_f64(take as f64 / r as f64)).await;
            }
        }
        for k in &kinds {
            match k {
                FaultKind::RstAfter(l) if *forwarded >= *l => return End::Reset,
                FaultKind::FinAfter(l) if *forwarded >= *l => {
                    let _ = dst.shutdown().await;
                    closed = true;
                }
                _ => {}
            }
        }
    }
}
