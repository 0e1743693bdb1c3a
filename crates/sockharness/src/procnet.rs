//! The TCP sockets of the calling thread's network namespace, from `/proc/thread-self/net/tcp`
//! and `tcp6`: who listens and who holds what. Reading them sends nothing, so the servers under
//! test see nothing; but the kernel walks its whole connection table for each read (about 9 ms
//! on a 24 GiB machine), so nothing reads them on every statement.

use std::io;

/// `LISTEN` in the tables' hexadecimal state column.
const LISTEN: u8 = 0x0A;

/// One row of the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpSocket {
    /// The local port.
    pub(crate) port: u16,
    /// The kernel's TCP state number.
    pub(crate) state: u8,
    /// The socket's inode: 0 once no process holds it (closed, still in the kernel).
    pub(crate) inode: u64,
    /// Whether its local address is a loopback one (127.0.0.0/8 or ::1).
    pub(crate) loopback: bool,
}

impl TcpSocket {
    /// Whether it listens.
    pub(crate) fn listens(&self) -> bool {
        self.state == LISTEN
    }
}

/// Every TCP socket of the calling thread's namespace, IPv4 and IPv6.
pub(crate) fn tcp_sockets() -> io::Result<Vec<TcpSocket>> {
    let mut out = Vec::new();
    for file in ["tcp", "tcp6"] {
        match std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
            Ok(table) => out.extend(parse(&table)),
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if file == "tcp6" && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The rows of one table (its first line is a header); rows that do not parse are left out.
fn parse(table: &str) -> impl Iterator<Item = TcpSocket> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (addr, port) = cols.get(1)?.rsplit_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let state = u8::from_str_radix(cols.get(3)?, 16).ok()?;
        let inode = cols.get(9)?.parse().ok()?;
        Some(TcpSocket {
            port,
            state,
            inode,
            loopback: is_loopback(addr)?,
        })
    })
}

/// Whether an address as the tables write it is a loopback one. Each 32-bit word is printed as
/// the kernel holds it in memory, so its bytes in network order are the word's native bytes.
fn is_loopback(hex: &str) -> Option<bool> {
    let words: Vec<[u8; 4]> = (0..hex.len() / 8)
        .map(|i| {
            Some(
                u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16)
                    .ok()?
                    .to_ne_bytes(),
            )
        })
        .collect::<Option<_>>()?;
    Some(match words.as_slice() {
        [v4] => v4[0] == 127,
        [a, b, c, d] => {
            let bytes: Vec<u8> = [a, b, c, d]
                .iter()
                .flat_map(|w| w.iter().copied())
                .collect();
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D431 0100007F:1F90 04 00000001:00000000 01:00000014 00000000     0        0 0 3 0000000000000000 20 4 0 10 -1
";

    #[test]
    fn rows_give_port_state_and_inode() {
        let rows: Vec<_> = parse(TABLE).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].port, 8080);
        assert!(rows[0].listens());
        assert_eq!(rows[1].inode, 4243);
        assert!(!rows[1].listens());
        // FIN_WAIT1, no longer held by a process.
        assert_eq!(rows[2].port, 0xD431);
        assert_eq!(rows[2].state, 4);
        assert_eq!(rows[2].inode, 0);
        assert!(rows.iter().all(|r| r.loopback));
    }

    #[test]
    fn loopback_addresses_are_told_apart() {
        // In memory order on this machine: 127.0.0.1, 10.0.0.2, 0.0.0.0, ::1, ::.
        let v4 = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        assert_eq!(is_loopback(&v4([127, 0, 0, 1])), Some(true));
        assert_eq!(is_loopback(&v4([10, 0, 0, 2])), Some(false));
        assert_eq!(is_loopback(&v4([0, 0, 0, 0])), Some(false));
        let one = format!("{}{}", "0".repeat(24), v4([0, 0, 0, 1]));
        assert_eq!(is_loopback(&one), Some(true));
        assert_eq!(is_loopback(&"0".repeat(32)), Some(false));
        assert_eq!(is_loopback("zz"), None);
    }

    #[test]
    fn a_header_alone_or_garbage_gives_no_rows() {
        assert_eq!(parse("header only\n").count(), 0);
        assert_eq!(parse("header\n  0: nonsense\n").count(), 0);
    }
}
