//! Removing what a scenario's connections leave in the kernel (TIME_WAIT entries, orphans
//! finishing their close) from the calling thread's namespace, so that the namespace can serve
//! the next scenario as if new: `SOCK_DESTROY` over `NETLINK_SOCK_DIAG`, one exact lookup per
//! connection end (a dump would walk the whole connection table, milliseconds).

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SOCK_DESTROY` from `linux/sock_diag.h`.
const SOCK_DESTROY: u16 = 21;
/// `INET_DIAG_NOCOOKIE`: match by address alone.
const NO_COOKIE: u32 = !0;

#[repr(C)]
#[derive(Clone, Copy)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct inet_diag_sockid`: ports and addresses in network order.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u8; 16],
    dst: [u8; 16],
    interface: u32,
    cookie: [u32; 2],
}

/// `struct inet_diag_req_v2`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Request {
    header: NlMsgHdr,
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

/// Destroys the TCP sockets at either end of each connection `(a, b)` that are still in the
/// kernel: the end bound to `a` talking to `b`, and the end bound to `b` talking to `a`. An end
/// that is gone already is not an error. Needs CAP_NET_ADMIN over the namespace, which its
/// creator has.
pub fn forget_connections(connections: &[(SocketAddr, SocketAddr)]) -> io::Result<()> {
    if connections.is_empty() {
        return Ok(());
    }
    // SAFETY: socket has no memory preconditions; the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // The kernel answers at once; the limit only keeps a wrong kernel from hanging the caller.
    let limit = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: the option value is a timeval that outlives the call.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&limit as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        );
    }
    let ends = connections
        .iter()
        .flat_map(|&(a, b)| [(a, b), (b, a)])
        .filter(|(a, b)| a.is_ipv4() == b.is_ipv4());
    let mut sent = 0u32;
    for (seq, (local, remote)) in (1u32..).zip(ends) {
        let request = request(seq, local, remote);
        // SAFETY: `request` is plain old data of the size passed; the kernel only reads it.
        let n = unsafe {
            libc::send(
                sock.as_raw_fd(),
                (&request as *const Request).cast(),
                size_of::<Request>(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        sent += 1;
    }
    // One acknowledgement per request: 0, or -ENOENT for an end already gone.
    let mut buf = [0u8; 4096];
    let mut acked = 0;
    while acked < sent {
        // SAFETY: recv writes at most buf.len() bytes into `buf`.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut at = 0usize;
        let n = n as usize;
        while at + size_of::<NlMsgHdr>() + 4 <= n {
            let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < size_of::<NlMsgHdr>() || at + len > n {
                break;
            }
            if kind == libc::NLMSG_ERROR as u16 {
                let e = size_of::<NlMsgHdr>() + at;
                let errno = -i32::from_ne_bytes([buf[e], buf[e + 1], buf[e + 2], buf[e + 3]]);
                acked += 1;
                if errno != 0 && errno != libc::ENOENT {
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
            at += (len + 3) & !3;
        }
    }
    Ok(())
}

fn request(seq: u32, local: SocketAddr, remote: SocketAddr) -> Request {
    let bytes = |ip: IpAddr| {
        let mut b = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => b.copy_from_slice(&v6.octets()),
        }
        b
    };
    Request {
        header: NlMsgHdr {
            len: size_of::<Request>() as u32,
            kind: SOCK_DESTROY,
            flags: (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
            seq,
            pid: 0,
        },
        family: if local.is_ipv4() {
            libc::AF_INET as u8
        } else {
            libc::AF_INET6 as u8
        },
        protocol: libc::IPPROTO_TCP as u8,
        ext: 0,
        pad: 0,
        states: !0,
        id: SockId {
            sport: local.port().to_be_bytes(),
            dport: remote.port().to_be_bytes(),
            src: bytes(local.ip()),
            dst: bytes(remote.ip()),
            interface: 0,
            cookie: [NO_COOKIE, NO_COOKIE],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_has_the_kernels_layout() {
        assert_eq!(size_of::<SockId>(), 48);
        assert_eq!(size_of::<Request>(), 16 + 56);
        let r = request(
            1,
            "127.0.0.1:80".parse().unwrap(),
            "127.0.0.2:8080".parse().unwrap(),
        );
        assert_eq!(
            (r.id.sport, r.id.dport, &r.id.src[..5]),
            ([0, 80], [0x1f, 0x90], &[127, 0, 0, 1, 0][..])
        );
    }
}
