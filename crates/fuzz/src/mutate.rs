//! The seeded generator of cases: which edits to make to which seed, and the payload mutations
//! (bit flips, truncation, insertion, splicing) of intruding clients' bytes. Case `i` of a run
//! with seed `s` depends on `s` and `i` alone, so `--seed` reproduces a run whatever the number
//! of workers.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use sockharness::script::{Endpoint, Property, SendMode, Statement, Value};

use super::case::{Case, Edit, Intruder, Leave, Seed};

/// Pieces a chunked send is cut into at most: more would make a case slow, not harder.
const MAX_PIECES: u64 = 256;
/// Pieces of a send that may have gaps between them; past this the gaps are dropped.
const MAX_GAPPED_PIECES: u64 = 32;
/// Bytes an intruding client sends at most, so that what it sends fits the socket buffers of a
/// server that does not read it.
const MAX_INTRUDER: usize = 64 * 1024;

/// What the generator may touch in a seed, found once per seed.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Blocking sends of at least two bytes, with their lengths.
    sends: Vec<(usize, u64)>,
    /// Connects to a target whose sockets' queue sizes the seed does not check.
    connects: Vec<usize>,
    /// Reads.
    recvs: Vec<usize>,
    /// Sends after which their socket may half-close: each client's last, in the foreground,
    /// whatever the seed does with the socket later (a server must answer a request followed
    /// at once by a FIN as it answers one followed by a FIN later). Not where the seed checks
    /// the socket's state, which a half-close changes, nor where another client sends after it:
    /// what the client reads then may be the others' doing, which a server may rightly stop
    /// passing on to a client that said it is done (a chat member that left).
    half_closes: Vec<usize>,
    /// How often the generator picks this seed, relative to the others: fast seeds more often,
    /// so that a slow seed does not hold the run back.
    pub weight: f64,
}

impl Shape {
    /// Finds what can be edited in `seed`.
    pub fn of(seed: &Seed) -> Shape {
        let steps = &seed.scenario.steps;
        let targets = super::seed::target_names(&seed.scenario);
        let mut shape = Shape {
            weight: 1.0,
            ..Shape::default()
        };
        // Sockets whose buffer sizes show in the seed's checks: a small rcvbuf would change them.
        let sized: Vec<&str> = steps
            .iter()
            .filter_map(|s| match &s.statement {
                Statement::ExpectProperty {
                    subject,
                    property: Property::Unread | Property::Unsent | Property::Queued,
                    ..
                } => Some(subject.as_str()),
                Statement::ExpectProperty {
                    value: Value::Property(other, _),
                    ..
                } => Some(other.as_str()),
                _ => None,
            })
            .collect();
        // Sockets whose TCP state the seed checks.
        let stated: Vec<&str> = steps
            .iter()
            .filter_map(|s| match &s.statement {
                Statement::ExpectProperty {
                    subject,
                    property: Property::State,
                    ..
                } => Some(subject.as_str()),
                _ => None,
            })
            .collect();
        for (i, step) in steps.iter().enumerate() {
            match &step.statement {
                Statement::Send {
                    data,
                    mode: SendMode::Blocking { .. },
                    socket,
                    ..
                } => {
                    if data.len() >= 2 {
                        shape.sends.push((i, data.len()));
                    }
                    let sends_again = steps[i + 1..]
                        .iter()
                        .any(|s| matches!(&s.statement, Statement::Send { .. }));
                    // Past a close, or an abort, there is nothing left to half-close.
                    let closed_before = steps[..i].iter().any(|s| {
                        matches!(&s.statement, Statement::Shutdown { socket: o, .. } | Statement::Close { socket: o } | Statement::Abort { socket: o } if o == socket)
                    });
                    if !sends_again
                        && !closed_before
                        && step.background.is_none()
                        && !stated.contains(&socket.as_str())
                    {
                        shape.half_closes.push(i);
                    }
                }
                Statement::Connect {
                    name,
                    to: Endpoint::Name(to),
                    ..
                } if targets.contains(to) && !sized.contains(&name.as_str()) => {
                    shape.connects.push(i)
                }
                Statement::Recv { .. } => shape.recvs.push(i),
                _ => {}
            }
        }
        shape
    }
}

/// The random source of one case.
pub fn rng_for(run_seed: u64, case: u64) -> ChaCha8Rng {
    // SplitMix-style mixing so neighbouring cases get unrelated streams.
    let mut z = run_seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

/// What intruders' bytes are drawn from.
#[derive(Debug, Clone, Copy)]
pub struct Corpus<'a> {
    /// Request streams.
    pub streams: &'a [Vec<u8>],
    /// For each stream, where its next mutations are best made (see [`Intruder::focus`]).
    pub focus: &'a [Option<usize>],
    /// Streams counted as fresh: the last ones, the very last of which is drawn a quarter of
    /// the time and the others another quarter. With fresh streams (a coverage-guided run),
    /// every case has an intruder: its bytes are what the coverage is of.
    pub fresh: usize,
    /// Where the favoured streams are: the fewest, shortest, that between them reach every edge
    /// reached so far. Most picks that are not of fresh streams are of these.
    pub favoured: &'a [usize],
    /// Words the server may compare its input with: from `--dict`, the seeds and the server's
    /// answers. Mutations write them into the bytes.
    pub tokens: &'a [Vec<u8>],
    /// How many of `tokens`, from the first, came from `--dict`: what the user or the
    /// compiler knows the server compares. Half of the tokens written are of these.
    pub dict: usize,
}

impl<'a> Corpus<'a> {
    /// Streams drawn alike, with nowhere to focus.
    pub fn plain(streams: &'a [Vec<u8>]) -> Corpus<'a> {
        Corpus {
            streams,
            focus: &[],
            fresh: 0,
            favoured: &[],
            tokens: &[],
            dict: 0,
        }
    }

    /// One stream, and where to focus on it.
    fn pick(&self, rng: &mut ChaCha8Rng) -> Option<(Vec<u8>, Option<usize>)> {
        let n = self.streams.len();
        if n == 0 {
            return None;
        }
        // The newest a quarter of the time and the other fresh ones another quarter: what just
        // reached new code is where more is likely to be found next, as AFL spends its effort
        // on a new queue entry first. The rest mostly go to the favoured streams, which reach
        // all that the others do, with fewer bytes to spend mutations on.
        let fresh = self.fresh.min(n);
        let favoured = self.favoured.iter().filter(|i| **i < n).count();
        let i = match rng.random_range(0..5) {
            0 if fresh > 0 => n - 1,
            1 if fresh > 0 => rng.random_range(n - fresh..n),
            2 | 3 if favoured > 0 => self.favoured[rng.random_range(0..favoured)],
            _ => rng.random_range(0..n),
        };
        Some((
            self.streams[i].clone(),
            self.focus.get(i).copied().flatten(),
        ))
    }
}

/// Makes case number `index`: a seed, and one to three edits of it, intruders' bytes drawn from
/// `corpus`.
pub fn generate(
    run_seed: u64,
    index: u64,
    seeds: &[Seed],
    shapes: &[Shape],
    corpus: Corpus<'_>,
    echo: bool,
) -> Case {
    let mut rng = rng_for(run_seed, index);
    let total: f64 = shapes.iter().map(|s| s.weight).sum();
    let mut pick = rng.random_range(0.0..total.max(f64::MIN_POSITIVE));
    let seed = shapes
        .iter()
        .position(|s| {
            pick -= s.weight;
            pick < 0.0
        })
        // Rounding may leave a sliver past the last weight: take the last seed in use.
        .unwrap_or_else(|| shapes.iter().rposition(|s| s.weight > 0.0).unwrap_or(0));
    let shape = &shapes[seed];
    let crowd_ok = seeds[seed]
        .plain
        .as_ref()
        .is_some_and(|p| p.independent && p.baseline.exchange().is_some() && !p.request.is_empty());
    if crowd_ok && rng.random_bool(0.15) {
        let len = seeds[seed]
            .plain
            .as_ref()
            .map_or(1, |p| p.request.len() as u64);
        let min = len.div_ceil(16).max(1);
        return Case {
            seed,
            edits: vec![Edit::Crowd {
                clients: rng.random_range(2..=4),
                chunk: rng.random_range(min..=len.max(min)),
                gap: gap(&mut rng),
            }],
        };
    }
    let n = [1, 1, 1, 2, 2, 3][rng.random_range(0..6)];
    let mut edits = Vec::with_capacity(n);
    for _ in 0..n * 4 {
        if edits.len() == n {
            break;
        }
        let edit = match rng.random_range(0..100) {
            0..40 if !shape.sends.is_empty() => {
                let (step, len) = shape.sends[rng.random_range(0..shape.sends.len())];
                let min = len.div_ceil(MAX_PIECES).max(1);
                let chunk = if rng.random_bool(0.5) {
                    min
                } else {
                    rng.random_range(min..len.max(min + 1))
                };
                let gap = if len.div_ceil(chunk) <= MAX_GAPPED_PIECES {
                    gap(&mut rng)
                } else {
                    Duration::ZERO
                };
                Edit::Chunk { step, chunk, gap }
            }
            40..50 if !shape.recvs.is_empty() => Edit::Pause {
                step: shape.recvs[rng.random_range(0..shape.recvs.len())],
                pause: Duration::from_millis(rng.random_range(1..=10)),
            },
            50..60 if !shape.connects.is_empty() => Edit::RcvBuf {
                step: shape.connects[rng.random_range(0..shape.connects.len())],
                size: [1024, 2048, 4096][rng.random_range(0..3)],
            },
            60..70 if !shape.half_closes.is_empty() => Edit::HalfClose {
                step: shape.half_closes[rng.random_range(0..shape.half_closes.len())],
            },
            70..100 => Edit::Intruder(intruder(&mut rng, corpus, echo)),
            _ => continue,
        };
        if !edits.contains(&edit) {
            edits.push(edit);
        }
    }
    let intrudes = edits.iter().any(|e| matches!(e, Edit::Intruder(_)));
    if edits.is_empty() || (corpus.fresh > 0 && !intrudes) {
        edits.push(Edit::Intruder(intruder(&mut rng, corpus, echo)));
    }
    Case { seed, edits }
}

/// Makes a case from a fuzz engine's bytes (libFuzzer's, through cargo-fuzz), deterministically
/// and so that one changed byte changes one decision, which lets the engine's own coverage guide
/// it:
///
/// - byte 0 picks the seed (of those with a weight), byte 1's low two bits how many edits
///   follow (0 to 3), each three bytes: its kind, which statement, and a parameter;
/// - a byte past them says how an intruding client leaves (its low two bits: close,
///   half-close, reset, stall) and what it sends (the next two: the rest of the bytes, or a
///   seed's request stream, picked by the top bits, followed by them or with them inserted);
///   with `echo`, its top two bits both set make it a big echo through a slow reader.
///
/// Fewer bytes make fewer decisions: none at all is the seed unchanged.
pub fn decode(
    data: &[u8],
    seeds: &[Seed],
    shapes: &[Shape],
    streams: &[Vec<u8>],
    echo: bool,
) -> Case {
    let live: Vec<usize> = (0..shapes.len())
        .filter(|&i| shapes[i].weight > 0.0)
        .collect();
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let seed = match live.len() {
        0 => 0,
        n => live[usize::from(byte(0)) % n],
    };
    let shape = &shapes[seed];
    let n = usize::from(byte(1) & 3);
    let mut edits: Vec<Edit> = Vec::new();
    let mut at = 2;
    for _ in 0..n {
        let Some(&[kind, pick, param]) = data
            .get(at..at + 3)
            .and_then(|b| <&[u8; 3]>::try_from(b).ok())
        else {
            break;
        };
        at += 3;
        let one = |list: &[usize]| (!list.is_empty()).then(|| list[usize::from(pick) % list.len()]);
        let edit = match kind % 5 {
            0 => (!shape.sends.is_empty()).then(|| {
                let (step, len) = shape.sends[usize::from(pick) % shape.sends.len()];
                let min = len.div_ceil(MAX_PIECES).max(1);
                let chunk = (1 + u64::from(param) % len).max(min);
                let gap = if len.div_ceil(chunk) <= MAX_GAPPED_PIECES {
                    [0, 0, 0, 0, 200, 500, 1000, 2000].map(Duration::from_micros)
                        [usize::from(pick >> 5)]
                } else {
                    Duration::ZERO
                };
                Edit::Chunk { step, chunk, gap }
            }),
            1 => one(&shape.recvs).map(|step| Edit::Pause {
                step,
                pause: Duration::from_millis(1 + u64::from(param) % 10),
            }),
            2 => one(&shape.connects).map(|step| Edit::RcvBuf {
                step,
                size: [1024, 2048, 4096][usize::from(param) % 3],
            }),
            3 => one(&shape.half_closes).map(|step| Edit::HalfClose { step }),
            _ => {
                let crowd = seeds[seed].plain.as_ref().filter(|p| {
                    p.independent && p.baseline.exchange().is_some() && !p.request.is_empty()
                });
                if let Some(p) = crowd {
                    let len = p.request.len() as u64;
                    return Case {
                        seed,
                        edits: vec![Edit::Crowd {
                            clients: 2 + u32::from(pick) % 3,
                            chunk: (1 + u64::from(param) % len).max(len.div_ceil(16)),
                            gap: Duration::ZERO,
                        }],
                    };
                }
                None
            }
        };
        if let Some(e) = edit.filter(|e| !edits.contains(e)) {
            edits.push(e);
        }
    }
    if let Some(&how) = data.get(at) {
        let rest = &data[at + 1..];
        let stream = (!streams.is_empty()).then(|| &streams[usize::from(how >> 4) % streams.len()]);
        let mut bytes = match ((how >> 2) & 3, stream) {
            (2, Some(s)) => [s.as_slice(), rest].concat(),
            (3, Some(s)) => {
                let cut = rest.first().map_or(0, |&b| usize::from(b) % (s.len() + 1));
                [&s[..cut], rest.get(1..).unwrap_or(&[]), &s[cut..]].concat()
            }
            _ => rest.to_vec(),
        };
        let leave =
            [Leave::Close, Leave::HalfClose, Leave::Abort, Leave::Stall][usize::from(how & 3)];
        let mut rcvbuf = None;
        if echo && how >> 6 == 3 && !bytes.is_empty() {
            bytes = sockharness::script::Data::Pattern(256 << 10).bytes();
            rcvbuf = Some(4096);
        }
        if leave == Leave::Stall {
            // As the generator's: silent inside its first line.
            let line = bytes
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(bytes.len());
            bytes.truncate(line);
        }
        bytes.truncate(MAX_INTRUDER);
        if !bytes.is_empty() {
            edits.push(Edit::Intruder(Intruder {
                mutated: !streams.contains(&bytes),
                data: bytes,
                chunk: None,
                leave,
                echo,
                rcvbuf: rcvbuf.filter(|_| matches!(leave, Leave::Close | Leave::HalfClose)),
                focus: None,
            }));
        }
    }
    Case { seed, edits }
}

fn gap(rng: &mut ChaCha8Rng) -> Duration {
    // Mostly none: a gap costs at least a timer tick (1ms), and pieces written back to back
    // already reach a busy server in separate reads often enough.
    [0, 0, 0, 0, 0, 0, 200, 500, 1000, 2000].map(Duration::from_micros)[rng.random_range(0..10)]
}

fn intruder(rng: &mut ChaCha8Rng, corpus: Corpus<'_>, echo: bool) -> Intruder {
    let (mut data, mut focus) = corpus.pick(rng).unwrap_or_else(|| {
        (
            (0..rng.random_range(1..64)).map(|_| rng.random()).collect(),
            None,
        )
    });
    let original = data.clone();
    // A stream the queue focuses on is always changed, as it is it found all it will, and
    // mostly in one place: a second change elsewhere would often undo what the first needs.
    let focused = focus.is_some();
    if focused || rng.random_bool(0.6) {
        let times = if focused && rng.random_bool(0.7) {
            1
        } else {
            rng.random_range(1..=3)
        };
        for _ in 0..times {
            focus = mutate(rng, &mut data, corpus, focus).or(focus);
        }
    }
    let mutated = data != original;
    let mut rcvbuf = None;
    if echo && rng.random_bool(0.15) && !data.is_empty() {
        // A big echo through a slow reader: the server's writes come back short.
        let size = [256 << 10, 1 << 20, 4 << 20][rng.random_range(0..3)];
        data = sockharness::script::Data::Pattern(size).bytes();
        rcvbuf = rng.random_bool(0.5).then_some(4096);
    } else {
        data.truncate(MAX_INTRUDER);
    }
    // A focused stream is sent whole: cut short, it would lose what its change reached.
    let leave = match rng.random_range(0..10) {
        0..3 => Leave::Close,
        3..5 => Leave::HalfClose,
        _ if focused => Leave::Close,
        5..8 => Leave::Abort,
        _ => Leave::Stall,
    };
    if matches!(leave, Leave::Abort | Leave::Stall) && data.len() > 1 {
        // Gone, or silent, part-way through a request; and never more than fits the buffers
        // of a server that stops reading, since nobody reads its answer. A client that stalls
        // while the seed runs stops inside its first line, so that no whole command of a line
        // protocol takes effect before the seed's.
        let line = match leave {
            Leave::Stall => data.iter().position(|&b| b == b'\n').unwrap_or(data.len()),
            _ => data.len(),
        };
        data.truncate(rng.random_range(1..line.max(2)).min(MAX_INTRUDER));
        rcvbuf = None;
    }
    let chunk = (data.len() > 1 && rng.random_bool(0.3)).then(|| {
        rng.random_range(1..data.len() as u64)
            .max((data.len() as u64).div_ceil(MAX_PIECES))
    });
    Intruder {
        focus: focus.filter(|&f| mutated && f < data.len()),
        data,
        chunk,
        leave,
        echo,
        rcvbuf,
        mutated,
    }
}

/// The words of `bytes` worth trying elsewhere: runs of letters, digits, `_` and `-` of 3 to 32
/// bytes (commands, header names, keywords), each once, at most `max`.
pub fn words(bytes: &[u8], into: &mut Vec<Vec<u8>>, max: usize) {
    for w in bytes.split(|b| !is_word(b)) {
        if into.len() >= max {
            return;
        }
        if (3..=32).contains(&w.len()) && !into.iter().any(|t| t == w) {
            into.push(w.to_vec());
        }
    }
}

/// Reads an AFL dictionary: one token per line, `name="value"` or `"value"` (a name may end in
/// `@LEVEL`), with `\\`, `\"` and `\xNN` escapes; blank lines and `#` comments are skipped.
pub fn parse_dict(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {line}", n + 1);
        let (Some(open), Some(close)) = (line.find('"'), line.rfind('"')) else {
            return Err(bad("expected a value in double quotes"));
        };
        if close <= open {
            return Err(bad("the value is not closed"));
        }
        let mut value = Vec::new();
        let mut chars = line[open + 1..close].bytes();
        while let Some(b) = chars.next() {
            if b != b'\\' {
                value.push(b);
                continue;
            }
            match chars.next() {
                Some(b'x') => {
                    let hex: Vec<u8> = chars.by_ref().take(2).collect();
                    let hex = std::str::from_utf8(&hex).ok();
                    let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                    value.push(byte.ok_or_else(|| bad("`\\x` needs two hex digits"))?);
                }
                Some(c @ (b'\\' | b'"')) => value.push(c),
                _ => return Err(bad("unknown escape")),
            }
        }
        if !value.is_empty() {
            tokens.push(value);
        }
    }
    Ok(tokens)
}

/// Bytes that parsers of text protocols treat specially.
const TOKENS: [&[u8]; 12] = [
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b"\0",
    b"\xff",
    b"%s%n",
    b"-1",
    b"4294967296",
    b"Content-Length: 99999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b" ",
    b":",
];

/// Where the decimal numbers in `data` are: each run of digits, from its first byte to past
/// its last.
pub fn digit_runs(data: &[u8]) -> Vec<(usize, usize)> {
    runs(data, u8::is_ascii_digit)
}

/// Whether `b` belongs to a word: a command, an argument, a header's name or value.
fn is_word(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-'
}

/// Where the words of `data` are, as [`digit_runs`] finds numbers.
pub fn word_spans(data: &[u8]) -> Vec<(usize, usize)> {
    runs(data, is_word)
}

/// Each run of bytes that are `of`, from its first byte to past its last.
fn runs(data: &[u8], of: impl Fn(&u8) -> bool) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if of(&data[i]) {
            let start = i;
            while i < data.len() && of(&data[i]) {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    runs
}

/// `n` with byte `k` (from the lowest) of its magnitude set to `byte`, its sign kept.
pub fn with_byte(n: i128, k: u32, byte: u8) -> i128 {
    let shift = 8 * k;
    let magnitude = (n.abs() & !(0xff << shift)) | (i128::from(byte) << shift);
    if n < 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// One payload mutation of `data`, in place: bit flips, a byte set (to any value, or to one of
/// the digits and letters text protocols compare), a decimal number changed, truncation,
/// insertion (random bytes, a token, a repeated slice, a long run), or splicing with another
/// stream, or one of the corpus's tokens written over the bytes or between them. Half the
/// byte-level changes are made within a few bytes of `focus`, where a change last reached new
/// code. Returns where it changed `data`, for the byte-level ones.
pub fn mutate(
    rng: &mut ChaCha8Rng,
    data: &mut Vec<u8>,
    corpus: Corpus<'_>,
    focus: Option<usize>,
) -> Option<usize> {
    let streams = corpus.streams;
    let at = move |rng: &mut ChaCha8Rng, len: usize| match focus {
        Some(f) if len > 0 && rng.random_bool(0.5) => {
            (f + rng.random_range(0..=4)).saturating_sub(2).min(len - 1)
        }
        _ => rng.random_range(0..len.max(1)),
    };
    match rng.random_range(0..11) {
        8 | 10 => return number(rng, data, focus),
        9 if !corpus.tokens.is_empty() => {
            let dict = corpus.dict.min(corpus.tokens.len());
            let from = if dict > 0 && rng.random_bool(0.5) {
                0..dict
            } else {
                0..corpus.tokens.len()
            };
            let token = &corpus.tokens[rng.random_range(from)];
            let mut i = at(rng, data.len() + 1).min(data.len());
            let end = match rng.random_range(0..3) {
                // In place of the word at `i`: a command's argument, a header's value.
                0 => {
                    while i > 0 && is_word(&data[i - 1]) {
                        i -= 1;
                    }
                    let mut end = i;
                    while end < data.len() && is_word(&data[end]) {
                        end += 1;
                    }
                    end
                }
                // Over the bytes at `i`.
                1 => (i + token.len()).min(data.len()),
                // Between them.
                _ => i,
            };
            data.splice(i..end, token.iter().copied());
            return Some((i + token.len()).min(data.len()).saturating_sub(1));
        }
        0 if !data.is_empty() => {
            let i = at(rng, data.len());
            for _ in 0..rng.random_range(1..=4) {
                data[i] ^= 1 << rng.random_range(0..8);
            }
            return Some(i);
        }
        1 if data.len() > 1 => data.truncate(rng.random_range(1..data.len())),
        2 => {
            let at = at(rng, data.len() + 1).min(data.len());
            let token = TOKENS[rng.random_range(0..TOKENS.len())];
            data.splice(at..at, token.iter().copied());
        }
        3 if !data.is_empty() => {
            // A slice repeated: long lines, many pipelined requests, big headers.
            let from = rng.random_range(0..data.len());
            let to = rng.random_range(from + 1..=data.len());
            let times = [2, 8, 64, 1024][rng.random_range(0..4)];
            let piece = data[from..to].to_vec();
            let at = rng.random_range(0..=data.len());
            let room = MAX_INTRUDER.saturating_sub(data.len()) / piece.len().max(1);
            let insert: Vec<u8> = piece
                .iter()
                .copied()
                .cycle()
                .take(piece.len() * times.min(room.max(1)))
                .collect();
            data.splice(at..at, insert);
        }
        4 if !streams.is_empty() => {
            let other = &streams[rng.random_range(0..streams.len())];
            let cut = rng.random_range(0..=data.len());
            let from = rng.random_range(0..=other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        6 if !data.is_empty() => {
            let i = at(rng, data.len());
            data[i] = rng.random();
            return Some(i);
        }
        7 if !data.is_empty() => {
            const TEXT: &[u8] =
                b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ -_./:";
            let i = at(rng, data.len());
            data[i] = TEXT[rng.random_range(0..TEXT.len())];
            return Some(i);
        }
        _ => {
            let at = at(rng, data.len() + 1).min(data.len());
            let n = rng.random_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(at..at, bytes);
        }
    }
    None
}

/// Replaces a decimal number in `data` (the one at `focus`, else any) with another: a value
/// protocols treat specially, one near it, or one of a random number of digits. A server that
/// branches on a number it parsed is reached this way, where byte flips would seldom keep the
/// text a number.
fn number(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, focus: Option<usize>) -> Option<usize> {
    let runs = digit_runs(data);
    let near = focus.and_then(|f| runs.iter().find(|(s, e)| *s <= f + 1 && f <= *e));
    let focused = near.is_some() && rng.random_bool(0.75);
    let (start, end) = match near {
        Some(r) if focused => *r,
        // A number where there was none, in place of the word at the focus (or anywhere): an
        // argument a command parses as a number may hold anything but digits when its
        // command was first reached.
        _ if runs.is_empty() || rng.random_bool(0.25) => {
            if data.is_empty() {
                return None;
            }
            let gap = |b: &u8| b.is_ascii_whitespace();
            let mut start = match focus {
                Some(f) if rng.random_bool(0.5) => f.min(data.len() - 1),
                _ => rng.random_range(0..data.len()),
            };
            while start > 0 && !gap(&data[start - 1]) {
                start -= 1;
            }
            let mut end = start;
            while end < data.len() && !gap(&data[end]) {
                end += 1;
            }
            (start, end)
        }
        _ => runs[rng.random_range(0..runs.len())],
    };
    let old: i128 = std::str::from_utf8(&data[start..end])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    const SPECIAL: [i128; 12] = [
        0,
        1,
        -1,
        127,
        255,
        256,
        32767,
        65535,
        65536,
        2_147_483_647,
        4_294_967_295,
        4_294_967_296,
    ];
    // On the number whose last change reached new code, mostly a step from it: a server that
    // compares it byte by byte (split comparisons) is matched one byte at a time.
    let near_weight = if focused { 5 } else { 3 };
    let new = match rng.random_range(0..10) {
        0..2 => SPECIAL[rng.random_range(0..SPECIAL.len())],
        2..4 => {
            // One byte of the value set at random, as a byte flip does to a binary integer: a
            // server that compares the parsed number byte by byte (split comparisons) is
            // matched one byte at a time, the high ones first, which steps seldom reach.
            with_byte(old, rng.random_range(0..4u32), rng.random())
        }
        r if r < 4 + near_weight => {
            // Mostly small steps, as AFL's arithmetic makes, sometimes up to a byte's range.
            let most = if rng.random_bool(0.5) { 16 } else { 256 };
            let step = rng.random_range(1..=most);
            if rng.random_bool(0.5) {
                old + step
            } else {
                old - step
            }
        }
        _ => {
            let digits = rng.random_range(1..=6);
            rng.random_range(0..10i128.pow(digits))
        }
    };
    let text = new.to_string();
    let spot = start + text.len().saturating_sub(1);
    data.splice(start..end, text.into_bytes());
    Some(spot.min(data.len().saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the first number in `data`.
    fn first_number(data: &[u8]) -> Option<i128> {
        let text = String::from_utf8_lossy(data);
        let digits: String = text
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }

    #[test]
    fn a_number_compared_byte_by_byte_is_matched_a_byte_at_a_time() {
        // `n == 4242` split into byte comparisons: first n's second byte must be 0x10
        // (4096..=4351), then from there the low byte must be 0x92.
        let reaches = |from: &[u8], ok: &dyn Fn(i128) -> bool| {
            (0..2000).any(|i| {
                let mut rng = rng_for(11, i);
                let mut d = from.to_vec();
                number(&mut rng, &mut d, Some(4));
                first_number(&d).is_some_and(ok)
            })
        };
        assert!(reaches(b"SET 7\n", &|n| n >> 8 == 0x10));
        assert!(reaches(b"SET 4100\n", &|n| n == 4242));
        // Where the argument is no number yet, one is written in its place.
        assert!(reaches(b"SET \"x\n", &|n| n >> 8 == 0x10));
    }

    #[test]
    fn mutations_change_the_bytes_and_stay_bounded() {
        let streams = vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()];
        let mut changed = 0;
        for i in 0..500 {
            let mut rng = rng_for(7, i);
            let mut d = streams[0].clone();
            mutate(&mut rng, &mut d, Corpus::plain(&streams), None);
            changed += usize::from(d != streams[0]);
            assert!(d.len() <= MAX_INTRUDER + 64);
        }
        // Splicing a stream with itself at the same offset, or a flip back, may leave it as is.
        assert!(
            changed > 400,
            "only {changed} of 500 mutations changed the bytes"
        );
    }

    #[test]
    fn afl_dictionaries_and_words_give_tokens() {
        let dict = "# comment\nkw1=\"LOGIN\"\n\"k3y\\x2d7e\"\nname@2=\"a\\\"b\\\\\"\n\n";
        assert_eq!(
            parse_dict(dict).expect("parses"),
            [b"LOGIN".to_vec(), b"k3y-7e".to_vec(), b"a\"b\\".to_vec()]
        );
        assert!(parse_dict("no quotes here").is_err());
        assert!(parse_dict("\"bad \\q\"").is_err());
        let mut w = Vec::new();
        words(b"HELLO\nLOGIN guess\nOK welcome\nOK hi\nHELLO", &mut w, 10);
        assert_eq!(w, [&b"HELLO"[..], b"LOGIN", b"guess", b"welcome"]);
    }

    #[test]
    fn the_same_seed_and_index_make_the_same_case() {
        let seed = Seed {
            label: "s".into(),
            scenario: sockharness::script::parse(
                "s",
                b"target srv builtin echo\nconnect c to srv\nsend c \"hello\"\nrecv c exact 5 == \"hello\"\n",
            )
            .unwrap(),
            plain: None,
            settle: None,
        };
        let shapes = vec![Shape::of(&seed)];
        let seeds = vec![seed];
        let streams = vec![b"hello".to_vec()];
        for i in 0..50 {
            let a = generate(3, i, &seeds, &shapes, Corpus::plain(&streams), false);
            let b = generate(3, i, &seeds, &shapes, Corpus::plain(&streams), false);
            assert_eq!(a, b);
        }
        let differ = (0..50)
            .filter(|&i| {
                generate(3, i, &seeds, &shapes, Corpus::plain(&streams), false)
                    != generate(4, i, &seeds, &shapes, Corpus::plain(&streams), false)
            })
            .count();
        assert!(differ > 25);
    }

    #[test]
    fn a_last_send_may_half_close_whatever_follows_on_its_socket() {
        let text =
            "target srv builtin echo\nconnect a to srv\nconnect b to srv\nconnect c to srv\n\
                    send a \"one\"\nsend b \"two\"\nsend a \"three\"\nsend c \"four\"\n\
                    recv a exact 8\nrecv b exact 3\nrecv c exact 4\nclose a\nshutdown b write\n\
                    expect c.state == ESTABLISHED\n";
        let seed = Seed {
            label: "s".into(),
            scenario: sockharness::script::parse("s", text.as_bytes()).unwrap(),
            plain: None,
            settle: None,
        };
        // Only c's last send is followed by no send at all; but its state is checked.
        assert!(Shape::of(&seed).half_closes.is_empty());
        let text = "target srv builtin echo\nconnect a to srv\nconnect b to srv\n\
                    send a \"one\"\nsend b \"two\"\nrecv b exact 3\nsend a \"three\"\n\
                    recv a exact 8\nclose a\nshutdown b write\n";
        let seed = Seed {
            label: "s".into(),
            scenario: sockharness::script::parse("s", text.as_bytes()).unwrap(),
            plain: None,
            settle: None,
        };
        // a's last send, though a is closed later; not b's, which a's send follows.
        assert_eq!(Shape::of(&seed).half_closes, [6]);
    }

    #[test]
    fn after_a_half_close_nothing_more_may_be_the_servers_close() {
        let text = "target srv builtin echo\nconnect c to srv\nsend c \"hi\"\nrecv c exact 2\n\
                    recv c 16 nowait == EAGAIN\n";
        let scenario = sockharness::script::parse("s", text.as_bytes()).unwrap();
        let seed = Seed {
            label: "s".into(),
            scenario,
            plain: None,
            settle: None,
        };
        let case = Case {
            seed: 0,
            edits: vec![Edit::HalfClose { step: 2 }],
        };
        let source = sockharness::script::TargetSource::At(([127, 0, 0, 1], 7).into());
        let printed = case.scenario(&seed, &source).to_string();
        assert!(
            printed.contains("send c \"hi\"\nshutdown c write == ok|ENOTCONN|ECONNRESET|EPIPE\n"),
            "{printed}"
        );
        assert!(
            printed.contains("recv c 16 nowait == EOF|EAGAIN\n"),
            "{printed}"
        );
    }

    #[test]
    fn generated_cases_are_valid_scenarios() {
        let text = "target srv builtin echo\nconnect a to srv\nconnect b to srv\n\
                    send a \"hello\"\nsend b pattern(3000)\nrecv a exact 5 == \"hello\"\n\
                    recv b exact 3000\nclose a\nrecv b 10 nowait == EAGAIN\n";
        let seed = Seed {
            label: "s".into(),
            scenario: sockharness::script::parse("s", text.as_bytes()).unwrap(),
            plain: None,
            settle: None,
        };
        let shapes = vec![Shape::of(&seed)];
        let seeds = vec![seed];
        let streams = vec![b"hello".to_vec(), b"GET / HTTP/1.1\r\n\r\n".to_vec()];
        let source = sockharness::script::TargetSource::At(([127, 0, 0, 1], 7).into());
        let tokens = vec![b"k3y".to_vec()];
        let corpus = Corpus {
            streams: &streams,
            focus: &[None, Some(4)],
            fresh: 1,
            favoured: &[0],
            tokens: &tokens,
            dict: 1,
        };
        for i in 0..2000 {
            let case = generate(11, i, &seeds, &shapes, corpus, i % 2 == 0);
            let sc = case.scenario(&seeds[case.seed], &source);
            if let Err(problems) = sc.validate() {
                panic!("case {i} ({case:?}) is not valid:\n{problems}");
            }
        }
    }
}
