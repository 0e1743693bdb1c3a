//! The queue of a coverage-guided run: the request streams intruding clients send, growing by
//! every stream whose input reached code no input reached before, and the edges seen so far.
//! Later inputs draw their bytes from it, the newest entries that reached new edges more often
//! than the rest (as AFL favours fresh queue entries), and mutate them near the place whose
//! change reached them.

use std::sync::{Mutex, RwLock};

use super::case::{Case, Edit};
use super::coverage::{Novelty, Virgin};
use super::mutate::Corpus;

/// Entries counted as fresh: the newest that reached new edges, which half of the picks go to.
pub const FRESH: usize = 16;
/// The longest stream that can be fresh: in a long one a mutation seldom lands where it
/// matters, and a server's line or header limits make new edges of mere length.
pub const FRESH_LEN: usize = 1024;

/// Coverage so far, for progress lines and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoverageStats {
    /// Edges some input reached.
    pub edges: usize,
    /// The size of the server's map (its edges at most).
    pub map: usize,
    /// Streams in the queue beyond the seeds' own.
    pub queue: usize,
}

/// The shared state of a guided run.
pub struct Queue {
    virgin: Mutex<Virgin>,
    entries: RwLock<Entries>,
    map: usize,
}

/// The streams to draw from: the seeds' first, then the queue's, oldest first, with those
/// that reached new edges last (the fresh ones).
#[derive(Default)]
struct Entries {
    streams: Vec<Vec<u8>>,
    focus: Vec<Option<usize>>,
    /// How many are the seeds' own.
    given: usize,
    /// How many of the last reached new edges (at most [`FRESH`] are counted).
    fresh: usize,
}

impl Queue {
    /// A queue that starts from the seeds' `streams`, for maps of `map` bytes.
    pub fn new(streams: Vec<Vec<u8>>, map: usize) -> Queue {
        Queue {
            virgin: Mutex::new(Virgin::new(map)),
            entries: RwLock::new(Entries {
                given: streams.len(),
                focus: vec![None; streams.len()],
                streams,
                fresh: 0,
            }),
            map,
        }
    }

    /// Runs `f` with the streams to draw from, and `tokens`.
    pub fn with_corpus<T>(&self, tokens: &[Vec<u8>], f: impl FnOnce(Corpus<'_>) -> T) -> T {
        let e = self.entries.read().unwrap_or_else(|e| e.into_inner());
        f(Corpus {
            streams: &e.streams,
            focus: &e.focus,
            fresh: e.fresh,
            tokens,
        })
    }

    /// Takes in the counts `case` left in the map; keeps its intruders' bytes when they were
    /// new (a case without an intruder adds nothing to draw from, but its edges count).
    pub fn observe(&self, counts: &[u8], case: &Case) -> Novelty {
        let novelty = self
            .virgin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(counts);
        if novelty == Novelty::None {
            return novelty;
        }
        let mut e = self.entries.write().unwrap_or_else(|e| e.into_inner());
        for edit in &case.edits {
            let Edit::Intruder(i) = edit else { continue };
            if i.data.is_empty() || e.streams.contains(&i.data) {
                continue;
            }
            if novelty == Novelty::Edges && i.data.len() <= FRESH_LEN {
                e.streams.push(i.data.clone());
                e.focus.push(i.focus);
                e.fresh = (e.fresh + 1).min(FRESH);
            } else {
                // Kept, but behind the fresh ones, which stay last.
                let at = e.streams.len() - e.fresh;
                e.streams.insert(at, i.data.clone());
                e.focus.insert(at, i.focus);
            }
        }
        novelty
    }

    /// Writes the queue's own entries (not the seeds') to `dir`, one file each, named as
    /// AFL++ names its queue (`id:000000`), so that they can seed another run or another
    /// fuzzer.
    pub fn save(&self, dir: &std::path::Path) -> std::io::Result<usize> {
        let e = self.entries.read().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(dir)?;
        for (i, bytes) in e.streams[e.given..].iter().enumerate() {
            std::fs::write(dir.join(format!("id:{i:06}")), bytes)?;
        }
        Ok(e.streams.len() - e.given)
    }

    /// Coverage so far.
    pub fn stats(&self) -> CoverageStats {
        let e = self.entries.read().unwrap_or_else(|e| e.into_inner());
        CoverageStats {
            edges: self
                .virgin
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .edges(),
            map: self.map,
            queue: e.streams.len() - e.given,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{Intruder, Leave};

    fn with_intruder(data: &[u8]) -> Case {
        Case {
            seed: 0,
            edits: vec![Edit::Intruder(Intruder {
                data: data.to_vec(),
                chunk: None,
                leave: Leave::Close,
                echo: false,
                rcvbuf: None,
                mutated: true,
                focus: Some(0),
            })],
        }
    }

    #[test]
    fn a_long_stream_is_kept_but_never_fresh() {
        let q = Queue::new(Vec::new(), 4);
        assert_eq!(
            q.observe(&[1, 0, 0, 0], &with_intruder(&[b'x'; FRESH_LEN + 1])),
            Novelty::Edges
        );
        q.with_corpus(&[], |c| assert_eq!((c.streams.len(), c.fresh), (1, 0)));
    }

    #[test]
    fn only_inputs_that_reach_something_new_join_the_queue() {
        let q = Queue::new(vec![b"HELLO\n".to_vec()], 4);
        assert_eq!(
            q.observe(&[1, 0, 0, 0], &with_intruder(b"A")),
            Novelty::Edges
        );
        assert_eq!(
            q.observe(&[1, 0, 0, 0], &with_intruder(b"B")),
            Novelty::None
        );
        assert_eq!(
            q.observe(&[2, 0, 0, 0], &with_intruder(b"C")),
            Novelty::Counts
        );
        // New, but nothing to keep: its edges still count.
        let plain = Case {
            seed: 0,
            edits: Vec::new(),
        };
        assert_eq!(q.observe(&[0, 1, 0, 0], &plain), Novelty::Edges);
        // C only found a new bucket: kept, but before A, the fresh one.
        q.with_corpus(&[], |c| {
            assert_eq!(
                c.streams,
                [b"HELLO\n".to_vec(), b"C".to_vec(), b"A".to_vec()]
            );
            assert_eq!(c.focus, [None, Some(0), Some(0)]);
            assert_eq!(c.fresh, 1);
        });
        assert_eq!(
            q.stats(),
            CoverageStats {
                edges: 2,
                map: 4,
                queue: 2
            }
        );
    }
}
