//! The shape of cascade XML, checked in one linear pass before the XML parser sees it.
//!
//! `roxmltree` builds the whole tree and has no depth or attribute bound: a file nesting elements
//! a million deep, or one element with a hundred thousand attributes (checked pairwise for
//! duplicates), costs a stack overflow or quadratic time. OpenCV's cascades nest 7 deep with at
//! most one attribute per element, so tight bounds cost real files nothing.

use crate::support::limits::{MAX_XML_ATTRIBUTES, MAX_XML_DEPTH};

/// Refuses XML nesting deeper than [`MAX_XML_DEPTH`], elements with more than
/// [`MAX_XML_ATTRIBUTES`] attributes, and document type declarations (entity definitions have no
/// place in a cascade). Anything else malformed is left for the parser to describe.
pub fn check(xml: &str) -> Result<(), String> {
    let b = xml.as_bytes();
    let find = |from: usize, pat: &[u8]| -> Option<usize> {
        b.get(from..)?
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|p| from + p)
    };
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(p) = b
        .get(i..)
        .and_then(|rest| rest.iter().position(|&c| c == b'<'))
    {
        let at = i + p;
        let rest = &b[at..];
        let skip_to = |end: &[u8]| find(at, end).map(|e| e + end.len());
        let next = if rest.starts_with(b"<!--") {
            skip_to(b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            skip_to(b"]]>")
        } else if rest.starts_with(b"<?") {
            skip_to(b"?>")
        } else if rest.starts_with(b"<!") {
            return Err("document type declarations (<!DOCTYPE, <!ENTITY) are not allowed".into());
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            skip_to(b">")
        } else {
            let (end, attributes) = start_tag_end(b, at + 1);
            if attributes > MAX_XML_ATTRIBUTES {
                return Err(format!(
                    "an element has {attributes} attributes (at most {MAX_XML_ATTRIBUTES})"
                ));
            }
            let self_closing = end.is_some_and(|e| e > 0 && b[e - 1] == b'/');
            if !self_closing {
                depth += 1;
                if depth > MAX_XML_DEPTH {
                    return Err(format!("elements nest more than {MAX_XML_DEPTH} deep"));
                }
            }
            end.map(|e| e + 1)
        };
        match next {
            Some(n) => i = n,
            // Unterminated: the parser reports where.
            None => return Ok(()),
        }
    }
    Ok(())
}

/// Where the start tag beginning at `from` ends (its `>`), and how many attributes it has.
fn start_tag_end(b: &[u8], from: usize) -> (Option<usize>, usize) {
    let mut quote = None;
    let mut attributes = 0;
    for (j, &c) in b.iter().enumerate().skip(from) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' => quote = Some(c),
                b'=' => attributes += 1,
                b'>' => return (Some(j), attributes),
                _ => {}
            },
        }
    }
    (None, attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_cascades_pass() {
        for xml in [
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/haarcascade_frontalface_default.xml"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/lbpcascade_frontalface_improved.xml"
            )),
        ] {
            check(xml).unwrap();
        }
    }

    #[test]
    fn deep_wide_and_dtd_documents_are_refused() {
        let deep = "<a>".repeat(1_000_000);
        assert!(check(&deep).unwrap_err().contains("nest"));
        let ok_depth = format!("{}{}", "<a>".repeat(32), "</a>".repeat(32));
        check(&ok_depth).unwrap();
        let wide = format!(
            "<a {}/>",
            (0..100_000)
                .map(|i| format!("x{i}='1' "))
                .collect::<String>()
        );
        assert!(check(&wide).unwrap_err().contains("attributes"));
        let quoted = "<a x='=====' y=\"a=b\"></a>";
        check(quoted).unwrap();
        assert!(check("<!DOCTYPE x [<!ENTITY a 'b'>]><x/>")
            .unwrap_err()
            .contains("DOCTYPE"));
        check("<!-- <a><a><a> --><x><![CDATA[<<<<]]></x>").unwrap();
    }
}
