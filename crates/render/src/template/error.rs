//! Template errors, carrying what Go's errors carry (template name, line,
//! column, the failing action) and printing exactly as Go prints them, so a
//! user's log lines read the same as under consul-template.

/// What went wrong, and where.
///
/// `Display` is Go's text, e.g.
/// `template: t:1:2: executing "t" at <.X>: map has no entry for key "X"`
/// for an execution error or `template: t:1: function "x" not defined` for
/// a parse error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct Error {
    /// Parse or execution (or a limit hit during either).
    pub kind: ErrorKind,
    /// The name of the template where the error is (an associated template
    /// for an error inside a `define`).
    pub template: String,
    /// 1-based line of the error (0 when Go reports none).
    pub line: usize,
    /// 1-based column (byte offset in the line, as Go counts), `None` when
    /// Go reports only a line (parse errors).
    pub col: Option<usize>,
    /// The message alone, e.g. `map has no entry for key "X"`.
    pub message: String,
    /// The whole text as Go prints it.
    pub text: String,
}

/// The phase an [`Error`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The template text is malformed (`template: NAME:LINE: ...`).
    Parse,
    /// Evaluation failed (`template: NAME:LINE:COL: executing ...`).
    Exec,
}

/// Result alias of the template engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A parse error as Go words it: `template: NAME:LINE: MESSAGE`.
    pub(crate) fn parse(template: &str, line: usize, message: impl Into<String>) -> Error {
        let message = message.into();
        let text = format!("template: {template}:{line}: {message}");
        Error {
            kind: ErrorKind::Parse,
            template: template.into(),
            line,
            col: None,
            message,
            text,
        }
    }

    /// An execution error as Go words it:
    /// `template: NAME:LINE:COL: executing "NAME" at <CONTEXT>: MESSAGE`.
    /// `parse_name` is the name of the parse the node came from (the
    /// position's file), `template` the one being executed.
    pub(crate) fn exec(
        parse_name: &str,
        template: &str,
        line: usize,
        col: usize,
        context: &str,
        message: impl Into<String>,
    ) -> Error {
        let message = message.into();
        let text = format!(
            "template: {parse_name}:{line}:{col}: executing {} at <{context}>: {message}",
            super::quote::quote(template)
        );
        Error {
            kind: ErrorKind::Exec,
            template: template.into(),
            line,
            col: Some(col),
            message,
            text,
        }
    }

    /// An error with Go's text as is (`ExecuteTemplate` of an unknown name).
    pub(crate) fn plain(text: String) -> Error {
        Error {
            kind: ErrorKind::Exec,
            template: String::new(),
            line: 0,
            col: None,
            message: text.trim_start_matches("template: ").to_string(),
            text,
        }
    }

    /// An execution error without a position (Go's `template: NAME: MESSAGE`,
    /// e.g. for an empty template).
    pub(crate) fn exec_plain(template: &str, message: impl Into<String>) -> Error {
        let message = message.into();
        let text = format!("template: {template}: {message}");
        Error {
            kind: ErrorKind::Exec,
            template: template.into(),
            line: 0,
            col: None,
            message,
            text,
        }
    }
}
