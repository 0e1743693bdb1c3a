//! Shrinking a failing case: fewer edits, fewer bytes, fewer seed statements, for as long as the
//! case still fails the same way and the seed, shrunk the same way but unedited, still passes
//! (so what is left fails because of the edits, not because the shrinking broke the seed).

use std::time::{Duration, Instant};

use sockharness::script::{self, Statement};

use super::case::{Case, Edit, Seed};
use super::fuzzer::{Fuzzer, Verdict};
use super::FuzzError;

/// Runs of candidates a minimisation may spend at most.
const MAX_ATTEMPTS: u32 = 400;

/// A shrunk failure: the seed it now runs on, and its edits.
pub(super) struct Minimized {
    pub(super) seed: Seed,
    pub(super) case: Case,
}

struct Shrinker<'a, 'b> {
    fz: &'a Fuzzer<'b>,
    target: &'a Verdict,
    deadline: Instant,
    attempts: u32,
}

impl Shrinker<'_, '_> {
    fn spent(&self) -> bool {
        self.attempts >= MAX_ATTEMPTS || Instant::now() >= self.deadline || super::interrupted()
    }

    /// Whether `case` on `seed` still fails as the original did; with `reference`, the seed
    /// without the edits must pass too.
    fn fails(&mut self, seed: &Seed, case: &Case, reference: bool) -> Result<bool, FuzzError> {
        if self.spent() {
            return Ok(false);
        }
        self.attempts += 1;
        // A shrunk seed must still be a valid scenario.
        let sc = case.scenario(seed, &self.fz.source());
        if script::parse("candidate", sc.to_string().as_bytes()).is_err() {
            return Ok(false);
        }
        if !self.fz.check_fresh(seed, case)?.same(self.target) {
            return Ok(false);
        }
        if !reference {
            return Ok(true);
        }
        let plain = Case {
            seed: case.seed,
            edits: Vec::new(),
        };
        Ok(!self.fz.check_fresh(seed, &plain)?.failed())
    }
}

/// Shrinks `case`, which failed with `verdict`, for at most `budget`.
pub(super) fn minimize(
    fz: &Fuzzer<'_>,
    case: &Case,
    verdict: &Verdict,
    budget: Duration,
) -> Result<Minimized, FuzzError> {
    let mut s = Shrinker {
        fz,
        target: verdict,
        deadline: Instant::now() + budget,
        attempts: 0,
    };
    let mut seed = fz.seeds[case.seed].clone();
    let mut case = case.clone();
    // Fewer edits.
    for i in (0..case.edits.len()).rev() {
        let mut c = case.clone();
        c.edits.remove(i);
        if !c.edits.is_empty() && s.fails(&seed, &c, false)? {
            case = c;
        }
    }
    // Fewer bytes from intruding clients, and plainer ways of sending them.
    for i in 0..case.edits.len() {
        if let Edit::Intruder(intr) = &case.edits[i] {
            if intr.chunk.is_some() {
                let mut c = case.clone();
                if let Edit::Intruder(x) = &mut c.edits[i] {
                    x.chunk = None;
                }
                if s.fails(&seed, &c, false)? {
                    case = c;
                }
            }
        }
        let mut piece = match &case.edits[i] {
            Edit::Intruder(x) => x.data.len() / 2,
            _ => 0,
        };
        while piece >= 1 && !s.spent() {
            let mut at = 0;
            while let Edit::Intruder(x) = &case.edits[i] {
                if at >= x.data.len() || s.spent() {
                    break;
                }
                let mut c = case.clone();
                if let Edit::Intruder(x) = &mut c.edits[i] {
                    let end = (at + piece).min(x.data.len());
                    x.data.drain(at..end);
                    if x.data.is_empty() {
                        at += piece;
                        continue;
                    }
                }
                if s.fails(&seed, &c, false)? {
                    case = c;
                } else {
                    at += piece;
                }
            }
            piece /= 2;
        }
    }
    // Fewer clients, bigger pieces.
    for i in 0..case.edits.len() {
        if let Edit::Crowd {
            clients,
            chunk,
            gap,
        } = case.edits[i].clone()
        {
            for (cl, ch) in [(2, chunk), (clients, chunk * 2), (clients, chunk * 4)] {
                if (cl, ch) == (clients, chunk) {
                    continue;
                }
                let mut c = case.clone();
                c.edits[i] = Edit::Crowd {
                    clients: cl,
                    chunk: ch,
                    gap,
                };
                if s.fails(&seed, &c, false)? {
                    case = c;
                    break;
                }
            }
        }
    }
    // Fewer seed statements (cases that replace the seed's steps have none to lose).
    if !case.edits.iter().any(|e| matches!(e, Edit::Crowd { .. })) {
        let mut k = seed.scenario.steps.len();
        while k > 0 && !s.spent() {
            k -= 1;
            if matches!(seed.scenario.steps[k].statement, Statement::Target { .. }) {
                continue;
            }
            let mut smaller = seed.clone();
            smaller.scenario.steps.remove(k);
            let Some(c) = without_step(&case, k) else {
                continue;
            };
            if s.fails(&smaller, &c, true)? {
                seed = smaller;
                case = c;
            }
        }
    }
    Ok(Minimized { seed, case })
}

/// `case` with its edits renumbered for a seed that lost step `k`; `None` when an edit was
/// made to that step.
fn without_step(case: &Case, k: usize) -> Option<Case> {
    let mut c = case.clone();
    for e in &mut c.edits {
        let step = match e {
            Edit::Chunk { step, .. }
            | Edit::Pause { step, .. }
            | Edit::RcvBuf { step, .. }
            | Edit::HalfClose { step } => step,
            Edit::Intruder(_) | Edit::Crowd { .. } => continue,
        };
        if *step == k {
            return None;
        }
        if *step > k {
            *step -= 1;
        }
    }
    Some(c)
}
