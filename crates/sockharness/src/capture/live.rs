//! Live capture on the loopback of the calling thread's network namespace: by default through an
//! AF_PACKET socket (no system library needed), with the `libpcap` feature through libpcap. In
//! a scenario with hosts the capture is the wire's own record instead (see
//! [`Tape`](crate::network::tape::Tape)), whichever the backend.

use std::io;
#[cfg(not(feature = "libpcap"))]
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
#[cfg(not(feature = "libpcap"))]
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(not(feature = "libpcap"))]
use socket2::{Domain, Protocol, Socket, Type};

use super::pcap::{LinkType, Packet};
use super::spill::{self, CaptureFile, Spill};
use crate::network::tape::Tape;

/// The largest frame `lo` hands a packet socket (GSO frames can reach 64 KiB plus headers).
const FRAME: usize = 256 * 1024;
/// Receive buffer asked for, so that bursts between drains are not dropped.
const RCVBUF: usize = 64 << 20;

/// Payload bytes a capture keeps in memory before it spills to a file, by default.
pub const MEMORY: usize = 32 << 20;

/// An open capture of every frame on `lo`, or of every frame on a scenario's links.
pub struct LiveCapture {
    source: Input,
    /// The hosts, for a capture of their links.
    interfaces: Vec<String>,
    packets: Vec<Packet>,
    /// Bytes of the frames in `packets`, while they are kept whole.
    kept: usize,
    /// How many bytes may be kept in memory before the capture spills.
    memory: usize,
    /// Where it spills.
    spill_dir: PathBuf,
    spill: SpillState,
    /// Frames seen leaving `lo` (counted where the backend shows them, not kept).
    sent: u64,
    /// Frames seen arriving on `lo`: the ones kept.
    arrived: u64,
}

impl LiveCapture {
    /// The capture backend this build uses: `AF_PACKET`, or `libpcap` with the `libpcap`
    /// feature.
    pub const BACKEND: &'static str = Source::NAME;

    /// Opens a capture on `lo` of the calling thread's network namespace. Frames queue from now
    /// on; [`LiveCapture::drain`] collects them.
    pub fn open_loopback() -> io::Result<LiveCapture> {
        Ok(Self::with(Input::Kernel(Source::open()?), Vec::new()))
    }

    /// A capture of what the forwarder of a scenario's links records on `tape`: what each of
    /// the `hosts` sent and received.
    pub fn of_links(tape: Arc<Tape>, hosts: Vec<String>) -> LiveCapture {
        Self::with(Input::Wire(tape), hosts)
    }

    fn with(source: Input, interfaces: Vec<String>) -> LiveCapture {
        LiveCapture {
            source,
            interfaces,
            packets: Vec::new(),
            kept: 0,
            memory: MEMORY,
            spill_dir: spill::default_dir(),
            spill: SpillState::Memory,
            sent: 0,
            arrived: 0,
        }
    }

    /// Keeps at most `memory` bytes of frames in memory; beyond that the capture goes on in a
    /// temporary pcap file in `dir`, and memory keeps only each frame's headers.
    pub fn spill_after(mut self, memory: usize, dir: PathBuf) -> LiveCapture {
        self.memory = memory;
        self.spill_dir = dir;
        self
    }

    /// The descriptor to wait for readability on.
    pub fn raw_fd(&self) -> RawFd {
        match &self.source {
            Input::Kernel(source) => source.raw_fd(),
            Input::Wire(tape) => tape.raw_fd(),
        }
    }

    /// The hosts whose links are captured; empty for loopback.
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    /// Collects every frame queued so far, without blocking.
    pub fn drain(&mut self) -> io::Result<()> {
        loop {
            let frame = match &mut self.source {
                Input::Kernel(source) => match source.read_one()? {
                    Some(frame) => frame,
                    None => return Ok(()),
                },
                Input::Wire(tape) => {
                    for p in tape.take() {
                        self.arrived += 1;
                        self.keep(p);
                    }
                    return Ok(());
                }
            };
            match frame {
                Frame::Sent => self.sent += 1,
                Frame::Arrived(p) => {
                    self.arrived += 1;
                    self.keep(p);
                }
            }
        }
    }

    fn keep(&mut self, mut p: Packet) {
        match &mut self.spill {
            SpillState::Memory => {
                self.kept += p.data.len();
                self.packets.push(p);
                if self.kept > self.memory {
                    self.start_spill();
                }
            }
            SpillState::Writing(file) => {
                if let Err(e) = file.packet(&p) {
                    self.spill = SpillState::Failed(self.spill_error(&e));
                }
                spill::cut(&mut p);
                self.packets.push(p);
            }
            SpillState::Failed(_) => {
                spill::cut(&mut p);
                self.packets.push(p);
            }
        }
    }

    /// Moves the whole frames to a file and keeps their headers; where no file can be had,
    /// keeps the headers only and says why.
    fn start_spill(&mut self) {
        let spill = Spill::start(
            &self.spill_dir,
            LinkType::Ethernet,
            &self.interfaces,
            &self.packets,
        );
        self.spill = match spill {
            Ok(file) => SpillState::Writing(file),
            Err(e) => SpillState::Failed(self.spill_error(&e)),
        };
        self.packets.iter_mut().for_each(spill::cut);
        self.kept = 0;
    }

    fn spill_error(&self, e: &io::Error) -> String {
        format!(
            "capture incomplete: frames past the first {} MiB are cut to their headers, as \
             they cannot be written to {} ({e})",
            self.memory >> 20,
            self.spill_dir.display()
        )
    }

    /// Whether every frame seen leaving `lo` has been seen arriving too, as of the last drain.
    /// On `lo` a frame is sent in the sender's system call, but it arrives (and the receiver's
    /// kernel answers it) when the receiving CPU gets to it, later under load; until then the
    /// answers are still to come. `None` where the backend hides sent frames (libpcap does on
    /// `lo`).
    pub fn delivered(&self) -> Option<bool> {
        let shows_sent = matches!(self.source, Input::Kernel(_)) && Source::SHOWS_SENT;
        shows_sent.then_some(self.arrived >= self.sent)
    }

    /// Frames collected so far.
    pub fn packets(&self) -> &[Packet] {
        &self.packets
    }

    /// Frames the kernel dropped because the buffer was full (call it once, at the end: reading
    /// may reset the kernel's counter).
    pub fn dropped(&mut self) -> io::Result<u32> {
        match &mut self.source {
            Input::Kernel(source) => source.dropped(),
            Input::Wire(tape) => Ok(u32::try_from(tape.lost()).unwrap_or(u32::MAX)),
        }
    }

    /// The collected frames, oldest first, and, where the capture spilled, the file with them
    /// whole (the frames in memory are then cut to their headers) or why it could not be
    /// written. The capture is closed on another thread: closing a packet socket waits for an
    /// RCU grace period (tens of milliseconds), which the scenario need not wait for.
    pub fn finish(mut self) -> Finished {
        // The wire's last frames, handed over as its forwarder stopped.
        if matches!(self.source, Input::Wire(_)) {
            let _ = self.drain();
        }
        if let Input::Kernel(source) = self.source {
            close_later(source);
        }
        let (file, note) = match self.spill {
            SpillState::Memory => (None, None),
            SpillState::Writing(s) => match s.finish() {
                Ok(f) => (Some(f), None),
                Err(e) => (
                    None,
                    Some(format!("capture incomplete: cannot finish its file ({e})")),
                ),
            },
            SpillState::Failed(why) => (None, Some(why)),
        };
        Finished {
            packets: self.packets,
            interfaces: self.interfaces,
            file,
            note,
        }
    }
}

/// What a capture collected.
pub struct Finished {
    /// Every frame, oldest first; cut to its headers where `file` holds it whole.
    pub packets: Vec<Packet>,
    /// The hosts whose links were captured; empty for loopback.
    pub interfaces: Vec<String>,
    /// The pcap file with every frame whole, where the capture outgrew its memory.
    pub file: Option<CaptureFile>,
    /// What went wrong writing that file.
    pub note: Option<String>,
}

/// Where the frames are kept whole.
enum SpillState {
    /// In memory: the capture is within its budget.
    Memory,
    /// In a file.
    Writing(Spill),
    /// Nowhere: the file could not be written, for this reason.
    Failed(String),
}

/// Where the frames come from.
enum Input {
    /// The kernel, through the backend.
    Kernel(Source),
    /// The forwarder of a scenario's links.
    Wire(Arc<Tape>),
}

/// One frame read from the backend.
enum Frame {
    /// A copy of a frame leaving `lo`; its contents are not kept.
    #[cfg_attr(feature = "libpcap", allow(dead_code))]
    Sent,
    /// A frame arriving on `lo`: the copy a capture keeps, as tcpdump does.
    Arrived(Packet),
}

/// The default backend: an AF_PACKET socket, no system library.
#[cfg(not(feature = "libpcap"))]
struct Source {
    socket: Socket,
    buf: Vec<u8>,
}

#[cfg(not(feature = "libpcap"))]
impl Source {
    const NAME: &'static str = "AF_PACKET";
    const SHOWS_SENT: bool = true;

    fn open() -> io::Result<Source> {
        // Protocol 0 at creation, the real one at bind: a socket created hooked to every device
        // would be unhooked by the bind, and each unhooking waits for an RCU grace period.
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        socket.set_nonblocking(true)?;
        let fd = socket.as_raw_fd();
        // Privileged callers may exceed rmem_max; others get what the limit allows.
        let size = RCVBUF as libc::c_int;
        // SAFETY: the option value is a c_int that outlives the call.
        let forced = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if forced != 0 {
            socket.set_recv_buffer_size(RCVBUF)?;
        }
        let on: libc::c_int = 1;
        // SAFETY: as above.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        socket.attach_filter(&SENT_AS_ONE_BYTE)?;
        // SAFETY: the name is NUL-terminated.
        let ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: sockaddr_ll is plain old data, fully initialised here, and passed with its size.
        unsafe {
            let mut sll: libc::sockaddr_ll = zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sll.sll_ifindex = ifindex as i32;
            let r = libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            );
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Source {
            socket,
            buf: vec![0; FRAME],
        })
    }

    fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn dropped(&mut self) -> io::Result<u32> {
        // SAFETY: tpacket_stats is plain old data, and the kernel writes at most `len` bytes.
        unsafe {
            let mut stats: libc::tpacket_stats = zeroed();
            let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
            let r = libc::getsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats).cast(),
                &mut len,
            );
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(stats.tp_drops)
        }
    }

    /// One frame, or `None` when the queue is empty. On `lo` every frame shows twice, leaving
    /// and arriving; only the arriving copy is kept, as tcpdump shows it once.
    fn read_one(&mut self) -> io::Result<Option<Frame>> {
        // SAFETY: all structs are plain old data; the iovec points into `self.buf`, the name
        // and control buffers are locals with their sizes, and recvmsg writes within them.
        let (n, pkttype, ts) = unsafe {
            let mut name: libc::sockaddr_ll = zeroed();
            let mut control = [0u64; 16];
            let mut iov = libc::iovec {
                iov_base: self.buf.as_mut_ptr().cast(),
                iov_len: self.buf.len(),
            };
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = (&mut name as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 16]>();
            let n = libc::recvmsg(self.socket.as_raw_fd(), &mut msg, libc::MSG_TRUNC);
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Ok(None);
                }
                return Err(e);
            }
            let mut ts = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    ts = Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            (n as usize, name.sll_pkttype, ts)
        };
        if pkttype == libc::PACKET_OUTGOING {
            return Ok(Some(Frame::Sent));
        }
        let kept = n.min(self.buf.len());
        Ok(Some(Frame::Arrived(Packet {
            ts: ts.unwrap_or_else(now),
            data: self.buf[..kept].to_vec(),
            orig_len: u32::try_from(n).unwrap_or(u32::MAX),
            seen: None,
        })))
    }
}

/// A socket filter that cuts the sent copy of each frame to one byte: it is only counted, and
/// so costs the buffer almost nothing, while arriving frames are kept whole.
#[cfg(not(feature = "libpcap"))]
const SENT_AS_ONE_BYTE: [socket2::SockFilter; 4] = {
    use socket2::SockFilter;
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    [
        SockFilter::new(
            LD_W_ABS,
            0,
            0,
            (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32,
        ),
        SockFilter::new(JEQ_K, 0, 1, libc::PACKET_OUTGOING as u32),
        SockFilter::new(RET_K, 0, 0, 1),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
    ]
};

/// The `libpcap` backend: the same capture through the system's libpcap.
#[cfg(feature = "libpcap")]
struct Source {
    cap: pcap::Capture<pcap::Active>,
}

#[cfg(feature = "libpcap")]
impl Source {
    const NAME: &'static str = "libpcap";
    const SHOWS_SENT: bool = false;

    fn open() -> io::Result<Source> {
        let to_io = |e: pcap::Error| io::Error::other(e.to_string());
        // libpcap opens its packet socket in the calling thread's namespace, like the default.
        let cap = pcap::Capture::from_device("lo")
            .map_err(to_io)?
            .immediate_mode(true)
            .snaplen(FRAME as i32)
            .buffer_size(RCVBUF as i32)
            .open()
            .map_err(to_io)?
            .setnonblock()
            .map_err(to_io)?;
        // libpcap opens its socket without close-on-exec; a server a scenario starts must not
        // inherit another scenario's capture.
        // SAFETY: fcntl on a descriptor the capture owns, with integer arguments only.
        if unsafe { libc::fcntl(cap.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Source { cap })
    }

    fn raw_fd(&self) -> RawFd {
        self.cap.as_raw_fd()
    }

    fn dropped(&mut self) -> io::Result<u32> {
        self.cap
            .stats()
            .map(|s| s.dropped)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    fn read_one(&mut self) -> io::Result<Option<Frame>> {
        match self.cap.next_packet() {
            Ok(p) => {
                let ts = Duration::new(
                    p.header.ts.tv_sec as u64,
                    (p.header.ts.tv_usec as u32) * 1000,
                );
                Ok(Some(Frame::Arrived(Packet {
                    ts,
                    data: p.data.to_vec(),
                    orig_len: p.header.len,
                    seen: None,
                })))
            }
            Err(pcap::Error::TimeoutExpired) | Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }
}

#[cfg(not(feature = "libpcap"))]
fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Packet sockets being closed, with a signal for when none are left.
static CLOSING: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// Closes a packet socket on a short-lived thread. Each close waits for an RCU grace period;
/// closes running side by side share one, where closing them one after another (or at process
/// exit) would add up.
fn close_later(source: Source) {
    if let Ok(mut n) = CLOSING.0.lock() {
        *n += 1;
    }
    let done = move || {
        if let Ok(mut n) = CLOSING.0.lock() {
            *n = n.saturating_sub(1);
            CLOSING.1.notify_all();
        }
    };
    let closer = std::thread::Builder::new()
        .name("capture-close".into())
        .spawn(move || {
            drop(source);
            done();
        });
    if let Err(e) = closer {
        // No thread to be had: the closure (and the socket in it) came back and was dropped
        // with the error, so the socket is closed here.
        drop(e);
        done();
    }
}

/// Waits (at most `limit`) until every capture socket handed off for closing is closed.
pub fn wait_for_closes(limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    let Ok(mut n) = CLOSING.0.lock() else { return };
    while *n > 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        match CLOSING.1.wait_timeout(n, left) {
            Ok((guard, _)) => n = guard,
            Err(_) => return,
        }
    }
}
