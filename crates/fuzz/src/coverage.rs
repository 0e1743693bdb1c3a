//! Coverage from servers built with AFL++ (`afl-clang-fast`, `afl-gcc-fast`, `cargo afl
//! build`): each server instance writes its edge hit counts into a System V shared-memory map
//! whose id it finds in `__AFL_SHM_ID`, as under `afl-fuzz`, but it keeps running across inputs
//! instead of being forked for each. The fuzzer clears an instance's map before an input, reads
//! it after, and keeps the input when its counts, classified into AFL's buckets, set a bit that
//! no input set before.
//!
//! Nothing here opens a socket; [`Virgin`] and [`bucket`] need no shared memory either.

use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The map size asked for when the server does not say (AFL's classic 64 KiB).
pub const DEFAULT_MAP: usize = 1 << 16;
/// The largest map accepted: AFL++'s own limit for a forkserver.
const MAX_MAP: usize = 1 << 23;
/// How long an instrumented server takes, at most, to print its map size and exit.
const DUMP_WAIT: Duration = Duration::from_secs(5);

/// A shared-memory edge map, removed when dropped.
pub struct Map {
    id: i32,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with the server process; the fuzzer only clears
// and copies it, one thread per map at a time (each worker owns its instance's map).
unsafe impl Send for Map {}
// SAFETY: as above: concurrent copies of bytes another process writes are benign.
unsafe impl Sync for Map {}

impl Map {
    /// Makes a map of `len` bytes, readable and writable by this user only.
    pub fn new(len: usize) -> io::Result<Map> {
        // SAFETY: shmget and shmat have no memory preconditions; the result is checked.
        unsafe {
            let id = libc::shmget(
                libc::IPC_PRIVATE,
                len,
                libc::IPC_CREAT | libc::IPC_EXCL | 0o600,
            );
            if id < 0 {
                return Err(io::Error::last_os_error());
            }
            let ptr = libc::shmat(id, std::ptr::null(), 0);
            if ptr as isize == -1 {
                let e = io::Error::last_os_error();
                libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
                return Err(e);
            }
            // Marked for removal now: it goes with the last process that detaches, so a fuzzer
            // killed outright leaves no segment behind. Linux still lets others attach it.
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            Ok(Map {
                id,
                ptr: ptr.cast(),
                len,
            })
        }
    }

    /// The id a server finds in `__AFL_SHM_ID`.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes (never: a map has at least one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets every count to zero.
    pub fn clear(&self) {
        // SAFETY: `ptr` is a live mapping of `len` bytes.
        unsafe { std::ptr::write_bytes(self.ptr, 0, self.len) };
    }

    /// A copy of the counts once the server has stopped adding to them: the same in two reads
    /// [`SETTLE_GAP`] apart (waiting [`SETTLE_MAX`] at most). A client's last bytes are often
    /// still being handled when its scenario ends; read at once, their edges would be lost,
    /// or counted to the next input.
    pub fn read_settled(&self, into: &mut Vec<u8>, before: &mut Vec<u8>) {
        let started = std::time::Instant::now();
        self.read(into);
        loop {
            std::mem::swap(into, before);
            std::thread::sleep(SETTLE_GAP);
            self.read(into);
            if into == before || started.elapsed() >= SETTLE_MAX {
                return;
            }
        }
    }

    /// A copy of the counts as they are now.
    pub fn read(&self, into: &mut Vec<u8>) {
        into.resize(self.len, 0);
        // SAFETY: `ptr` is a live mapping of `len` bytes and `into` holds `len` bytes. The
        // server may be writing meanwhile: a count read half-updated is still a count.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr, into.as_mut_ptr(), self.len) };
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: detaches the mapping made in `new`; nothing uses `ptr` after this.
        unsafe { libc::shmdt(self.ptr.cast()) };
    }
}

/// How long the counts must stay the same to be taken as settled.
pub const SETTLE_GAP: std::time::Duration = std::time::Duration::from_micros(300);
/// How long counts still changing are waited for: a server busy in the background (a timer,
/// another client) never settles.
pub const SETTLE_MAX: std::time::Duration = std::time::Duration::from_millis(20);

/// AFL's bucket of a hit count: one bit each for 1, 2, 3, 4-7, 8-15, 16-31, 32-127 and 128
/// or more hits, so that a loop running a few more times is news, and a few more of many is not.
pub fn bucket(count: u8) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        128.. => 128,
    }
}

/// What an input's counts added to everything seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Novelty {
    /// Nothing.
    None,
    /// An edge seen before, in a bucket not seen for it.
    Counts,
    /// An edge never seen before.
    Edges,
}

/// The buckets not yet seen, per edge: AFL's "virgin bits".
#[derive(Debug, Clone)]
pub struct Virgin {
    bits: Vec<u8>,
    edges: usize,
}

impl Virgin {
    /// Nothing seen yet, for maps of `len` bytes.
    pub fn new(len: usize) -> Virgin {
        Virgin {
            bits: vec![0xff; len],
            edges: 0,
        }
    }

    /// Takes in one input's counts; what they added.
    pub fn merge(&mut self, counts: &[u8]) -> Novelty {
        let mut novelty = Novelty::None;
        for (v, &c) in self.bits.iter_mut().zip(counts) {
            let b = bucket(c);
            if b & *v == 0 {
                continue;
            }
            if *v == 0xff {
                novelty = Novelty::Edges;
                self.edges += 1;
            } else if novelty == Novelty::None {
                novelty = Novelty::Counts;
            }
            *v &= !b;
        }
        novelty
    }

    /// Edges seen at least once.
    pub fn edges(&self) -> usize {
        self.edges
    }
}

/// Why a server cannot give coverage.
#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    /// The server did not answer `AFL_DUMP_MAP_SIZE`, as AFL++'s instrumentation does.
    #[error(
        "`{command}` is not instrumented for coverage: run with AFL_DUMP_MAP_SIZE=1, a server \
         built by AFL++ prints its map size and exits, but this one {what}. Build it with \
         afl-clang-fast, afl-gcc-fast or `cargo afl build`, or fuzz it without --coverage"
    )]
    NotInstrumented {
        /// The server's command.
        command: String,
        /// What it did instead.
        what: String,
    },
    /// The map could not be made.
    #[error("cannot make a shared-memory coverage map of {len} bytes: {source}")]
    Map {
        /// Its size.
        len: usize,
        /// Why.
        source: io::Error,
    },
}

/// Asks the server `command` (with `{port}` and `$PORT` at `port`) for the size of its map, as
/// afl-fuzz does: AFL++'s runtime prints it and exits when `AFL_DUMP_MAP_SIZE` is set. A server
/// that instead starts, or exits without a number, is not instrumented.
pub fn map_size(command: &str, port: u16) -> Result<usize, CoverageError> {
    let not = |what: String| CoverageError::NotInstrumented {
        command: command.to_string(),
        what,
    };
    let script = command
        .replace("{port}", &port.to_string())
        .replace("{addr}", &format!("127.0.0.1:{port}"));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("PORT", port.to_string())
        .env("ADDR", format!("127.0.0.1:{port}"))
        .env("AFL_DUMP_MAP_SIZE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| not(format!("could not be started ({e})")))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < DUMP_WAIT => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                // SAFETY: kill has no memory preconditions; the negative pid names the group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                return Err(not(format!("went on running for {}s", DUMP_WAIT.as_secs())));
            }
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = io::Read::read_to_string(&mut stdout, &mut out);
    }
    match out.lines().next().map(|l| l.trim().parse::<usize>()) {
        Some(Ok(n)) if n > 0 => Ok(n.clamp(DEFAULT_MAP, MAX_MAP).next_multiple_of(64)),
        _ => Err(not(match out.trim() {
            "" => format!("exited ({status}) without printing it"),
            text => format!("printed {:?}", text.chars().take(60).collect::<String>()),
        })),
    }
}

use std::os::unix::process::CommandExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_afls() {
        let got: Vec<u8> = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 127, 128, 255]
            .map(bucket)
            .to_vec();
        assert_eq!(got, [0, 1, 2, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128]);
    }

    #[test]
    fn novelty_is_a_new_edge_or_a_new_bucket_and_only_once() {
        let mut v = Virgin::new(8);
        assert_eq!(v.merge(&[0; 8]), Novelty::None);
        assert_eq!(v.merge(&[1, 0, 0, 0, 0, 0, 0, 0]), Novelty::Edges);
        assert_eq!(v.merge(&[1, 0, 0, 0, 0, 0, 0, 0]), Novelty::None);
        // Same edge, three hits: a new bucket.
        assert_eq!(v.merge(&[3, 0, 0, 0, 0, 0, 0, 0]), Novelty::Counts);
        // Four and five hits share a bucket.
        assert_eq!(v.merge(&[4, 0, 0, 0, 0, 0, 0, 0]), Novelty::Counts);
        assert_eq!(v.merge(&[5, 0, 0, 0, 0, 0, 0, 0]), Novelty::None);
        assert_eq!(v.merge(&[1, 0, 9, 0, 0, 0, 0, 0]), Novelty::Edges);
        assert_eq!(v.edges(), 2);
    }

    #[test]
    fn a_map_is_shared_with_whoever_attaches_its_id() {
        let map = Map::new(4096).expect("System V shared memory");
        map.clear();
        // Another attachment, as the server's runtime makes: what it writes, the map reads.
        // SAFETY: attaches the live segment, writes within its 4096 bytes, detaches.
        unsafe {
            let other = libc::shmat(map.id(), std::ptr::null(), 0);
            assert_ne!(other as isize, -1);
            *other.cast::<u8>().add(100) = 7;
            libc::shmdt(other);
        }
        let mut counts = Vec::new();
        map.read(&mut counts);
        assert_eq!((counts.len(), counts[100]), (4096, 7));
        map.clear();
        map.read(&mut counts);
        assert!(counts.iter().all(|&c| c == 0));
    }

    #[test]
    fn a_server_that_is_not_instrumented_says_what_it_did() {
        let e = map_size("echo hello", 1).expect_err("not instrumented");
        assert!(e.to_string().contains("printed \"hello\""), "{e}");
        let e = map_size("exit 3", 1).expect_err("not instrumented");
        assert!(e.to_string().contains("without printing it"), "{e}");
        assert_eq!(map_size("echo 711; exit 255", 1).ok(), Some(DEFAULT_MAP));
        assert_eq!(map_size("echo 100000", 1).ok(), Some(100_032));
    }
}
