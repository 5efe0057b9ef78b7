//! Images into requests: the raw body (`image/jpeg`, `image/png`) or multipart form fields.
//! The body size is bounded by the router's limit; the pixel count by the decoder's.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};

use super::{ApiError, ApiResult};
use crate::imaging::photo::Photo;

/// Form fields a request may carry at most (a person is created from at most ten photos).
const MAX_FIELDS: usize = 32;
/// Longest text field (names are at most 100 characters).
const MAX_TEXT: usize = 1024;

/// One uploaded file.
pub struct File {
    pub field: String,
    /// The file name the client gave (shown in messages only, never used as a path).
    pub name: Option<String>,
    pub bytes: axum::body::Bytes,
}

#[derive(Default)]
pub struct Upload {
    pub files: Vec<File>,
    pub texts: Vec<(String, String)>,
}

impl Upload {
    pub fn text(&self, field: &str) -> Option<&str> {
        self.texts
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
    }
    pub fn texts(&self, field: &str) -> Vec<String> {
        self.texts
            .iter()
            .filter(|(k, _)| k == field)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn files<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a File> {
        self.files.iter().filter(move |f| f.field == field)
    }
}

/// Reads the request: a raw image body becomes one file named `raw_field`.
pub async fn read(req: Request, raw_field: &str) -> ApiResult<Upload> {
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = kind.split(';').next().unwrap_or("").trim().to_string();
    match essence.as_str() {
        // The format is recognised from the bytes; a browser sends files it cannot type as
        // octet-stream.
        "image/jpeg" | "image/png" | "application/octet-stream" => {
            let bytes = axum::body::Bytes::from_request(req, &())
                .await
                .map_err(too_large_or_bad)?;
            Ok(Upload {
                files: vec![File {
                    field: raw_field.to_string(),
                    name: None,
                    bytes,
                }],
                texts: Vec::new(),
            })
        }
        "multipart/form-data" => {
            let mut form = Multipart::from_request(req, &())
                .await
                .map_err(|e| ApiError::bad(format!("bad multipart request: {e}")))?;
            let mut upload = Upload::default();
            while let Some(field) = form.next_field().await.map_err(multipart_error)? {
                if upload.files.len() + upload.texts.len() >= MAX_FIELDS {
                    return Err(ApiError::bad(format!(
                        "too many form fields (at most {MAX_FIELDS})"
                    )));
                }
                let name = field.name().unwrap_or("").to_string();
                let file_name = field.file_name().map(str::to_string);
                let is_file = file_name.is_some()
                    || field
                        .content_type()
                        .is_some_and(|t| t.starts_with("image/"));
                let bytes = field.bytes().await.map_err(multipart_error)?;
                if is_file {
                    upload.files.push(File {
                        field: name,
                        name: file_name,
                        bytes,
                    });
                } else {
                    if bytes.len() > MAX_TEXT {
                        return Err(ApiError::bad(format!(
                            "form field '{name}' is longer than {MAX_TEXT} bytes"
                        )));
                    }
                    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                        ApiError::bad(format!("form field '{name}' is not UTF-8 text"))
                    })?;
                    upload.texts.push((name, text));
                }
            }
            Ok(upload)
        }
        "" => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "no Content-Type: send the image as image/jpeg or image/png, or as multipart/form-data",
        )),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {other} is not accepted: send image/jpeg, image/png (or application/octet-stream) or multipart/form-data"
            ),
        )),
    }
}

fn too_large_or_bad(e: axum::extract::rejection::BytesRejection) -> ApiError {
    ApiError::new(e.status(), e.body_text())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "the request is larger than the server's limit (--max-body)",
        );
    }
    ApiError::new(status, format!("bad multipart request: {}", e.body_text()))
}

/// Decodes an uploaded image; `what` names it in the message ("image", "photo 2 (a.jpg)").
/// Too many pixels is 413 (a decompression bomb), anything else unreadable is 400.
pub fn decode(bytes: &[u8], what: &str) -> ApiResult<Photo> {
    crate::imaging::photo::decode(bytes).map_err(|problem| {
        let status = if crate::support::limits::is_pixel_limit(&problem) {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, format!("{what}: {problem}"))
    })
}

/// How a file is named in messages.
pub fn describe(label: &str, file: &File) -> String {
    match &file.name {
        Some(n) if !n.is_empty() => format!("{label} ({})", crate::support::terminal::escape(n)),
        _ => label.to_string(),
    }
}
