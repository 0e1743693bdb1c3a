//! `--stats`: a run's progress over time as CSV, in the long format ProFuzzBench's analysis
//! scripts read and plot (`time,subject,fuzzer,run,cov_type,cov`), so that a sockharness run
//! can be drawn beside AFLNet's or AFL++'s on the same axes.
//!
//! One row per measure and moment: `time` in Unix seconds, `subject` the server, `fuzzer`
//! `sockharness`, `run` the generator's seed. The measures (`cov_type`): `b_abs`, edges of
//! the server's AFL++ map reached (ProFuzzBench's branches, counted the way the fuzzer sees
//! them), and `b_per`, the same as a percentage of the map, in a guided run; in every run
//! `inputs`, `execs_per_sec` (over the run so far), `queue` (entries beyond the seeds) and
//! `failures`.

use std::io::{self, Write};
use std::time::Duration;

use super::fuzzer::Progress;

/// The header ProFuzzBench's `profuzzbench_plot.py` expects.
pub const HEADER: &str = "time,subject,fuzzer,run,cov_type,cov";

/// Rows are written at most this often, and once more at the end.
pub const EVERY: Duration = Duration::from_secs(1);

/// A CSV of a run's progress.
pub struct Stats<W: Write> {
    out: W,
    subject: String,
    run: u64,
    /// The elapsed time of the last rows written.
    last: Option<Duration>,
}

impl<W: Write> Stats<W> {
    /// Starts the CSV with its header; `subject` names the server (commas and quotes are
    /// replaced, as the format has no quoting), `run` is the generator's seed.
    pub fn new(mut out: W, subject: &str, run: u64) -> io::Result<Stats<W>> {
        writeln!(out, "{HEADER}")?;
        out.flush()?;
        let subject = subject
            .chars()
            .map(|c| {
                if matches!(c, ',' | '"' | '\n' | '\r') {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        Ok(Stats {
            out,
            subject,
            run,
            last: None,
        })
    }

    /// Writes the rows of `p`, taken at Unix time `unix` (seconds), unless rows were written
    /// less than [`EVERY`] before.
    pub fn record(&mut self, p: &Progress, unix: u64) -> io::Result<()> {
        if self.last.is_some_and(|l| p.elapsed < l + EVERY) {
            return Ok(());
        }
        self.rows(p, unix)
    }

    /// Writes the rows of `p` whenever the last were written: the end of the run.
    pub fn finish(&mut self, p: &Progress, unix: u64) -> io::Result<()> {
        if self.last == Some(p.elapsed) {
            return Ok(());
        }
        self.rows(p, unix)
    }

    fn rows(&mut self, p: &Progress, unix: u64) -> io::Result<()> {
        self.last = Some(p.elapsed);
        let secs = p.elapsed.as_secs_f64().max(1e-3);
        let mut rows: Vec<(&str, String)> = Vec::new();
        if let Some(c) = p.coverage {
            rows.push(("b_abs", c.edges.to_string()));
            let per = 100.0 * c.edges as f64 / c.map.max(1) as f64;
            rows.push(("b_per", format!("{per:.2}")));
        }
        rows.push(("inputs", p.inputs.to_string()));
        rows.push(("execs_per_sec", format!("{:.1}", p.inputs as f64 / secs)));
        rows.push(("queue", p.coverage.map_or(0, |c| c.queue).to_string()));
        rows.push(("failures", p.failures.to_string()));
        for (kind, value) in rows {
            writeln!(
                self.out,
                "{unix},{},sockharness,{},{kind},{value}",
                self.subject, self.run
            )?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzer::Phase;
    use crate::queue::CoverageStats;

    fn at(secs: u64, inputs: u64, coverage: Option<CoverageStats>) -> Progress {
        Progress {
            inputs,
            elapsed: Duration::from_secs(secs),
            failures: 0,
            restarts: 0,
            phase: Phase::Fuzzing,
            coverage,
        }
    }

    #[test]
    fn rows_are_profuzzbench_long_format_at_most_once_a_second() {
        let mut out = Vec::new();
        let mut s = Stats::new(&mut out, "exec ./srv {port}, v2", 7).unwrap();
        let cov = CoverageStats {
            edges: 50,
            map: 200,
            queue: 3,
        };
        s.record(&at(1, 100, Some(cov)), 1000).unwrap();
        // Half a second later: nothing new.
        let mut p = at(1, 150, Some(cov));
        p.elapsed += Duration::from_millis(500);
        s.record(&p, 1000).unwrap();
        s.finish(&at(2, 300, Some(cov)), 1001).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines.len(), 1 + 2 * 6, "{text}");
        assert_eq!(
            lines[1],
            "1000,exec ./srv {port}_ v2,sockharness,7,b_abs,50"
        );
        assert_eq!(
            lines[2],
            "1000,exec ./srv {port}_ v2,sockharness,7,b_per,25.00"
        );
        assert!(text.contains("1001,exec ./srv {port}_ v2,sockharness,7,inputs,300\n"));
        assert!(text.contains(",execs_per_sec,150.0\n"));
    }

    #[test]
    fn a_blind_run_has_no_coverage_rows() {
        let mut out = Vec::new();
        let mut s = Stats::new(&mut out, "srv", 1).unwrap();
        s.finish(&at(3, 30, None), 5).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("b_abs") && text.contains("5,srv,sockharness,1,inputs,30"));
    }
}
