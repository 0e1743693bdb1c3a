//! The scriptable wire: hosts, each a network namespace of its own, joined by links that
//! sockharness forwards in user space, deciding each packet's fate from the scenario's seed.
//!
//! Each host has one interface, `eth0` at `10.0.0.N/24` (N counts the hosts from 1), the far end
//! of a veth pair whose near end `shN` is in the scenario's own namespace. The forwarder reads
//! what a host sends on its `shN` through a packet socket and writes what the link lets through
//! to the receiver's. Why veth and packet sockets rather than TUN devices: `/dev/net/tun` is
//! often open to root only, while veth pairs and packet sockets need nothing but the namespaces'
//! own capabilities, which an ordinary user has in a user namespace of its own. And why not
//! `tc netem`: it is missing where `sch_netem` is not built, it needs root, and its decisions
//! are not tied to a seed per packet.
//!
//! Interfaces carry no ARP (`IFF_NOARP`; the forwarder writes each frame's destination address
//! itself) and no IPv6, and offloads are off, so that the wire carries only the scenario's own
//! packets, each at most one MTU with its checksum complete: a bit flipped by `corrupt` is then
//! caught by the receiving kernel, as on a real wire.

pub(crate) mod forward;
pub mod link;
mod netlink;
pub mod tape;

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use crate::script::Impairment;
pub(crate) use forward::End;
use forward::{Action, Forwarder, Links, Port, Rule};
use link::{Counts, Direction};
use netlink::Rtnl;

/// What one direction of a link did in a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkCounts {
    /// The sending host.
    pub from: String,
    /// The receiving host.
    pub to: String,
    /// What the link did to the packets from `from` to `to`.
    pub counts: Counts,
}

/// The most hosts a scenario may have: one /24 of addresses.
pub(crate) const MAX_HOSTS: usize = 250;
/// How long the kernel may take to bring the links into service.
const LINKS_UP: std::time::Duration = std::time::Duration::from_secs(2);
/// Every host's interface MTU until a link sets another: Ethernet's.
pub(crate) const DEFAULT_MTU: u32 = 1500;

/// One host: its namespace, address and interface.
struct Host {
    name: String,
    ns: File,
    addr: Ipv4Addr,
    /// A netlink socket of the host's namespace, to change its interface later.
    rtnl: Rtnl,
    /// `eth0`'s index there.
    index: u32,
    /// The index of the link's near end, in the scenario's namespace.
    near: u32,
    /// Frames the near end had received before the scenario began.
    base: u64,
}

/// The hosts of a scenario and the forwarder between them; dropping it stops the forwarder and
/// lets the namespaces go with their last socket.
pub(crate) struct Network {
    hosts: Vec<Host>,
    /// A netlink socket of the scenario's namespace, where the links' near ends are.
    rtnl: Rtnl,
    /// The scenario's own namespace, where the thread comes back to.
    home: File,
    forwarder: Forwarder,
    seed: u64,
    /// Where the forwarder records every frame, when the scenario is captured.
    tape: Option<Arc<tape::Tape>>,
}

/// The address of host `i` (counted from 0).
pub(crate) fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, (i + 1) as u8)
}

fn context(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Network {
    /// Makes the hosts named, in the calling thread's namespace (a private one): no host is
    /// joined to another until [`Network::link`]. With `record`, the forwarder records every
    /// frame for a capture ([`Network::tape`]).
    pub(crate) fn build(
        names: &[String],
        seed: u64,
        sysctls: &[(String, String)],
        record: bool,
    ) -> io::Result<Network> {
        if names.len() > MAX_HOSTS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} hosts: at most {MAX_HOSTS}", names.len()),
            ));
        }
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(context("opening the scenario's namespace".into()))?;
        // Interfaces and sysctls are made only in a namespace of sockharness's own.
        let here = std::os::unix::fs::MetadataExt::ino(&home.metadata()?);
        if crate::sandbox::host_netns().is_none_or(|host| host == here) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "refusing to make hosts in the host's network namespace",
            ));
        }
        no_ipv6();
        let mut rtnl = Rtnl::open().map_err(context("opening a netlink socket".into()))?;
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let made = |what: &str| context(format!("making host {name}: {what}"));
            let ns = new_namespace(sysctls).map_err(made("a network namespace"))?;
            let near = format!("sh{}", i + 1);
            rtnl.veth(&near, "eth0", ns.as_raw_fd())
                .map_err(made("a veth pair"))?;
            let (near_index, _) = rtnl.link(&near).map_err(made("its near end"))?;
            let (set, mask) = netlink::up();
            // As large as any host's MTU may be: the receiving end is what limits a frame.
            rtnl.set(near_index, set, mask, Some(65535))
                .map_err(made("bringing its near end up"))?;
            let socket = packet_socket(near_index).map_err(made("a packet socket"))?;
            let addr = address(i);
            let (host_rtnl, index, mac) =
                within_ns(&ns, &home, || configure(addr)).map_err(made("its interface"))?;
            ports.push(Port { socket, addr, mac });
            hosts.push(Host {
                name: name.clone(),
                ns,
                addr,
                rtnl: host_rtnl,
                index,
                near: near_index,
                base: 0,
            });
        }
        // The kernel brings a new link into service a moment after it is up (a work queue
        // attaches its queue): a packet sent before then is dropped, so the first SYN of a
        // scenario would be lost now and then. Wait for every end to run.
        let deadline = std::time::Instant::now() + LINKS_UP;
        for (i, host) in hosts.iter_mut().enumerate() {
            let near = format!("sh{}", i + 1);
            loop {
                let up = rtnl.running(&near)? && host.rtnl.running("eth0")?;
                if up {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "host {}'s link did not come up within {LINKS_UP:?}",
                            host.name
                        ),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        for host in &mut hosts {
            host.base = rtnl.received(host.near)?;
        }
        let tape = record.then(tape::Tape::new).transpose()?;
        let links = Arc::new(Mutex::new(Links::default()));
        let forwarder = Forwarder::start(ports, links, tape.clone())
            .map_err(context("starting the forwarder".into()))?;
        Ok(Network {
            hosts,
            rtnl,
            home,
            forwarder,
            seed,
            tape,
        })
    }

    /// What the forwarder records, when it was asked to.
    pub(crate) fn tape(&self) -> Option<Arc<tape::Tape>> {
        self.tape.clone()
    }

    /// The hosts' names, in order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// The number of the host called `name`.
    pub(crate) fn host(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    /// Host `i`'s address.
    pub(crate) fn addr(&self, i: usize) -> Ipv4Addr {
        self.hosts[i].addr
    }

    /// Runs `f` with the calling thread in host `i`'s namespace, so that the sockets it opens
    /// are the host's.
    pub(crate) fn within<T>(&self, i: usize, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        within_ns(&self.hosts[i].ns, &self.home, f)
    }

    /// `link A B ...` or `link A -> B ...`: makes the directions that do not exist yet, then
    /// applies each impairment in turn.
    pub(crate) fn link(
        &mut self,
        from: usize,
        to: usize,
        both: bool,
        impairments: &[Impairment],
    ) -> io::Result<()> {
        let mut dirs = vec![(from, to)];
        if both {
            dirs.push((to, from));
        }
        for i in impairments {
            if let Impairment::Mtu(mtu) = i {
                for h in [from, to] {
                    self.set_mtu(h, *mtu)?;
                }
            }
        }
        let mut links = self.forwarder.links();
        for (a, b) in dirs {
            let dir = links
                .dirs
                .entry((a as u8, b as u8))
                .or_insert_with(|| Direction::new(self.seed, a as u8, b as u8));
            for i in impairments {
                dir.now.apply(i);
            }
        }
        Ok(())
    }

    fn set_mtu(&mut self, i: usize, mtu: u32) -> io::Result<()> {
        let host = &mut self.hosts[i];
        let (set, mask) = netlink::up_noarp();
        let name = host.name.clone();
        host.rtnl
            .set(host.index, set, mask, Some(mtu))
            .map_err(context(format!("setting {name}'s MTU to {mtu}")))
    }

    /// `drop` or `hold`: packets from `from` to `to` with every flag in `flags` are taken, the
    /// next `count` of them dropped (`Some`) or all held until [`Network::release`] (`None`).
    pub(crate) fn rule(&mut self, from: End, to: End, flags: &str, count: Option<u64>) {
        let action = match count {
            Some(n) => Action::Drop(n),
            None => Action::Hold(Vec::new()),
        };
        self.forwarder.links().rules.push(Rule {
            from,
            to,
            flags: forward::flag_bits(flags),
            action,
        });
    }

    /// `release`: what is held from `from` to `to` goes on.
    pub(crate) fn release(&mut self, from: End, to: End) {
        self.forwarder.links().release(from, to);
        self.forwarder.wake();
    }

    /// Frames the forwarder holds for their time (not those `hold` keeps), and when it last
    /// read or sent one.
    pub(crate) fn activity(&self) -> (usize, Option<std::time::Instant>) {
        let links = self.forwarder.links();
        (links.waiting, links.last)
    }

    /// Frames the hosts sent that the forwarder has not read yet: handed to the near end, but
    /// still on their way through the kernel, which gets to them late under load.
    pub(crate) fn in_flight(&mut self) -> u64 {
        let read = self.forwarder.links().read.clone();
        let mut n = 0;
        for (i, host) in self.hosts.iter().enumerate() {
            if let Ok(got) = self.rtnl.received(host.near) {
                n += got.saturating_sub(host.base + read.get(i).copied().unwrap_or(0));
            }
        }
        n
    }

    /// Every direction joined so far, by host names, with what it did, in host order.
    pub(crate) fn report(&self) -> Vec<LinkCounts> {
        let links = self.forwarder.links();
        let mut dirs: Vec<_> = links.dirs.iter().collect();
        dirs.sort_by_key(|(k, _)| **k);
        dirs.into_iter()
            .map(|((a, b), d)| LinkCounts {
                from: self.hosts[usize::from(*a)].name.clone(),
                to: self.hosts[usize::from(*b)].name.clone(),
                counts: d.counts,
            })
            .collect()
    }

    /// What the link from `from` to `to` did so far; `None` where there is none.
    pub(crate) fn counts(&self, from: usize, to: usize) -> Option<Counts> {
        self.forwarder
            .links()
            .dirs
            .get(&(from as u8, to as u8))
            .map(|d| d.counts)
    }
}

/// Configures `eth0` of the namespace the thread is in: offloads off, up without ARP, the
/// default MTU, `addr/24`. Returns a netlink socket of that namespace, the interface's index
/// and its MAC address.
fn configure(addr: Ipv4Addr) -> io::Result<(Rtnl, u32, [u8; 6])> {
    let mut rtnl = Rtnl::open()?;
    let (index, mac) = rtnl.link("eth0")?;
    netlink::offloads_off("eth0")?;
    let (set, mask) = netlink::up_noarp();
    rtnl.set(index, set, mask, Some(DEFAULT_MTU))?;
    rtnl.address(index, addr, 24)?;
    Ok((rtnl, index, mac))
}

/// Runs `f` in namespace `ns`, then moves the thread back to `home`.
fn within_ns<T>(ns: &File, home: &File, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    setns(ns)?;
    let r = f();
    // Back home even when `f` failed: a thread left in a host's namespace would open the
    // scenario's next sockets there.
    setns(home)?;
    r
}

fn setns(ns: &File) -> io::Result<()> {
    // SAFETY: setns has no memory preconditions; it moves only the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Turns IPv6 off for the calling thread's namespace and for interfaces made in it from now
/// on, so that no router solicitation or neighbour discovery crosses a link. A kernel without
/// IPv6 has nothing to turn off.
fn no_ipv6() {
    for key in [
        "net.ipv6.conf.all.disable_ipv6",
        "net.ipv6.conf.default.disable_ipv6",
    ] {
        let _ = crate::sandbox::set_sysctl(key, "1");
    }
}

/// A new network namespace, its loopback up, IPv6 off and the scenario's sysctls set (the
/// scenario's settings are every host's), made on a thread of its own so that the caller stays
/// where it is.
fn new_namespace(sysctls: &[(String, String)]) -> io::Result<File> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("sockharness-host".into())
            .spawn_scoped(scope, || {
                crate::sandbox::fresh_netns().map_err(io::Error::other)?;
                no_ipv6();
                for (key, value) in sysctls {
                    crate::sandbox::set_sysctl(key, value).map_err(io::Error::other)?;
                }
                File::open("/proc/thread-self/ns/net")
            })?
            .join()
            .map_err(|_| io::Error::other("the namespace thread panicked"))?
    })
}

/// A packet socket bound to interface `index`, reading what arrives there and not what this
/// process sends out of it.
fn packet_socket(index: u32) -> io::Result<OwnedFd> {
    // Protocol 0 at creation: nothing is queued before the bind picks the interface.
    // SAFETY: socket has no memory preconditions; the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just made and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let int = |v: libc::c_int| v;
    // PACKET_IGNORE_OUTGOING (linux/if_packet.h; not in libc).
    setsockopt(&fd, libc::SOL_PACKET, 23, int(1))?;
    // Bursts of a fast sender wait here while the forwarder is busy; where more than the
    // system's limit cannot be forced, the limit is what there is.
    let buffer = int(8 << 20);
    if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, buffer).is_err() {
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, buffer)?;
    }
    // SAFETY: sockaddr_ll is plain old data, fully initialised, passed with its size.
    let r = unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = index as i32;
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn setsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int that outlives the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
