//! The wire's own capture: every frame a host sent, as the forwarder read it, and every copy a
//! host received, as the forwarder wrote it, each with what the link did to it. The forwarder
//! knows each frame's fate when it decides it, so the capture records it exactly, where a
//! capture beside the forwarder would have to match frames to decisions after the fact.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::capture::{Marks, Packet, Seen};

/// What the forwarder recorded and the scenario has not collected yet.
pub struct Tape {
    frames: Mutex<Vec<Packet>>,
    /// Readable while `frames` holds any.
    ready: OwnedFd,
    /// Frames a host sent that the forwarder never read: its socket's buffer was full.
    lost: AtomicU64,
}

impl Tape {
    pub(crate) fn new() -> io::Result<Arc<Tape>> {
        Ok(Arc::new(Tape {
            frames: Mutex::new(Vec::new()),
            ready: super::forward::eventfd()?,
            lost: AtomicU64::new(0),
        }))
    }

    /// The descriptor that is readable while frames wait to be collected.
    pub fn raw_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    /// Every frame recorded since the last call, oldest first.
    pub fn take(&self) -> Vec<Packet> {
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a live u64, resetting the (non-blocking) eventfd; frames
        // recorded after this signal it again.
        unsafe { libc::read(self.ready.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        std::mem::take(&mut *self.frames.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Frames the hosts sent that the forwarder never read, as of when it stopped.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    pub(crate) fn add_lost(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
    }
}

/// The forwarder's side: frames recorded during one turn of its loop, handed over at the end
/// of the turn, so that the scenario is woken once per turn and not once per frame.
pub(crate) struct Recorder {
    tape: Arc<Tape>,
    pending: Vec<Packet>,
    /// Frames recorded so far: the next one's index in the capture.
    count: usize,
}

impl Recorder {
    pub(crate) fn new(tape: Arc<Tape>) -> Recorder {
        Recorder {
            tape,
            pending: Vec::new(),
            count: 0,
        }
    }

    pub(crate) fn tape(&self) -> &Tape {
        &self.tape
    }

    /// The index the next recorded frame gets.
    pub(crate) fn next(&self) -> usize {
        self.count
    }

    /// Records a frame host `host` sent (`received: None`) or a copy of frame `received` it
    /// received.
    pub(crate) fn record(&mut self, host: u8, frame: &[u8], received: Option<usize>, marks: u8) {
        self.count += 1;
        self.pending.push(Packet {
            ts: now(),
            data: frame.to_vec(),
            orig_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            seen: Some(Seen {
                interface: u32::from(host),
                received,
                marks: Marks::from_bits(marks),
            }),
        });
    }

    /// Hands what this turn recorded to the scenario.
    pub(crate) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut frames = self.tape.frames.lock().unwrap_or_else(|e| e.into_inner());
        let wake = frames.is_empty();
        frames.append(&mut self.pending);
        drop(frames);
        if wake {
            super::forward::signal(&self.tape.ready);
        }
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
