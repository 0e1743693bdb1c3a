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
    /// Sends after which their socket may half-close: its last, in the foreground, with no
    /// socket sending anything after it.
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
        let last_send = steps
            .iter()
            .rposition(|s| matches!(s.statement, Statement::Send { .. }));
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
                    let shuts = steps[i + 1..].iter().any(|s| {
                        matches!(&s.statement, Statement::Shutdown { socket: o, .. } | Statement::Close { socket: o } | Statement::Abort { socket: o } if o == socket)
                    });
                    if Some(i) == last_send && step.background.is_none() && !shuts {
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

/// Makes case number `index`: a seed, and one to three edits of it.
pub fn generate(
    run_seed: u64,
    index: u64,
    seeds: &[Seed],
    shapes: &[Shape],
    streams: &[Vec<u8>],
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
            70..100 => Edit::Intruder(intruder(&mut rng, streams, echo)),
            _ => continue,
        };
        if !edits.contains(&edit) {
            edits.push(edit);
        }
    }
    if edits.is_empty() {
        edits.push(Edit::Intruder(intruder(&mut rng, streams, echo)));
    }
    Case { seed, edits }
}

fn gap(rng: &mut ChaCha8Rng) -> Duration {
    // Mostly none: a gap costs at least a timer tick (1ms), and pieces written back to back
    // already reach a busy server in separate reads often enough.
    [0, 0, 0, 0, 0, 0, 200, 500, 1000, 2000].map(Duration::from_micros)[rng.random_range(0..10)]
}

fn intruder(rng: &mut ChaCha8Rng, streams: &[Vec<u8>], echo: bool) -> Intruder {
    let mut data = if streams.is_empty() {
        (0..rng.random_range(1..64)).map(|_| rng.random()).collect()
    } else {
        streams[rng.random_range(0..streams.len())].clone()
    };
    let original = data.clone();
    if rng.random_bool(0.6) {
        for _ in 0..rng.random_range(1..=3) {
            mutate(rng, &mut data, streams);
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
    let leave = match rng.random_range(0..10) {
        0..3 => Leave::Close,
        3..5 => Leave::HalfClose,
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
        data,
        chunk,
        leave,
        echo,
        rcvbuf,
        mutated,
    }
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

/// One payload mutation of `data`, in place: bit flips, truncation, insertion (random bytes,
/// a token, a repeated slice, a long run), or splicing with another stream.
pub fn mutate(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, streams: &[Vec<u8>]) {
    match rng.random_range(0..6) {
        0 if !data.is_empty() => {
            for _ in 0..rng.random_range(1..=4) {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
        }
        1 if data.len() > 1 => data.truncate(rng.random_range(1..data.len())),
        2 => {
            let at = rng.random_range(0..=data.len());
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
        _ => {
            let at = rng.random_range(0..=data.len());
            let n = rng.random_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(at..at, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_the_bytes_and_stay_bounded() {
        let streams = vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()];
        let mut changed = 0;
        for i in 0..500 {
            let mut rng = rng_for(7, i);
            let mut d = streams[0].clone();
            mutate(&mut rng, &mut d, &streams);
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
            let a = generate(3, i, &seeds, &shapes, &streams, false);
            let b = generate(3, i, &seeds, &shapes, &streams, false);
            assert_eq!(a, b);
        }
        let differ = (0..50)
            .filter(|&i| {
                generate(3, i, &seeds, &shapes, &streams, false)
                    != generate(4, i, &seeds, &shapes, &streams, false)
            })
            .count();
        assert!(differ > 25);
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
        for i in 0..2000 {
            let case = generate(11, i, &seeds, &shapes, &streams, i % 2 == 0);
            let sc = case.scenario(&seeds[case.seed], &source);
            if let Err(problems) = sc.validate() {
                panic!("case {i} ({case:?}) is not valid:\n{problems}");
            }
        }
    }
}
