//! Diagnostics for scenario files: `path:line:column: error: ...`, the source line, a caret
//! under the culprit and a hint, rendered with codespan-reporting.

use std::fmt;
use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};

/// At most this many problems are reported per file: past that the file is probably not a
/// scenario at all, and more lines would bury the first ones.
pub const MAX_PROBLEMS: usize = 20;

/// Source lines longer than this are shown as a window around the culprit.
const MAX_SHOWN_LINE: usize = 160;

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte range of the culprit in the file's (lossily decoded) text.
    pub span: Range<usize>,
    /// What is wrong, in lowercase.
    pub message: String,
    /// A suggestion, such as "did you mean `listen`?".
    pub hint: Option<String>,
}

impl Problem {
    /// A problem at `span`.
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Problem {
            span,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Every problem found in one file, with what is needed to show them.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    /// The file's path as given.
    pub path: String,
    /// The file's text (invalid UTF-8 replaced by U+FFFD).
    pub source: String,
    /// The problems, in source order.
    pub problems: Vec<Problem>,
    /// Problems found beyond [`MAX_PROBLEMS`], which are counted but not kept.
    pub omitted: usize,
}

/// A problem's position as 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Diagnostics {
    /// The line and column where `problem` starts.
    pub fn position(&self, problem: &Problem) -> Position {
        position(&self.source, problem.span.start)
    }
}

/// The 1-based line and column of byte `offset` in `source`.
pub fn position(source: &str, offset: usize) -> Position {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            f.write_str(&render(&self.path, &self.source, problem))?;
        }
        if self.omitted > 0 {
            writeln!(f, "{}: {} more problems not shown", self.path, self.omitted)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Renders one problem: a grep- and editor-friendly first line, then codespan's source snippet.
fn render(path: &str, source: &str, problem: &Problem) -> String {
    let pos = position(source, problem.span.start);
    let header = format!(
        "{path}:{}:{}: error: {}\n",
        pos.line, pos.column, problem.message
    );

    // Show only the culprit's line, windowed when long, so a 10 MB line costs nothing to report.
    let line_start = source[..floor_char_boundary(source, problem.span.start.min(source.len()))]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line_end = source[line_start..]
        .find('\n')
        .map_or(source.len(), |i| line_start + i);
    let line = &source[line_start..line_end];
    let mut rel = problem
        .span
        .start
        .saturating_sub(line_start)
        .min(line.len());
    let mut rel_end = problem
        .span
        .end
        .saturating_sub(line_start)
        .clamp(rel, line.len());
    let mut shown = line.to_string();
    if line.len() > MAX_SHOWN_LINE {
        let from = floor_char_boundary(line, rel.saturating_sub(MAX_SHOWN_LINE / 2));
        let to = floor_char_boundary(line, (from + MAX_SHOWN_LINE).min(line.len()));
        shown = line[from..to].to_string();
        rel -= from;
        rel_end = rel_end.clamp(rel + from, to) - from;
    }
    rel = floor_char_boundary(&shown, rel.min(shown.len()));
    rel_end = floor_char_boundary(&shown, rel_end.min(shown.len()));
    if rel_end == rel && rel < shown.len() {
        rel_end = rel + shown[rel..].chars().next().map_or(0, char::len_utf8);
    }
    // Padding with newlines keeps codespan's line numbers right without handing it the file.
    let padded = format!("{}{}\n", "\n".repeat(pos.line - 1), shown);
    let offset = pos.line - 1;
    let file = SimpleFile::new(path, padded);
    let mut label = Label::primary((), offset + rel..offset + rel_end);
    if let Some(hint) = &problem.hint {
        label = label.with_message(hint.clone());
    }
    let diagnostic = Diagnostic::error()
        .with_message(&problem.message)
        .with_labels(vec![label]);
    let body = term::emit_into_string(&Config::default(), &file, &diagnostic).unwrap_or_default();
    // codespan opens with its own `error: ...` line; ours above carries the position.
    let body = body.split_once('\n').map_or("", |(_, rest)| rest);
    format!("{header}{body}")
}
