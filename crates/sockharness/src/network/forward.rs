//! The forwarder: a thread that reads every frame a host sends (from the scenario-side end of
//! its veth pair, through an AF_PACKET socket), asks the link what becomes of it, and writes the
//! copies that survive to the receiving host's veth when their time comes.
//!
//! A thread of its own, not a task on the scenario's runtime: a delay line keeps its times
//! while the scenario's statements run, and the scenario's blocking calls do not wait behind
//! the wire's work.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::link::{Direction, PacketId, REORDER_HOLD};
use super::tape::{Recorder, Tape};
use crate::capture::Marks;

/// The largest frame read: a 65535-byte MTU and its Ethernet header.
const MAX_FRAME: usize = 65536 + 14;
/// Frames read from one socket before the others get a turn.
const BURST: usize = 64;

/// One host as the forwarder sees it: the socket on its link's far end, its address and the
/// MAC address of its interface.
pub(crate) struct Port {
    pub(crate) socket: OwnedFd,
    pub(crate) addr: std::net::Ipv4Addr,
    pub(crate) mac: [u8; 6],
}

/// What the forwarder and the scenario share: each direction's impairments and counts, and
/// the packets chosen by `drop` and `hold`.
#[derive(Default)]
pub(crate) struct Links {
    /// By (sending host, receiving host), numbered as the ports are.
    pub(crate) dirs: HashMap<(u8, u8), Direction>,
    /// `drop` and `hold` rules, the first that matches a packet deciding it.
    pub(crate) rules: Vec<Rule>,
    /// Frames a `release` let go, for the forwarder to send at once.
    released: Vec<Held>,
    /// Frames waiting for their time (delay, rate, reorder), as of the forwarder's last turn.
    pub(crate) waiting: usize,
    /// When the forwarder last read or sent a frame.
    pub(crate) last: Option<Instant>,
    /// Frames read from each port so far, as of the forwarder's last turn.
    pub(crate) read: Vec<u64>,
}

impl Links {
    /// Applies the first rule that matches a frame from host `from` to host `to` (recorded at
    /// `recorded`); the capture's mark for it (dropped or held) when a rule took it.
    fn rule(
        &mut self,
        from: u8,
        to: u8,
        (src, dst): (SocketAddrV4, SocketAddrV4),
        flags: u8,
        frame: &[u8],
        recorded: Option<usize>,
    ) -> Option<u8> {
        let i = self.rules.iter().position(|r| {
            r.from.matches(src)
                && r.to.matches(dst)
                && flags & r.flags == r.flags
                && !matches!(r.action, Action::Drop(0))
        })?;
        let mark = match &mut self.rules[i].action {
            Action::Drop(left) => {
                *left -= 1;
                if let Some(d) = self.dirs.get_mut(&(from, to)) {
                    d.counts.dropped += 1;
                }
                Marks::DROPPED
            }
            Action::Hold(held) => {
                held.push(Held {
                    to,
                    dir: (from, to),
                    frame: frame.to_vec(),
                    recorded,
                });
                Marks::HELD
            }
        };
        self.rules.retain(|r| !matches!(r.action, Action::Drop(0)));
        Some(mark)
    }

    /// `release`: every frame held by rules from `from` to `to` goes now, in the order it came,
    /// and those rules are gone.
    pub(crate) fn release(&mut self, from: End, to: End) {
        let mut kept = Vec::new();
        for rule in std::mem::take(&mut self.rules) {
            match rule.action {
                Action::Hold(held) if rule.from == from && rule.to == to => {
                    for h in held {
                        if let Some(d) = self.dirs.get_mut(&h.dir) {
                            d.counts.delivered += 1;
                        }
                        self.released.push(h);
                    }
                }
                _ => kept.push(rule),
            }
        }
        self.rules = kept;
    }
}

/// One end of the packets a rule matches: a host (any port) or one socket's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Host(Ipv4Addr),
    Socket(SocketAddrV4),
}

impl End {
    fn matches(self, addr: SocketAddrV4) -> bool {
        match self {
            End::Host(ip) => *addr.ip() == ip,
            End::Socket(s) => s == addr,
        }
    }
}

/// `drop` or `hold`.
pub(crate) struct Rule {
    pub(crate) from: End,
    pub(crate) to: End,
    /// TCP flag bits every matching packet has.
    pub(crate) flags: u8,
    pub(crate) action: Action,
}

pub(crate) enum Action {
    /// Drop this many more.
    Drop(u64),
    /// Hold, keeping what was held.
    Hold(Vec<Held>),
}

/// A frame `hold` keeps.
pub(crate) struct Held {
    to: u8,
    /// (sending host, receiving host).
    dir: (u8, u8),
    frame: Vec<u8>,
    /// Where the capture recorded it as sent.
    recorded: Option<usize>,
}

/// The TCP flag bits of flag letters (`SA`).
pub(crate) fn flag_bits(letters: &str) -> u8 {
    letters.chars().fold(0, |bits, c| {
        bits | match c {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' => 0x10,
            'U' => 0x20,
            'E' => 0x40,
            'C' => 0x80,
            _ => 0,
        }
    })
}

/// The running forwarder; dropping it stops the thread.
pub(crate) struct Forwarder {
    links: Arc<Mutex<Links>>,
    stop: OwnedFd,
    wake: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    /// Starts forwarding between `ports` (host `i` is `ports[i]`) as `links` say, recording
    /// every frame on `tape` where there is one.
    pub(crate) fn start(
        ports: Vec<Port>,
        links: Arc<Mutex<Links>>,
        tape: Option<Arc<Tape>>,
    ) -> io::Result<Forwarder> {
        let stop = eventfd()?;
        let wake = eventfd()?;
        let (stop_seen, wake_seen) = (stop.try_clone()?, wake.try_clone()?);
        let shared = links.clone();
        let thread = std::thread::Builder::new()
            .name("sockharness-wire".into())
            .spawn(move || {
                let mut run = Run::new(ports, shared, tape);
                run.forward(&stop_seen, &wake_seen);
                run.finish();
            })?;
        Ok(Forwarder {
            links,
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// The links, to change their impairments or read their counts.
    pub(crate) fn links(&self) -> MutexGuard<'_, Links> {
        lock(&self.links)
    }

    /// Wakes the thread to send what was released.
    pub(crate) fn wake(&self) {
        signal(&self.wake);
    }
}

pub(super) fn signal(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

pub(super) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd has no memory preconditions; the descriptor is owned at once.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor just made and owned by nothing else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) })
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        signal(&self.stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Pins the calling thread to the CPU it runs on. A frame written to a veth is queued on the
/// writing CPU's backlog and taken in by that CPU: a thread that moved between two writes could
/// have its frames taken in out of order, reordering what the link delivers in order. Where
/// the pin is refused the thread runs as it is.
fn stay_on_this_cpu() {
    // SAFETY: sched_getcpu has no preconditions; cpu_set_t is plain old data, set through the
    // libc helpers, and passed with its size for the calling thread (0).
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn lock(links: &Mutex<Links>) -> MutexGuard<'_, Links> {
    // A panic elsewhere leaves the counts as they were: still worth reading.
    links.lock().unwrap_or_else(|e| e.into_inner())
}

/// A frame waiting for its time.
struct Due {
    at: Instant,
    order: u64,
    to: u8,
    frame: Vec<u8>,
    /// Where the capture recorded it as sent, and what the link did to this copy.
    recorded: Option<usize>,
    marks: u8,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// What becomes of a frame: the host it is for, the marks the capture gives it as sent, and,
/// unless a rule took it or it goes nowhere, the link's decision and when it was made.
struct Verdict {
    to: u8,
    marks: u8,
    fate: Option<(Instant, super::link::Fate)>,
}

struct Run {
    ports: Vec<Port>,
    links: Arc<Mutex<Links>>,
    epoch: Instant,
    queue: BinaryHeap<Reverse<Due>>,
    /// Per direction, a frame held back by `reorder` until the next one passes, and the latest
    /// it waits.
    held: HashMap<(u8, u8), (Due, Instant)>,
    order: u64,
    /// Whether a frame was read since the last turn.
    read_any: bool,
    /// Frames read from each port.
    read: Vec<u64>,
    recorder: Option<Recorder>,
}

impl Run {
    fn new(ports: Vec<Port>, links: Arc<Mutex<Links>>, tape: Option<Arc<Tape>>) -> Run {
        Run {
            read: vec![0; ports.len()],
            ports,
            links,
            epoch: Instant::now(),
            queue: BinaryHeap::new(),
            held: HashMap::new(),
            order: 0,
            read_any: false,
            recorder: tape.map(Recorder::new),
        }
    }

    /// Hands over the last frames recorded, with the count of frames the hosts sent that were
    /// never read.
    fn finish(&mut self) {
        let Some(rec) = &mut self.recorder else {
            return;
        };
        rec.flush();
        let lost: u64 = self
            .ports
            .iter()
            .map(|p| u64::from(socket_drops(&p.socket)))
            .sum();
        rec.tape().add_lost(lost);
    }

    fn forward(&mut self, stop: &OwnedFd, wake: &OwnedFd) {
        stay_on_this_cpu();
        let mut buf = vec![0u8; MAX_FRAME];
        let mut fds: Vec<libc::pollfd> = self
            .ports
            .iter()
            .map(|p| p.socket.as_raw_fd())
            .chain([wake.as_raw_fd(), stop.as_raw_fd()])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        loop {
            let now = Instant::now();
            let sent = self.release(now);
            if let Some(rec) = &mut self.recorder {
                rec.flush();
            }
            {
                let mut links = lock(&self.links);
                links.waiting = self.queue.len() + self.held.len() + links.released.len();
                links.read.clone_from(&self.read);
                if sent || self.read_any {
                    links.last = Some(Instant::now());
                }
            }
            self.read_any = false;
            let next = self
                .queue
                .peek()
                .map(|Reverse(d)| d.at)
                .into_iter()
                .chain(self.held.values().map(|(_, until)| *until))
                .min();
            let wait = next.map_or(-1, |t| {
                // Rounded up, so that a frame is never sent before its time.
                let us = t.saturating_duration_since(now).as_micros();
                i32::try_from(us.div_ceil(1000)).unwrap_or(i32::MAX)
            });
            // SAFETY: `fds` is a live array of pollfd of the length given.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if fds.last().is_some_and(|f| f.revents != 0) {
                return;
            }
            if fds[self.ports.len()].revents != 0 {
                let mut count = 0u64;
                // SAFETY: reads 8 bytes into a live u64 (and resets the eventfd).
                unsafe { libc::read(wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
            }
            let ready: Vec<usize> = (0..self.ports.len())
                .filter(|i| fds[*i].revents & libc::POLLIN != 0)
                .collect();
            for i in ready {
                self.read(i, &mut buf);
            }
        }
    }

    /// Reads what host `from` sent, up to a burst.
    fn read(&mut self, from: usize, buf: &mut [u8]) {
        for _ in 0..BURST {
            let fd = self.ports[from].socket.as_raw_fd();
            // SAFETY: reads at most `buf.len()` bytes into `buf`.
            let n =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            let Ok(n) = usize::try_from(n) else { return };
            self.read_any = true;
            self.read[from] += 1;
            self.arrived(from as u8, &buf[..n]);
        }
    }

    fn arrived(&mut self, from: u8, frame: &[u8]) {
        let recorded = self.recorder.as_ref().map(Recorder::next);
        let Verdict { to, marks, fate } = self.verdict(from, frame, recorded);
        if let Some(rec) = &mut self.recorder {
            rec.record(from, frame, None, marks);
        }
        let Some((now, fate)) = fate else { return };
        let mut frame = frame.to_vec();
        if let Some((byte, bit)) = fate.flip {
            frame[byte] ^= bit;
        }
        let corrupted = marks & Marks::CORRUPTED;
        let mut copies = fate.copies.iter().map(|w| now + *w);
        let Some(first) = copies.next() else { return };
        let dup: Vec<Instant> = copies.collect();
        for at in dup {
            let due = self.due(
                at,
                to,
                frame.clone(),
                recorded,
                Marks::DUPLICATED | corrupted,
            );
            self.queue.push(Reverse(due));
        }
        let mut due = self.due(first, to, frame, recorded, corrupted);
        let held = self.held.remove(&(from, to));
        if fate.reordered {
            // This one waits for the next; one already waiting goes now, ahead of it.
            if let Some((h, _)) = held {
                self.queue.push(Reverse(h));
            }
            due.marks |= Marks::REORDERED;
            let until = due.at + REORDER_HOLD;
            self.held.insert((from, to), (due, until));
            return;
        }
        let at = due.at;
        self.queue.push(Reverse(due));
        // A frame held back goes right behind this one.
        if let Some((mut h, _)) = held {
            h.at = h.at.max(at);
            h.order = self.next_order();
            self.queue.push(Reverse(h));
        }
    }

    /// What becomes of a frame from host `from`, recorded (if it is) at index `recorded`.
    fn verdict(&mut self, from: u8, frame: &[u8], recorded: Option<usize>) -> Verdict {
        let nowhere = |to, marks| Verdict {
            to,
            marks,
            fate: None,
        };
        // A frame for no host (or no IPv4 packet at all) goes nowhere.
        let Some((to, id, ends)) = self.identify(frame) else {
            return nowhere(0, Marks::DROPPED);
        };
        let now = Instant::now();
        let mut links = lock(&self.links);
        links.last = Some(now);
        // No link between them: the frame goes nowhere, as on a network they do not share.
        if !links.dirs.contains_key(&(from, to)) {
            return nowhere(to, Marks::DROPPED);
        }
        if let Some(mark) = links.rule(from, to, ends, id.flags, frame, recorded) {
            return nowhere(to, mark);
        }
        let Some(dir) = links.dirs.get_mut(&(from, to)) else {
            return nowhere(to, Marks::DROPPED);
        };
        let fate = dir.decide(&id, now - self.epoch);
        let mut marks = 0;
        match fate.copies.len() {
            0 => marks |= Marks::DROPPED,
            1 => {}
            _ => marks |= Marks::DUPLICATED,
        }
        if fate.flip.is_some() {
            marks |= Marks::CORRUPTED;
        }
        if fate.reordered {
            marks |= Marks::REORDERED;
        }
        Verdict {
            to,
            marks,
            fate: Some((now, fate)),
        }
    }

    fn next_order(&mut self) -> u64 {
        self.order += 1;
        self.order
    }

    fn due(
        &mut self,
        at: Instant,
        to: u8,
        frame: Vec<u8>,
        recorded: Option<usize>,
        marks: u8,
    ) -> Due {
        Due {
            at,
            order: self.next_order(),
            to,
            frame,
            recorded,
            marks,
        }
    }

    /// Sends every frame whose time has come, and held frames that waited long enough; true
    /// when it sent any.
    fn release(&mut self, now: Instant) -> bool {
        let mut sent = false;
        let released = std::mem::take(&mut lock(&self.links).released);
        for h in released {
            let due = self.due(now, h.to, h.frame, h.recorded, Marks::HELD);
            self.queue.push(Reverse(due));
        }
        let expired: Vec<(u8, u8)> = self
            .held
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some((due, _)) = self.held.remove(&k) {
                self.queue.push(Reverse(due));
            }
        }
        while self.queue.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(mut d)) = self.queue.pop() else {
                break;
            };
            let port = &self.ports[usize::from(d.to)];
            // The receiving interface takes only frames addressed to it.
            d.frame[..6].copy_from_slice(&port.mac);
            // SAFETY: sends `d.frame.len()` bytes from a live buffer. A full queue drops the
            // frame, as a real link would.
            let n = unsafe {
                libc::send(
                    port.socket.as_raw_fd(),
                    d.frame.as_ptr().cast(),
                    d.frame.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if let (Some(rec), true) = (&mut self.recorder, n >= 0) {
                rec.record(d.to, &d.frame, d.recorded, d.marks);
            }
            sent = true;
        }
        sent
    }

    /// The host a frame is for, and what the link needs to know of it; `None` for a frame that
    /// is no IPv4 packet to another host.
    fn identify(&self, frame: &[u8]) -> Option<(u8, PacketId, (SocketAddrV4, SocketAddrV4))> {
        let packet = SlicedPacket::from_ethernet(frame).ok()?;
        let Some(NetSlice::Ipv4(ip)) = &packet.net else {
            return None;
        };
        let dst = ip.header().destination_addr();
        let to = self.ports.iter().position(|p| p.addr == dst)?;
        let header = ip.header().slice().len();
        let l4 = 14 + header;
        let (flow, seq, flags) = match &packet.transport {
            Some(TransportSlice::Tcp(t)) => {
                let flags = t.slice()[13];
                (
                    (6, t.source_port(), t.destination_port()),
                    t.sequence_number(),
                    flags,
                )
            }
            Some(TransportSlice::Udp(u)) => ((17, u.source_port(), u.destination_port()), 0, 0),
            _ => ((ip.header().protocol().0, 0, 0), 0, 0),
        };
        let src = SocketAddrV4::new(ip.header().source_addr(), flow.1);
        let dst = SocketAddrV4::new(dst, flow.2);
        Some((
            to as u8,
            PacketId {
                flow,
                seq,
                flags,
                len: frame.len() as u32,
                l4: (l4.min(frame.len()), frame.len()),
            },
            (src, dst),
        ))
    }
}

/// Frames the kernel dropped because a packet socket's buffer was full.
fn socket_drops(socket: &OwnedFd) -> u32 {
    // SAFETY: tpacket_stats is plain old data, and the kernel writes at most `len` bytes.
    unsafe {
        let mut stats: libc::tpacket_stats = std::mem::zeroed();
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        let r = libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        );
        if r != 0 {
            return 0;
        }
        stats.tp_drops
    }
}
