//! The event trace: what each statement of a scenario did and saw.
//!
//! Events are recorded already normalised (addresses, ports and descriptors replaced by the
//! scenario's names), so the text rendering is deterministic and fit for snapshots. Timings are
//! kept for JSON and for humans but never appear in [`Trace::render`].

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// The trace of one scenario run, in the order statements ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trace {
    /// One event per statement, plus one when a background statement ends.
    pub events: Vec<Event>,
}

/// What one statement did.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// 1-based source line; 0 for statements built in Rust.
    pub line: u32,
    /// The statement in canonical form.
    pub statement: String,
    /// What happened.
    pub outcome: Outcome,
    /// When the statement started, from the start of the scenario (JSON only).
    #[serde(serialize_with = "micros")]
    pub at_us: Duration,
    /// How long it took (JSON only).
    #[serde(serialize_with = "micros")]
    pub elapsed_us: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The result of a statement, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Success, with an optional normalised detail (`peer cli`, a property's value).
    Ok {
        /// Extra facts worth a snapshot.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Bytes written: `count` bytes at stream offsets `start..start+count`.
    Sent {
        /// Bytes written.
        count: u64,
        /// Offset of the first byte in the socket's outgoing stream.
        start: u64,
    },
    /// Bytes read: `count` bytes at offsets `start..start+count` of the incoming stream.
    Received {
        /// Bytes read.
        count: u64,
        /// Offset of the first byte in the socket's incoming stream.
        start: u64,
        /// An escaped, truncated preview.
        preview: String,
        /// True when end of stream was reached (for `recv all`, or a read cut short by it).
        eof: bool,
    },
    /// A read returned 0 bytes: end of stream.
    Eof,
    /// The call failed with this errno.
    Error {
        /// The errno name, such as `ECONNRESET`.
        errno: String,
    },
    /// The statement passed its deadline.
    TimedOut {
        /// The deadline.
        #[serde(serialize_with = "micros")]
        after: Duration,
    },
    /// A background statement started.
    Started {
        /// Its handle.
        handle: String,
    },
    /// A background statement was still running, as expected.
    Pending,
    /// A property's value, as observed by an `expect`.
    Observed {
        /// `subject.property is value`.
        value: String,
    },
    /// The statement was not run because an earlier expectation failed.
    Skipped,
    /// Something other than a system call went wrong.
    Problem {
        /// What.
        message: String,
    },
}

impl Outcome {
    /// The outcome as one line of text.
    pub fn render(&self) -> String {
        match self {
            Outcome::Ok { detail: None } => "ok".into(),
            Outcome::Ok { detail: Some(d) } => format!("ok, {d}"),
            Outcome::Sent { count, start } => {
                format!("sent {} [{start}..{})", bytes(*count), start + count)
            }
            Outcome::Received {
                count,
                start,
                preview,
                eof,
            } => format!(
                "received {} [{start}..{}) {preview}{}",
                bytes(*count),
                start + count,
                if *eof { ", then EOF" } else { "" }
            ),
            Outcome::Eof => "EOF".into(),
            Outcome::Error { errno } => errno.clone(),
            Outcome::TimedOut { after } => {
                format!("timed out after {}", crate::Dur(*after))
            }
            Outcome::Started { handle } => format!("started &{handle}"),
            Outcome::Pending => "pending".into(),
            Outcome::Observed { value } => value.clone(),
            Outcome::Skipped => "not run".into(),
            Outcome::Problem { message } => message.clone(),
        }
    }
}

fn bytes(n: u64) -> String {
    if n == 1 {
        "1 byte".into()
    } else {
        format!("{n} bytes")
    }
}

impl Trace {
    /// Deterministic text: one line per event, `line  statement  =>  outcome`.
    ///
    /// ```
    /// use sockharness_script::trace::{Event, Outcome, Trace};
    /// use std::time::Duration;
    /// let t = Trace { events: vec![Event {
    ///     line: 3, statement: "listen srv".into(), outcome: Outcome::Ok { detail: None },
    ///     at_us: Duration::from_micros(17), elapsed_us: Duration::from_micros(40),
    /// }] };
    /// assert_eq!(t.render(), "   3  listen srv  =>  ok\n");
    /// ```
    pub fn render(&self) -> String {
        let width = self
            .events
            .iter()
            .map(|e| e.statement.chars().count())
            .max()
            .unwrap_or(0)
            .min(48);
        let mut out = String::new();
        for e in &self.events {
            let _ = writeln!(
                out,
                "{:>4}  {:<width$}  =>  {}",
                e.line,
                e.statement,
                e.outcome.render()
            );
        }
        out
    }

    /// The trace as pretty JSON, timings included.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
