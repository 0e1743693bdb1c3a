//! Why a scenario failed: a kind to act on, beside the text to show.

use serde::Serialize;

/// Why a scenario failed: the first expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure it is: programs decide on this, never on the text below.
    pub kind: FailureKind,
    /// 1-based line of the statement (0 for statements built in Rust, and for setup).
    pub line: u32,
    /// The statement as written.
    pub statement: String,
    /// What the script expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// More detail, such as where two byte streams first differ.
    pub detail: Option<String>,
}

/// The kinds of failure. In JSON, `{"type": "timed_out", "after_ms": 300}` and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// A statement passed its deadline.
    TimedOut {
        /// How long it had, in milliseconds.
        after_ms: u64,
    },
    /// A call's result was another than expected: an error where success or another error was
    /// expected, or success where an error was.
    Errno {
        /// The error the call gave (its errno name), or `None` for success.
        actual: Option<String>,
    },
    /// Bytes received differ from the bytes expected.
    Data {
        /// The offset, within the bytes compared, of the first difference.
        offset: u64,
    },
    /// Bytes received do not match the expected regular expression (`matches "RE"`).
    NoMatch,
    /// The stream ended where more was expected, or went on where its end was.
    Eof,
    /// A count of bytes (`== N`) did not match.
    Size,
    /// A statement finished outside its `within`, or a background statement that should have
    /// been pending had finished (or the reverse).
    Timing,
    /// A socket property (`peer`, `state`, `queued`, `fds`, ...) had another value.
    Property,
    /// A wire expectation (`expect wire`) did not hold on the capture.
    Wire,
    /// A target exited while the scenario needed it running, or ran when it should have
    /// exited.
    Target {
        /// Its exit code, when it exited with one.
        code: Option<i32>,
        /// The signal that ended it, when one did.
        signal: Option<i32>,
    },
    /// A background statement was never waited for and failed, or still ran at the end.
    Background,
    /// Something the scenario needs could not be set up: a namespace, a sysctl, a target that
    /// never listened, a runtime. (A target that exited before it listened is [`Target`].)
    ///
    /// [`Target`]: FailureKind::Target
    Setup,
    /// sockharness itself failed (a bug).
    Internal,
}

impl FailureKind {
    /// A short name, as in JSON's `type`: `timed_out`, `errno`, `data`, ...
    pub fn name(&self) -> &'static str {
        match self {
            FailureKind::TimedOut { .. } => "timed_out",
            FailureKind::Errno { .. } => "errno",
            FailureKind::Data { .. } => "data",
            FailureKind::NoMatch => "no_match",
            FailureKind::Eof => "eof",
            FailureKind::Size => "size",
            FailureKind::Timing => "timing",
            FailureKind::Property => "property",
            FailureKind::Wire => "wire",
            FailureKind::Target { .. } => "target",
            FailureKind::Background => "background",
            FailureKind::Setup => "setup",
            FailureKind::Internal => "internal",
        }
    }

    /// Whether a statement passed its deadline: the sign of a hang.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FailureKind::TimedOut { .. })
    }

    /// The kind for a target's exit status.
    pub fn target_exited(status: std::process::ExitStatus) -> FailureKind {
        use std::os::unix::process::ExitStatusExt;
        FailureKind::Target {
            code: status.code(),
            signal: status.signal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_the_kind_and_its_fields() {
        let kind = FailureKind::TimedOut { after_ms: 300 };
        let json = serde_json::to_value(&kind).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"type": "timed_out", "after_ms": 300})
        );
        assert_eq!(kind.name(), "timed_out");
        let json = serde_json::to_value(FailureKind::Data { offset: 4 }).expect("serialises");
        assert_eq!(json["type"], FailureKind::Data { offset: 4 }.name());
        assert_eq!(json["offset"], 4);
    }

    #[test]
    fn every_name_is_its_json_type() {
        let kinds = [
            FailureKind::TimedOut { after_ms: 1 },
            FailureKind::Errno { actual: None },
            FailureKind::Data { offset: 0 },
            FailureKind::NoMatch,
            FailureKind::Eof,
            FailureKind::Size,
            FailureKind::Timing,
            FailureKind::Property,
            FailureKind::Wire,
            FailureKind::Target {
                code: Some(1),
                signal: None,
            },
            FailureKind::Background,
            FailureKind::Setup,
            FailureKind::Internal,
        ];
        for kind in kinds {
            let json = serde_json::to_value(&kind).expect("serialises");
            assert_eq!(json["type"], kind.name(), "{kind:?}");
        }
    }
}
