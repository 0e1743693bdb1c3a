//! The few rtnetlink requests a network of hosts needs: make a veth pair with one end in
//! another namespace, set a link's flags and MTU, give it an address. Synchronous on purpose:
//! a netlink socket talks to the namespace it was opened in, and the caller moves its thread
//! between namespaces to open one for each.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// A route netlink socket of the namespace it was opened in.
pub(super) struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens one in the calling thread's network namespace.
    pub(super) fn open() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// Sends one request and collects its answers up to the kernel's acknowledgement.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let mut answers = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full()?;
            let mut at = 0;
            while at + 16 <= data.len() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[at..])
                    .map_err(|e| io::Error::other(format!("netlink: {e}")))?;
                let len = m.header.length as usize;
                if len == 0 {
                    break;
                }
                at += (len + 3) & !3;
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(r) => answers.push(r),
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(_) => Err(e.to_io()),
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The index and MAC address of the link called `name`.
    pub(super) fn link(&mut self, name: &str) -> io::Result<(u32, [u8; 6])> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        for answer in self.request(RouteNetlinkMessage::GetLink(m), 0)? {
            if let RouteNetlinkMessage::NewLink(l) = answer {
                let mut mac = [0u8; 6];
                for a in &l.attributes {
                    if let LinkAttribute::Address(a) = a {
                        if a.len() == 6 {
                            mac.copy_from_slice(a);
                        }
                    }
                }
                return Ok((l.header.index, mac));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no link {name}"),
        ))
    }

    /// How many frames link `index` has received: for a veth end, what its peer sent, counted
    /// as the peer hands them over (before the receiving side's packet handlers see them).
    pub(super) fn received(&mut self, index: u32) -> io::Result<u64> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        for answer in self.request(RouteNetlinkMessage::GetLink(m), 0)? {
            if let RouteNetlinkMessage::NewLink(l) = answer {
                for a in &l.attributes {
                    if let LinkAttribute::Stats64(s) = a {
                        return Ok(s.rx_packets);
                    }
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no statistics for link {index}"),
        ))
    }

    /// Whether link `name` is operationally up: carrier on both ends, and the kernel done
    /// attaching its queue (until then what is sent through it is dropped).
    pub(super) fn running(&mut self, name: &str) -> io::Result<bool> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        for answer in self.request(RouteNetlinkMessage::GetLink(m), 0)? {
            if let RouteNetlinkMessage::NewLink(l) = answer {
                return Ok(l
                    .attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::OperState(State::Up))));
            }
        }
        Ok(false)
    }

    /// A veth pair: `name` here, `peer` made directly in the namespace `peer_ns` is open on.
    pub(super) fn veth(&mut self, name: &str, peer: &str, peer_ns: RawFd) -> io::Result<()> {
        let mut other = LinkMessage::default();
        other.attributes.push(LinkAttribute::IfName(peer.into()));
        other.attributes.push(LinkAttribute::NetNsFd(peer_ns));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(other))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Sets the flags in `set` (of those in `mask`) on link `index`, and its MTU if given.
    pub(super) fn set(
        &mut self,
        index: u32,
        set: LinkFlags,
        mask: LinkFlags,
        mtu: Option<u32>,
    ) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = set;
        m.header.change_mask = mask;
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.request(RouteNetlinkMessage::SetLink(m), 0).map(drop)
    }

    /// Gives link `index` the address `ip/prefix`.
    pub(super) fn address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(ip.into()));
        m.attributes.push(AddressAttribute::Address(ip.into()));
        let broadcast = u32::from(ip) | (u32::MAX >> prefix);
        m.attributes
            .push(AddressAttribute::Broadcast(Ipv4Addr::from(broadcast)));
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }
}

/// Turns off the offloads that would let a frame be larger than the MTU or leave with its
/// checksum unfinished (a frame read from a packet socket then carries only the pseudo-header
/// sum, and the receiver drops it): segmentation, scatter-gather and checksumming, both ways,
/// on `ifname` in the calling thread's namespace.
pub(super) fn offloads_off(ifname: &str) -> io::Result<()> {
    // Legacy ethtool commands, each with a struct ethtool_value (linux/ethtool.h).
    const SET: [u32; 6] = [
        0x1f, // ETHTOOL_STSO
        0x24, // ETHTOOL_SGSO
        0x2c, // ETHTOOL_SGRO
        0x19, // ETHTOOL_SSG
        0x17, // ETHTOOL_STXCSUM
        0x15, // ETHTOOL_SRXCSUM
    ];
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    for cmd in SET {
        let mut value = EthtoolValue { cmd, data: 0 };
        // SAFETY: ifreq is plain old data; the name fits with its NUL (checked), and the
        // ioctl reads the ethtool_value that `ifru_data` points to, which outlives the call.
        let r = unsafe {
            let mut req: libc::ifreq = std::mem::zeroed();
            if ifname.len() >= req.ifr_name.len() {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
                *dst = src as libc::c_char;
            }
            req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
            use std::os::fd::AsRawFd;
            libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req)
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `IFF_UP`, and `IFF_NOARP`: the forwarder addresses every frame itself, so no host asks
/// for another's hardware address and the wire carries only the scenario's packets.
pub(super) fn up_noarp() -> (LinkFlags, LinkFlags) {
    let flags = LinkFlags::Up | LinkFlags::Noarp;
    (flags, flags)
}

/// `IFF_UP` alone.
pub(super) fn up() -> (LinkFlags, LinkFlags) {
    (LinkFlags::Up, LinkFlags::Up)
}
