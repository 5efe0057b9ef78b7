//! `facegate search --html`: one self-contained HTML page (thumbnails inlined as JPEG data, no
//! external files) showing each query's face beside the faces it found, with scores and paths.

use std::fmt::Write as _;
use std::path::PathBuf;

use image::RgbImage;

use crate::imaging::rect::Rect;

/// Thumbnail height in pixels.
const THUMB: u32 = 112;

/// What a thumbnail shows.
#[derive(Debug, Clone)]
pub enum Thumb {
    /// A face of a photo, with a margin around it.
    Face { photo: PathBuf, rect: Rect },
    /// A whole image (an enrolled person's aligned crop).
    Image(PathBuf),
}

/// One query and what it found.
#[derive(Debug, Clone)]
pub struct Section {
    pub query: String,
    pub thumb: Option<Thumb>,
    /// Each result's thumbnail, path and score.
    pub results: Vec<(Thumb, PathBuf, f32)>,
}

/// The page for `sections`. A thumbnail that cannot be made (the photo changed or is gone) shows
/// as an empty frame with the reason, never fails the page.
pub fn render(sections: &[Section]) -> String {
    let mut cache: Option<(PathBuf, RgbImage)> = None;
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>facegate search</title><style>\
         body{font-family:system-ui,sans-serif;margin:1rem;background:#fafafa;color:#222}\
         section{margin-bottom:2rem}h2{font-size:1rem;word-break:break-all}\
         .row{display:flex;flex-wrap:wrap;gap:.6rem}\
         figure{margin:0;width:8rem;font-size:.75rem;word-break:break-all}\
         figure img,.missing{height:112px;max-width:8rem;object-fit:contain;display:block;background:#ddd}\
         .query img{outline:3px solid #2a6}figcaption{max-height:3.2em;overflow:hidden}.score{font-weight:bold}\
         </style></head><body>\n<h1>facegate search</h1>\n",
    );
    for s in sections {
        let _ = write!(
            html,
            "<section><h2>{}</h2><div class=\"row\">",
            escape(&s.query)
        );
        if let Some(t) = &s.thumb {
            figure(&mut html, t, "query", "", "query", &mut cache);
        }
        if s.results.is_empty() {
            html.push_str("<p>No face at or above the threshold.</p>");
        }
        for (thumb, path, score) in &s.results {
            let name = path
                .file_name()
                .unwrap_or(path.as_os_str())
                .to_string_lossy();
            let caption = format!("<span class=\"score\">{score:.3}</span> {}", escape(&name));
            let title = escape(&path.to_string_lossy());
            figure(&mut html, thumb, &caption, &title, "", &mut cache);
        }
        html.push_str("</div></section>\n");
    }
    html.push_str("</body></html>\n");
    html
}

fn figure(
    html: &mut String,
    thumb: &Thumb,
    caption: &str,
    title: &str,
    class: &str,
    cache: &mut Option<(PathBuf, RgbImage)>,
) {
    let _ = write!(html, "<figure class=\"{class}\" title=\"{title}\">");
    match thumbnail(thumb, cache).and_then(|img| crate::imaging::jpeg::encode(&img, 80.0)) {
        Ok(jpeg) => {
            let _ = write!(
                html,
                "<img alt=\"\" src=\"data:image/jpeg;base64,{}\">",
                base64(&jpeg)
            );
        }
        Err(e) => {
            let _ = write!(html, "<div class=\"missing\">{}</div>", escape(&e));
        }
    }
    let _ = write!(html, "<figcaption>{caption}</figcaption></figure>");
}

/// Consecutive results often come from one photo; the last photo read is kept.
fn thumbnail(thumb: &Thumb, cache: &mut Option<(PathBuf, RgbImage)>) -> Result<RgbImage, String> {
    let (path, rect) = match thumb {
        Thumb::Face { photo, rect } => (photo, Some(*rect)),
        Thumb::Image(path) => (path, None),
    };
    if cache.as_ref().is_none_or(|(p, _)| p != path) {
        let photo = crate::imaging::photo::load(path).map_err(|e| e.to_string())?;
        *cache = Some((path.clone(), photo.rgb));
    }
    let Some((_, rgb)) = cache.as_ref() else {
        return Err("no image".into());
    };
    let face = match rect {
        Some(r) => crate::imaging::crop::face_snapshot(rgb, &r),
        None => rgb.clone(),
    };
    let (w, h) = face.dimensions();
    let width = ((w as u64 * THUMB as u64) / h.max(1) as u64).clamp(1, 4 * THUMB as u64) as u32;
    Ok(image::imageops::resize(
        &face,
        width,
        THUMB,
        image::imageops::FilterType::Triangle,
    ))
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_inject_markup() {
        let page = render(&[Section {
            query: "<script>alert(1)</script>".into(),
            thumb: Some(Thumb::Image(PathBuf::from("/nonexistent/x.png"))),
            results: vec![],
        }]);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
    }
}
