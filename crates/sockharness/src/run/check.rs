//! Matching what a statement did against what the script expected. No sockets.

use std::io;
use std::time::Duration;

use super::FailureKind;
use crate::script::diff::{data_diff, first_difference};
use crate::script::{errno, preview, Dur, Expected};

/// What a statement produced, before it is normalised into a trace event.
#[derive(Debug)]
pub(crate) enum Actual {
    /// Success, with an optional detail for the trace.
    Done(Option<String>),
    /// Bytes written, at this offset of the socket's outgoing stream.
    Sent { count: u64, start: u64 },
    /// Bytes read at this offset of the incoming stream; `eof` when the stream ended (only
    /// `recv all` ends that way and still succeeds).
    Read {
        data: Vec<u8>,
        start: u64,
        eof: bool,
    },
    /// The stream ended before the read was satisfied: `exact` or `until` cut short, or a
    /// one-call read that returned 0.
    Eof { data: Vec<u8>, start: u64 },
    /// The call failed.
    Failed(io::Error),
    /// The statement passed its deadline.
    TimedOut(Duration),
    /// Something other than a system call went wrong (a target that never listened).
    Broken(String),
    /// A target exited where it should have run (before it listened), with this status.
    Exited(String, std::process::ExitStatus),
    /// sockharness itself failed (a background statement's task panicked).
    Internal(String),
}

impl Actual {
    /// True when the statement did what it said without an error.
    pub(crate) fn succeeded(&self) -> bool {
        match self {
            Actual::Done(_) | Actual::Sent { .. } | Actual::Read { .. } => true,
            // A one-call read that returns 0 succeeded: end of stream is an answer, not an error.
            Actual::Eof { data, .. } => data.is_empty(),
            Actual::Failed(_)
            | Actual::TimedOut(_)
            | Actual::Broken(_)
            | Actual::Exited(..)
            | Actual::Internal(_) => false,
        }
    }

    /// A short description for failure reports.
    pub(crate) fn describe(&self) -> String {
        match self {
            Actual::Done(None) => "ok".into(),
            Actual::Done(Some(d)) => format!("ok ({d})"),
            Actual::Sent { count, .. } => format!("ok, {count} bytes written"),
            Actual::Read { data, eof, .. } => format!(
                "{} bytes {}{}",
                data.len(),
                preview(data, 32),
                if *eof { ", then EOF" } else { "" }
            ),
            Actual::Eof { data, .. } if data.is_empty() => "EOF".into(),
            Actual::Eof { data, .. } => {
                format!("EOF after {} bytes {}", data.len(), preview(data, 32))
            }
            Actual::Failed(e) => errno_of(e),
            Actual::TimedOut(d) => format!("timed out after {}", Dur(*d)),
            Actual::Broken(why) | Actual::Exited(why, _) | Actual::Internal(why) => why.clone(),
        }
    }
}

/// The errno name of an error, or its text when it has none.
pub(crate) fn errno_of(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => errno::name(code).map_or_else(|| format!("errno {code}"), str::to_string),
        None => e.to_string(),
    }
}

/// Why an expectation did not hold.
#[derive(Debug)]
pub(crate) struct Mismatch {
    pub(crate) kind: FailureKind,
    pub(crate) expected: String,
    pub(crate) actual: String,
    pub(crate) detail: Option<String>,
}

/// The kind of failure of `actual` where `expected` did not hold.
fn kind_of(expected: Option<&Expected>, actual: &Actual) -> FailureKind {
    match (actual, expected) {
        (Actual::TimedOut(d), _) => FailureKind::TimedOut {
            after_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        },
        (Actual::Broken(_), _) => FailureKind::Setup,
        (Actual::Exited(_, status), _) => FailureKind::target_exited(*status),
        (Actual::Internal(_), _) => FailureKind::Internal,
        (Actual::Failed(e), _) => FailureKind::Errno {
            actual: Some(errno_of(e)),
        },
        (_, Some(Expected::Eof | Expected::EofOr(_))) | (Actual::Eof { .. }, _) => FailureKind::Eof,
        (_, Some(Expected::Size(_))) => FailureKind::Size,
        (Actual::Read { data, .. }, Some(Expected::Data(d))) => FailureKind::Data {
            offset: first_difference(&d.bytes(), data) as u64,
        },
        (_, Some(Expected::Matches(_))) => FailureKind::NoMatch,
        _ => FailureKind::Errno { actual: None },
    }
}

/// Checks `actual` against `expected` (`None`: the statement must simply succeed). `sent` gives
/// the bytes a socket has written so far, for `sent(S)`.
pub(crate) fn check_result(
    expected: Option<&Expected>,
    actual: &Actual,
    sent: impl Fn(&str) -> Vec<u8>,
) -> Result<(), Mismatch> {
    let mismatch = |detail: Option<String>| Mismatch {
        kind: kind_of(expected, actual),
        expected: expected.map_or_else(|| "success".to_string(), ToString::to_string),
        actual: actual.describe(),
        detail,
    };
    let read = match actual {
        Actual::Read { data, .. } => Some(data.as_slice()),
        _ => None,
    };
    let holds = match expected {
        None | Some(Expected::Ok) => actual.succeeded(),
        Some(Expected::Eof) => matches!(actual, Actual::Eof { .. }) || read == Some(&[][..]),
        Some(Expected::EofOr(names)) => {
            matches!(actual, Actual::Eof { .. })
                || read == Some(&[][..])
                || matches!(actual, Actual::Failed(e) if names
                    .iter()
                    .any(|n| errno::number(n).is_some() && errno::number(n) == e.raw_os_error()))
        }
        Some(Expected::OkOr(names)) => {
            actual.succeeded()
                || matches!(actual, Actual::Failed(e) if names
                    .iter()
                    .any(|n| errno::number(n).is_some() && errno::number(n) == e.raw_os_error()))
        }
        Some(Expected::Errors(names)) => match actual {
            Actual::Failed(e) => names
                .iter()
                .any(|n| errno::number(n).is_some() && errno::number(n) == e.raw_os_error()),
            _ => false,
        },
        Some(Expected::Size(n)) => match actual {
            Actual::Sent { count, .. } => count == n,
            Actual::Read { data, .. } => data.len() as u64 == *n,
            _ => false,
        },
        Some(Expected::Data(d)) => {
            let want = d.bytes();
            return match read {
                Some(got) if got == want.as_slice() => Ok(()),
                Some(got) => Err(mismatch(Some(data_diff(&want, got)))),
                None => Err(mismatch(None)),
            };
        }
        Some(Expected::Matches(re)) => {
            // The parser checked that it compiles.
            let holds =
                regex::bytes::Regex::new(re).is_ok_and(|r| read.is_some_and(|got| r.is_match(got)));
            return if holds { Ok(()) } else { Err(mismatch(None)) };
        }
        Some(Expected::Sent(s)) => {
            let want = sent(s);
            return match read {
                Some(got) if got == want.as_slice() => Ok(()),
                Some(got) => Err(Mismatch {
                    kind: FailureKind::Data {
                        offset: first_difference(&want, got) as u64,
                    },
                    expected: format!("sent({s}): {} bytes {}", want.len(), preview(&want, 32)),
                    actual: actual.describe(),
                    detail: Some(data_diff(&want, got)),
                }),
                None => Err(mismatch(None)),
            };
        }
    };
    if holds {
        Ok(())
    } else {
        Err(mismatch(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Data;

    fn read(b: &[u8]) -> Actual {
        Actual::Read {
            data: b.to_vec(),
            start: 0,
            eof: false,
        }
    }

    #[test]
    fn errno_alternatives_and_aliases_match() {
        let reset = Actual::Failed(io::Error::from_raw_os_error(libc::ECONNRESET));
        let want = Expected::Errors(vec!["EPIPE".into(), "ECONNRESET".into()]);
        assert!(check_result(Some(&want), &reset, |_| vec![]).is_ok());
        let again = Actual::Failed(io::Error::from_raw_os_error(libc::EAGAIN));
        let want = Expected::Errors(vec!["EWOULDBLOCK".into()]);
        assert!(check_result(Some(&want), &again, |_| vec![]).is_ok());
        assert!(check_result(None, &again, |_| vec![]).is_err());
    }

    #[test]
    fn ok_or_errors_takes_success_or_a_listed_error_only() {
        let want = Expected::OkOr(vec!["EPIPE".into(), "ECONNRESET".into()]);
        let sent = Actual::Sent { count: 3, start: 0 };
        assert!(check_result(Some(&want), &sent, |_| vec![]).is_ok());
        let pipe = Actual::Failed(io::Error::from_raw_os_error(libc::EPIPE));
        assert!(check_result(Some(&want), &pipe, |_| vec![]).is_ok());
        let refused = Actual::Failed(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        let m = check_result(Some(&want), &refused, |_| vec![]).unwrap_err();
        assert_eq!(m.expected, "ok|EPIPE|ECONNRESET");
        let parsed = crate::script::parse(
            "x",
            b"listen srv\nconnect c to srv\nsend c \"x\" == ok|EPIPE|ECONNRESET\n",
        )
        .unwrap();
        assert_eq!(parsed.steps[2].expect.as_ref().unwrap().result, Some(want));
        assert!(parsed.to_string().contains("== ok|EPIPE|ECONNRESET"));
        let eof_or = Expected::EofOr(vec!["ECONNRESET".into()]);
        let reset = Actual::Failed(io::Error::from_raw_os_error(libc::ECONNRESET));
        assert!(check_result(Some(&eof_or), &reset, |_| vec![]).is_ok());
        assert!(check_result(Some(&eof_or), &read(b""), |_| vec![]).is_ok());
        assert!(check_result(Some(&eof_or), &read(b"x"), |_| vec![]).is_err());
        let want = Expected::Matches("^HTTP/1\\.[01] [0-9]{3} ".into());
        assert!(check_result(Some(&want), &read(b"HTTP/1.1 200 OK\r\n"), |_| vec![]).is_ok());
        assert!(check_result(Some(&want), &read(b"HTTP/1.1 2000"), |_| vec![]).is_err());
        let text = "listen srv\nconnect c to srv\nrecv c exact 3 == matches \"^a.\\\\d\"\nrecv c 1 == EOF|ECONNRESET\n";
        let parsed = crate::script::parse("x", text.as_bytes()).unwrap();
        assert_eq!(parsed.to_string(), text);
        assert!(crate::script::parse(
            "x",
            b"listen srv\nconnect c to srv\nrecv c 3 == matches \"(\"\n"
        )
        .is_err());
        assert!(crate::script::parse(
            "x",
            b"listen srv\nconnect c to srv\nsend c \"x\" == ok|EOF\n"
        )
        .is_err());
    }

    #[test]
    fn data_mismatch_reports_the_first_difference() {
        let want = Expected::Data(Data::from("hello world"));
        let m = check_result(Some(&want), &read(b"hello wOrld"), |_| vec![]).unwrap_err();
        assert_eq!(m.expected, "\"hello world\"");
        assert!(m.detail.unwrap().contains("first difference at byte 7"));
    }

    #[test]
    fn eof_matches_an_empty_read_and_a_short_exact() {
        let eof = Actual::Eof {
            data: vec![],
            start: 0,
        };
        assert!(check_result(Some(&Expected::Eof), &eof, |_| vec![]).is_ok());
        let short = Actual::Eof {
            data: b"ab".to_vec(),
            start: 0,
        };
        assert!(check_result(Some(&Expected::Eof), &short, |_| vec![]).is_ok());
        assert!(check_result(None, &short, |_| vec![]).is_err());
        assert!(check_result(Some(&Expected::Eof), &read(b"x"), |_| vec![]).is_err());
    }

    #[test]
    fn sent_compares_with_the_named_sockets_stream() {
        let want = Expected::Sent("cli".into());
        assert!(check_result(Some(&want), &read(b"abc"), |_| b"abc".to_vec()).is_ok());
        assert!(check_result(Some(&want), &read(b"abd"), |_| b"abc".to_vec()).is_err());
    }
}
