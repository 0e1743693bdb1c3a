//! The fault-injecting proxy: forwards each accepted connection to a server, applying faults per
//! direction and per connection. A half-close passes through as a half-close and a reset as a
//! reset.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::script::{Direction, Fault, FaultKind};

/// A proxy's faults, shared with the script so that `fault P ...` changes them mid-scenario.
pub type Faults = Rc<RefCell<Vec<Fault>>>;

/// Hears one line per connection when it ends (for the standalone proxy's log).
pub type Log = Rc<dyn Fn(String)>;

/// Accepts on `listener` and forwards each connection to `upstream` until dropped.
pub async fn serve(listener: TcpListener, upstream: SocketAddr, faults: Faults, log: Option<Log>) {
    let mut connections = JoinSet::new();
    let mut n = 0u32;
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            continue;
        };
        n += 1;
        let (faults, log) = (faults.clone(), log.clone());
        connections.spawn_local(async move {
            let summary = connection(n, client, upstream, &faults).await;
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
) -> String {
    let mut server = match TcpStream::connect(upstream).await {
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
    loop {
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
