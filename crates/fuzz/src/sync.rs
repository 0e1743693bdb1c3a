//! `--sync-dir`: one campaign shared by several runs, on one machine or on many over a shared
//! file system, or with AFL++ itself, in AFL++'s layout. Each run writes the queue entries it
//! found to `DIR/NAME/queue/id:NNNNNN` and, now and then, takes in what the others wrote in
//! theirs (`DIR/*/queue/id:*`): each such stream is sent once as it is, and joins this run's
//! queue if it reaches something new here, as AFL++'s `-S` instances sync.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use super::queue::Queue;

/// Streams longer than this in another run's queue are not taken in: a file that large is not
/// a request stream.
pub const MAX_IMPORT: usize = 1 << 20;

/// Where a run shares its queue.
#[derive(Debug, Clone)]
pub struct SyncDir {
    /// The campaign's directory.
    pub dir: PathBuf,
    /// This run's name in it: its queue is `dir/name/queue`.
    pub name: String,
}

/// A run's side of the sharing: what it wrote, and what it took in.
pub struct Sync {
    to: SyncDir,
    written: HashSet<u64>,
    taken: HashSet<PathBuf>,
}

impl Sync {
    /// Makes `DIR/NAME/queue`.
    pub fn new(to: SyncDir) -> io::Result<Sync> {
        std::fs::create_dir_all(to.dir.join(&to.name).join("queue"))?;
        Ok(Sync {
            to,
            written: HashSet::new(),
            taken: HashSet::new(),
        })
    }

    /// This run's queue directory.
    pub fn queue_dir(&self) -> PathBuf {
        self.to.dir.join(&self.to.name).join("queue")
    }

    /// Writes the queue's entries not written yet; how many.
    pub fn export(&mut self, q: &Queue) -> io::Result<usize> {
        q.save_new(&self.queue_dir(), &mut self.written)
    }

    /// The streams other runs wrote since the last look, oldest name first in each.
    pub fn import(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut found = Vec::new();
        let mut others: Vec<PathBuf> = std::fs::read_dir(&self.to.dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != self.to.name.as_str())
            .map(|e| e.path().join("queue"))
            .filter(|q| q.is_dir())
            .collect();
        others.sort();
        for dir in others {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("id:"))
                .map(|e| e.path())
                .filter(|p| !self.taken.contains(p))
                .collect();
            files.sort();
            for path in files {
                if let Some(bytes) = read_small(&path) {
                    found.push(bytes);
                }
                self.taken.insert(path);
            }
        }
        Ok(found)
    }
}

/// A file's bytes, if it can be read and is a stream's size; one being written may be short,
/// which costs no more than one input.
fn read_small(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() == 0 || meta.len() > MAX_IMPORT as u64 {
        return None;
    }
    std::fs::read(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{Case, Edit, Intruder, Leave};

    fn case(data: &[u8]) -> Case {
        Case {
            seed: 0,
            edits: vec![Edit::Intruder(Intruder {
                data: data.to_vec(),
                chunk: None,
                leave: Leave::Close,
                echo: false,
                rcvbuf: None,
                mutated: true,
                focus: None,
            })],
        }
    }

    #[test]
    fn runs_share_their_queues_in_afl_layout_and_take_each_entry_once() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| SyncDir {
            dir: dir.path().to_path_buf(),
            name: name.into(),
        };
        let (mut a, mut b) = (Sync::new(at("a")).unwrap(), Sync::new(at("b")).unwrap());
        let qa = Queue::new(vec![b"seed".to_vec()], 4, Vec::new());
        qa.observe(&[1, 0, 0, 0], &case(b"found by a"), false);
        assert_eq!(a.export(&qa).unwrap(), 1);
        // Written once: the next export has nothing new.
        assert_eq!(a.export(&qa).unwrap(), 0);
        assert!(dir.path().join("a/queue/id:000000").is_file());
        // An AFL++ instance's queue is read the same way; other files are not.
        std::fs::create_dir_all(dir.path().join("afl/queue")).unwrap();
        std::fs::write(dir.path().join("afl/queue/id:000000,orig:x"), b"from afl").unwrap();
        std::fs::write(dir.path().join("afl/queue/.state"), b"not an entry").unwrap();
        assert_eq!(
            b.import().unwrap(),
            [b"found by a".to_vec(), b"from afl".to_vec()]
        );
        assert!(b.import().unwrap().is_empty());
        assert!(a.import().unwrap() == [b"from afl".to_vec()]);
    }
}
