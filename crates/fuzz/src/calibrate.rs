//! Plain delivery: what the server answers to a request sent in one piece and read to the end.
//! Transport invariance compares every transport mutation of a request against this answer.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a server's answer to a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The connection stayed open (the server went quiet).
    Open,
    /// The server closed its end (FIN).
    Closed,
    /// The server reset the connection.
    Reset,
}

/// One plain exchange: the answer and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Every byte the server sent back.
    pub response: Vec<u8>,
    /// How it ended.
    pub end: End,
}

/// What the server's answer to a request is known to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// The same bytes every time.
    Exact(Exchange),
    /// The same length every time, but not the same bytes (a date, a counter): only the length
    /// can be compared.
    Length(Exchange),
    /// Not even the length repeats: the answer cannot be compared.
    Unstable,
    /// Plain delivery broke the connection or the server: the request is a finding in itself.
    Broke,
}

impl Baseline {
    /// The exchange a mutation is compared against, if there is one.
    pub fn exchange(&self) -> Option<&Exchange> {
        match self {
            Baseline::Exact(e) | Baseline::Length(e) => Some(e),
            Baseline::Unstable | Baseline::Broke => None,
        }
    }
}

/// Answer bytes kept at most; a longer answer is compared by its first bytes only.
pub const MAX_RESPONSE: usize = 1 << 20;

/// Sends `request` in one write on a fresh connection and reads until the server closes, resets,
/// or sends nothing for `quiet`; never longer than `limit`.
pub fn exchange(
    addr: SocketAddr,
    request: &[u8],
    quiet: Duration,
    limit: Duration,
) -> io::Result<Exchange> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, limit)?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(limit))?;
    // A server may answer, and close, before it has read the whole request: what it answered
    // is still there to read.
    if let Err(e) = s.write_all(request) {
        if !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return Err(e);
        }
    }
    let mut response = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            break End::Open;
        }
        s.set_read_timeout(Some(quiet.min(left).max(Duration::from_millis(1))))?;
        match s.read(&mut buf) {
            Ok(0) => break End::Closed,
            Ok(n) => {
                let room = MAX_RESPONSE - response.len();
                response.extend_from_slice(&buf[..n.min(room)]);
                if response.len() >= MAX_RESPONSE {
                    break End::Open;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break End::Open
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break End::Reset,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    Ok(Exchange { response, end })
}

/// What two exchanges of the same request say about its answer.
pub fn compare(a: Exchange, b: &Exchange) -> Baseline {
    // An answer cut at MAX_RESPONSE has more to it than was kept: nothing to hold it to.
    if a.end != b.end || a.response.len() != b.response.len() || a.response.len() >= MAX_RESPONSE {
        return Baseline::Unstable;
    }
    if a == *b {
        return Baseline::Exact(a);
    }
    Baseline::Length(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(r: &[u8], end: End) -> Exchange {
        Exchange {
            response: r.to_vec(),
            end,
        }
    }

    #[test]
    fn equal_answers_are_exact_and_others_weaker() {
        let a = ex(b"Date: 10:00:01", End::Open);
        assert_eq!(compare(a.clone(), &a), Baseline::Exact(a.clone()));
        let b = ex(b"Date: 10:00:02", End::Open);
        assert_eq!(compare(a.clone(), &b), Baseline::Length(a.clone()));
        assert_eq!(compare(a.clone(), &ex(b"x", End::Open)), Baseline::Unstable);
        assert_eq!(
            compare(a, &ex(b"Date: 10:00:01", End::Closed)),
            Baseline::Unstable
        );
    }
}
