//! Text from outside (file names, names in a gallery index, frame sources) printed to a terminal.
//!
//! A file called `\x1b]0;...\x07x.jpg` or a name holding `\x1b[2J` would otherwise retitle or
//! clear the terminal of whoever reads the output, or forge lines of a log. Plain-text output
//! escapes control characters; JSON output is already escaped by serde.

use std::borrow::Cow;
use std::fmt::Write;
use std::path::Path;

/// `text` with control characters (C0, DEL, C1, and the bidirectional overrides that reorder
/// what a reader sees) written as `\xNN` / `\u{NNNN}`; unchanged when there are none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            if (c as u32) < 0x100 {
                let _ = write!(out, "\\x{:02x}", c as u32);
            } else {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path for plain-text output: lossy UTF-8, control characters escaped.
pub fn path(p: &Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

/// Like [`escape`], but keeps line breaks: for messages facegate composed itself over several
/// lines, whose parts were escaped where they came from outside.
pub fn escape_message(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.split('\n')
            .map(|line| escape(line).into_owned())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("Ada Lovelace"), "Ada Lovelace");
        assert!(matches!(escape("Zoë"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("x\ny\r\x7f\u{9b}"), "x\\x0ay\\x0d\\x7f\\x9b");
        assert_eq!(escape("\u{202e}gpj.exe"), "\\u{202e}gpj.exe");
        assert_eq!(path(Path::new("/tmp/\x07bell.jpg")), "/tmp/\\x07bell.jpg");
        assert_eq!(escape_message("one\ntwo\x1b"), "one\ntwo\\x1b");
    }
}
