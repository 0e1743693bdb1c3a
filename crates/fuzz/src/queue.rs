//! The queue of a coverage-guided run: the request streams intruding clients send, growing by
//! every stream whose input reached code no input reached before, and the edges seen so far.
//! Later inputs draw their bytes from it, the newest entries that reached new edges more often
//! than the rest (as AFL favours fresh queue entries), and mutate them near the place whose
//! change reached them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, RwLock};

use super::case::{Case, Edit};
use super::coverage::{Novelty, Virgin};
use super::mutate::{self, Corpus};

/// Entries counted as fresh: the newest that reached new edges, which half of the picks go to.
pub const FRESH: usize = 16;
/// The longest stream that can be fresh: in a long one a mutation seldom lands where it
/// matters, and a server's line or header limits make new edges of mere length.
pub const FRESH_LEN: usize = 1024;

/// Numbers swept in each new entry that reached new edges: those nearest where it changed.
pub const SWEEP_NUMBERS: usize = 3;
/// Sweeps waiting at most. They are made oldest first, as AFL runs its deterministic stages
/// on its queue in order: what the first entries (the seeds') lead to is what later ones
/// build on. An entry planned past these is mutated at random only.
pub const MAX_SWEEPS: usize = 1024;
/// Tries of a token sweep at most: on the words nearest the entry's change first.
pub const MAX_TOKEN_TRIES: usize = 2048;

/// An entry tried in order with one thing changed at a time, where random changes would seldom
/// hit the one that matters.
struct Sweep {
    data: Vec<u8>,
    what: Swept,
    next: u32,
}

enum Swept {
    /// A number tried with each of its bytes (the four low ones at least) set to each value in
    /// turn: a server that compares a parsed number with a constant byte by byte (split
    /// comparisons) reaches new code as each byte matches, high bytes first, and a sweep finds
    /// every such byte in at most 256 tries where random changes take thousands.
    Number {
        start: usize,
        end: usize,
        value: i128,
        /// 256 for each byte swept.
        steps: u32,
    },
    /// Each `--dict` token in place of each word (`start..end`), then written before it: a
    /// command's argument compared with a constant (a login token, a verb, a header name) is
    /// matched in words × tokens × 2 tries.
    Tokens { words: Vec<(usize, usize)> },
}

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
    offered: Mutex<VecDeque<Vec<u8>>>,
    /// Oldest first, and swept first.
    sweeps: Mutex<VecDeque<Sweep>>,
    /// The `--dict` tokens, which token sweeps write.
    dict: Vec<Vec<u8>>,
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
    /// Each stream's number, which stays as others are inserted before it.
    ids: Vec<u64>,
    /// For every edge an entry reached, the shortest entry that reaches it (length, number).
    top: BTreeMap<u32, (usize, u64)>,
    /// The edges each entry reached, by number.
    traces: HashMap<u64, Vec<u32>>,
    /// Where the favoured entries are: the seeds', and the fewest shortest others that between
    /// them reach every edge the queue reached, as AFL culls its queue.
    favoured: Vec<usize>,
}

impl Entries {
    /// Adds `data` at `at`, reaching the edges `trace`, and culls the queue again.
    fn add(&mut self, at: usize, data: Vec<u8>, focus: Option<usize>, trace: Vec<u32>) {
        let id = (self.ids.len() - self.given) as u64;
        for &edge in &trace {
            if self.top.get(&edge).is_none_or(|(len, _)| data.len() < *len) {
                self.top.insert(edge, (data.len(), id));
            }
        }
        self.traces.insert(id, trace);
        self.streams.insert(at, data);
        self.focus.insert(at, focus);
        self.ids.insert(at, id);
        let mut covered = BTreeSet::new();
        let mut chosen = BTreeSet::new();
        for (edge, (_, id)) in &self.top {
            if covered.contains(edge) {
                continue;
            }
            chosen.insert(*id);
            covered.extend(self.traces[id].iter().copied());
        }
        // An entry no edge is best reached by any more needs its trace no longer.
        let tops: BTreeSet<u64> = self.top.values().map(|(_, id)| *id).collect();
        self.traces.retain(|id, _| tops.contains(id));
        // The seeds' streams stay favoured: they are what the user says the protocol is.
        let given = self.given;
        self.favoured = (0..self.ids.len())
            .filter(|i| *i < given || chosen.contains(&self.ids[*i]))
            .collect();
    }
}

impl Queue {
    /// A queue that starts from the seeds' `streams`, for maps of `map` bytes, sweeping the
    /// tokens of `dict` over its entries' words. The seeds' streams are swept first.
    pub fn new(streams: Vec<Vec<u8>>, map: usize, dict: Vec<Vec<u8>>) -> Queue {
        let q = Queue {
            virgin: Mutex::new(Virgin::new(map)),
            entries: RwLock::new(Entries {
                given: streams.len(),
                focus: vec![None; streams.len()],
                // Numbers from the top down for the seeds', so that entries count up from 0.
                ids: (0..streams.len() as u64).map(|i| u64::MAX - i).collect(),
                favoured: (0..streams.len()).collect(),
                streams,
                ..Entries::default()
            }),
            map,
            offered: Mutex::new(VecDeque::new()),
            sweeps: Mutex::new(VecDeque::new()),
            dict,
        };
        let seeds = q
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .streams
            .clone();
        for s in &seeds {
            q.sweep(s, None, false);
        }
        q
    }

    /// Runs `f` with the streams to draw from, and `tokens` (the first `dict` from `--dict`).
    pub fn with_corpus<T>(
        &self,
        tokens: &[Vec<u8>],
        dict: usize,
        f: impl FnOnce(Corpus<'_>) -> T,
    ) -> T {
        let e = self.entries.read().unwrap_or_else(|e| e.into_inner());
        f(Corpus {
            streams: &e.streams,
            focus: &e.focus,
            fresh: e.fresh,
            favoured: &e.favoured,
            tokens,
            dict,
        })
    }

    /// Takes in the counts `case` left in the map; keeps its intruders' bytes when they were
    /// new (a case without an intruder adds nothing to draw from, but its edges count).
    /// `swept` says the case is a step of a sweep: what it reaches new is swept next, before
    /// all that waits, since a sweep that matched one byte of a comparison (or one token of a
    /// protocol) leads to the next, and a chain of them ends at what random changes miss.
    pub fn observe(&self, counts: &[u8], case: &Case, swept: bool) -> Novelty {
        let novelty = self
            .virgin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(counts);
        if novelty == Novelty::None {
            return novelty;
        }
        let trace: Vec<u32> = (0u32..)
            .zip(counts)
            .filter(|(_, c)| **c != 0)
            .map(|(i, _)| i)
            .collect();
        let mut e = self.entries.write().unwrap_or_else(|e| e.into_inner());
        for edit in &case.edits {
            let Edit::Intruder(i) = edit else { continue };
            if i.data.is_empty() || e.streams.contains(&i.data) {
                continue;
            }
            if novelty == Novelty::Edges && i.data.len() <= FRESH_LEN {
                let at = e.streams.len();
                e.add(at, i.data.clone(), i.focus, trace.clone());
                e.fresh = (e.fresh + 1).min(FRESH);
                self.sweep(&i.data, i.focus, swept);
            } else {
                // Kept, but behind the fresh ones, which stay last.
                let at = e.streams.len() - e.fresh;
                e.add(at, i.data.clone(), i.focus, trace.clone());
            }
        }
        novelty
    }

    /// Writes the queue's own entries (not the seeds') to `dir`, one file each, named as
    /// AFL++ names its queue (`id:000000`), so that they can seed another run or another
    /// fuzzer.
    pub fn save(&self, dir: &std::path::Path) -> std::io::Result<usize> {
        self.save_new(dir, &mut HashSet::new())
    }

    /// Writes to `dir` the queue's own entries whose numbers are not in `written` yet, and
    /// adds them there; how many.
    pub fn save_new(
        &self,
        dir: &std::path::Path,
        written: &mut HashSet<u64>,
    ) -> std::io::Result<usize> {
        let e = self.entries.read().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(dir)?;
        let mut n = 0;
        for (id, bytes) in e.ids.iter().zip(&e.streams).skip(e.given) {
            if written.contains(id) {
                continue;
            }
            // Written whole under another name first, so that a run reading the directory
            // never takes in half an entry.
            let name = format!("id:{id:06}");
            let part = dir.join(format!(".{name}"));
            std::fs::write(&part, bytes)?;
            std::fs::rename(&part, dir.join(name))?;
            written.insert(*id);
            n += 1;
        }
        Ok(n)
    }

    /// Plans sweeps of `data`: the dictionary's tokens over its words, then its numbers,
    /// both nearest `focus` (or its start) first; `first` before those waiting, else after.
    fn sweep(&self, data: &[u8], focus: Option<usize>, first: bool) {
        let focus = focus.unwrap_or(0);
        let distance = |(s, e): &(usize, usize)| {
            if focus < *s {
                s - focus
            } else {
                focus.saturating_sub(*e)
            }
        };
        let mut planned = Vec::new();
        if !self.dict.is_empty() {
            let mut words = mutate::word_spans(data);
            words.sort_by_key(distance);
            words.truncate((MAX_TOKEN_TRIES / (2 * self.dict.len())).max(1));
            planned.push(Swept::Tokens { words });
        }
        let mut runs = mutate::digit_runs(data);
        // Numbers a server would parse: whole words (not the digits of `k3y` or `7e`) of up
        // to 18 digits (longer ones do not fit a machine word).
        let letter = |i: usize| data.get(i).is_some_and(|b| b.is_ascii_alphabetic());
        runs.retain(|(s, e)| e - s <= 18 && !letter(*e) && !s.checked_sub(1).is_some_and(letter));
        runs.sort_by_key(distance);
        for (start, end) in runs.into_iter().take(SWEEP_NUMBERS) {
            let Some(value): Option<i128> = std::str::from_utf8(&data[start..end])
                .ok()
                .and_then(|t| t.parse().ok())
            else {
                continue;
            };
            // Every byte up to the highest that is set, and the four low ones: a 64-bit
            // comparison with a small constant needs the high bytes cleared first.
            let bytes = (0..16u32)
                .rev()
                .find(|k| value.abs() >> (8 * k) != 0)
                .unwrap_or(0);
            planned.push(Swept::Number {
                start,
                end,
                value,
                steps: 256 * (bytes + 1).max(4),
            });
        }
        let planned = planned.into_iter().map(|what| Sweep {
            data: data.to_vec(),
            what,
            next: 0,
        });
        let mut sweeps = self.sweeps.lock().unwrap_or_else(|e| e.into_inner());
        if first {
            // Past the limit too: a chain of sweeps is short, and each step of it has
            // reached something new.
            for sweep in planned.rev() {
                sweeps.push_front(sweep);
            }
        } else {
            let room = MAX_SWEEPS.saturating_sub(sweeps.len());
            sweeps.extend(planned.take(room));
        }
    }

    /// The next stream of the oldest sweep, and where its change ends; `None` when none is
    /// left.
    pub fn take_swept(&self) -> Option<(Vec<u8>, usize)> {
        let mut sweeps = self.sweeps.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let s = sweeps.front_mut()?;
            let step = s.next;
            s.next += 1;
            let (at, with) = match &s.what {
                Swept::Number {
                    start,
                    end,
                    value,
                    steps,
                } => {
                    if step >= *steps {
                        sweeps.pop_front();
                        continue;
                    }
                    let swept = mutate::with_byte(*value, step / 256, (step % 256) as u8);
                    if swept == *value {
                        continue;
                    }
                    (*start..*end, swept.to_string().into_bytes())
                }
                Swept::Tokens { words } => {
                    let tokens = self.dict.len() as u32;
                    let Some(&(start, end)) = words.get((step / (2 * tokens)) as usize) else {
                        sweeps.pop_front();
                        continue;
                    };
                    let token = &self.dict[(step / 2 % tokens) as usize];
                    let range = if step % 2 == 0 {
                        start..end
                    } else {
                        start..start
                    };
                    if s.data[range.clone()] == token[..] {
                        continue;
                    }
                    (range, token.clone())
                }
            };
            let mut data = s.data.clone();
            let last = (at.start + with.len()).saturating_sub(1);
            data.splice(at, with);
            return Some((data, last));
        }
    }

    /// Streams from elsewhere (another run's queue) to be sent once each as they are.
    pub fn offer(&self, streams: Vec<Vec<u8>>) {
        self.offered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(streams);
    }

    /// The next stream offered, if any.
    pub fn take_offered(&self) -> Option<Vec<u8>> {
        self.offered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
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
    fn the_fewest_shortest_entries_that_reach_every_edge_are_favoured() {
        let q = Queue::new(vec![b"seed".to_vec()], 4, Vec::new());
        q.observe(&[1, 0, 0, 0], &with_intruder(b"long one"), false);
        q.observe(&[1, 1, 0, 0], &with_intruder(b"longer one"), false);
        q.observe(&[4, 0, 0, 0], &with_intruder(b"a"), false);
        q.observe(&[0, 0, 1, 0], &with_intruder(b"third"), false);
        q.observe(&[2, 0, 0, 0], &with_intruder(b"bb"), false);
        q.with_corpus(&[], 0, |c| {
            let favoured: Vec<&[u8]> = c.favoured.iter().map(|i| &c.streams[*i][..]).collect();
            // The seed's, then "a", the shortest to reach edge 0, "longer one", alone to reach
            // edge 1, and "third", edge 2; "long one" and "bb" add nothing the others do not.
            assert_eq!(favoured, [&b"seed"[..], b"a", b"longer one", b"third"]);
        });
    }

    #[test]
    fn a_new_entry_has_its_numbers_swept_byte_by_byte() {
        let q = Queue::new(Vec::new(), 4, Vec::new());
        // The digits of a word are not a number to sweep.
        q.observe(&[1, 0, 0, 0], &with_intruder(b"LOGIN k3y\nSET 7\n"), false);
        let mut values = Vec::new();
        while let Some((data, at)) = q.take_swept() {
            assert!(data[at].is_ascii_digit());
            let text = String::from_utf8(data).unwrap();
            values.push(
                text["LOGIN k3y\nSET ".len()..]
                    .trim_end()
                    .parse::<i64>()
                    .unwrap(),
            );
        }
        // Every value of each low byte but the one it has: 4 * 255 of them, among them the
        // 4096..=4351 a server comparing with 4242 byte by byte first reaches new code with.
        assert_eq!(values.len(), 4 * 255);
        assert!(values.contains(&(0x10 * 256 + 7)));
        assert!(values.contains(&0) && values.contains(&(255 << 24 | 7)));

        // A number wider than four bytes has every byte swept, the high ones cleared too.
        q.observe(&[0, 1, 0, 0], &with_intruder(b"SET 1526843906906\n"), false);
        let mut n = 0;
        let mut cleared = false;
        while let Some((data, _)) = q.take_swept() {
            n += 1;
            let v: i64 = String::from_utf8(data).unwrap()[4..]
                .trim_end()
                .parse()
                .unwrap();
            // 0x163_7efd_1b5a: its highest byte, 0x01, cleared.
            cleared |= v == 0x63_7efd_1b5a;
        }
        assert_eq!(n, 6 * 255);
        assert!(cleared);
    }

    #[test]
    fn the_dictionary_is_swept_over_the_seeds_words_first() {
        let dict = vec![b"k3y-7e".to_vec(), b"QUIT".to_vec()];
        let q = Queue::new(vec![b"LOGIN guess\n".to_vec()], 4, dict);
        // A new entry's sweeps wait behind the seed's.
        q.observe(&[1, 0, 0, 0], &with_intruder(b"SET 7\n"), false);
        let mut tries = Vec::new();
        while let Some((data, at)) = q.take_swept() {
            tries.push((String::from_utf8(data).unwrap(), at));
        }
        let first: Vec<&str> = tries.iter().take(8).map(|(t, _)| &t[..]).collect();
        assert_eq!(
            first,
            [
                "k3y-7e guess\n",
                "k3y-7eLOGIN guess\n",
                "QUIT guess\n",
                "QUITLOGIN guess\n",
                "LOGIN k3y-7e\n",
                "LOGIN k3y-7eguess\n",
                "LOGIN QUIT\n",
                "LOGIN QUITguess\n",
            ]
        );
        // The focus is the token's last byte, where the next change is worth making.
        assert_eq!(tries[4].1, "LOGIN k3y-7e".len() - 1);
        // Then the entry's: its words, then its number.
        assert_eq!(tries[8].0, "k3y-7e 7\n");
        assert!(tries[9..].iter().any(|(t, _)| t == "SET k3y-7e\n"));
        assert_eq!(tries.last().unwrap().0, format!("SET {}\n", 0xff00_0007u32));
    }

    #[test]
    fn a_long_stream_is_kept_but_never_fresh() {
        let q = Queue::new(Vec::new(), 4, Vec::new());
        assert_eq!(
            q.observe(&[1, 0, 0, 0], &with_intruder(&[b'x'; FRESH_LEN + 1]), false),
            Novelty::Edges
        );
        q.with_corpus(&[], 0, |c| assert_eq!((c.streams.len(), c.fresh), (1, 0)));
    }

    #[test]
    fn only_inputs_that_reach_something_new_join_the_queue() {
        let q = Queue::new(vec![b"HELLO\n".to_vec()], 4, Vec::new());
        assert_eq!(
            q.observe(&[1, 0, 0, 0], &with_intruder(b"A"), false),
            Novelty::Edges
        );
        assert_eq!(
            q.observe(&[1, 0, 0, 0], &with_intruder(b"B"), false),
            Novelty::None
        );
        assert_eq!(
            q.observe(&[2, 0, 0, 0], &with_intruder(b"C"), false),
            Novelty::Counts
        );
        // New, but nothing to keep: its edges still count.
        let plain = Case {
            seed: 0,
            edits: Vec::new(),
        };
        assert_eq!(q.observe(&[0, 1, 0, 0], &plain, false), Novelty::Edges);
        // C only found a new bucket: kept, but before A, the fresh one.
        q.with_corpus(&[], 0, |c| {
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
