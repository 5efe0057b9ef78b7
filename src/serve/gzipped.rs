//! Text files `serve` sends (the web UI, the API description), kept gzip-compressed in the binary
//! by `build.rs`: 96 KB become 22 KB. A client that takes gzip (every browser) gets the stored
//! bytes as they are; any other gets them inflated.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response};

/// A file of the binary, as `build.rs` stored it: one gzip member.
pub struct Gzipped(&'static [u8]);

/// `src/serve/ui/app.js` -> `gzipped!("app.js")`.
macro_rules! gzipped {
    ($name:literal) => {
        $crate::serve::gzipped::Gzipped::new(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/",
            $name,
            ".gz"
        )))
    };
}
pub(crate) use gzipped;

/// gzip's fixed header (no optional fields, as `build.rs` writes it) and trailer (CRC, length).
const HEADER: usize = 10;
const TRAILER: usize = 8;

impl Gzipped {
    pub const fn new(member: &'static [u8]) -> Gzipped {
        Gzipped(member)
    }

    /// The response for a request with these headers: `kind` is its Content-Type.
    pub fn respond(&self, request: &HeaderMap, kind: &'static str) -> Response<Body> {
        let (body, gzip) = if accepts_gzip(request) {
            (Body::from(self.0), true)
        } else {
            (Body::from(self.inflate()), false)
        };
        let mut res = Response::new(body);
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if gzip {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        res
    }

    /// The file itself. The build wrote it and the test suite reads every one, so this cannot
    /// fail at run time.
    fn inflate(&self) -> Vec<u8> {
        let deflated = &self.0[HEADER..self.0.len() - TRAILER];
        miniz_oxide::inflate::decompress_to_vec(deflated)
            .unwrap_or_else(|e| unreachable!("a web file of the build is tested: {e:?}"))
    }
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 12.5.3: by name or `*`, unless its weight is 0).
fn accepts_gzip(request: &HeaderMap) -> bool {
    let codings = request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    let mut gzip = None;
    let mut any = None;
    for coding in codings {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let allowed = parts
            .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .all(|q| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0));
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(allowed);
        } else if name == "*" {
            any = Some(allowed);
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for a in accept {
            h.append(header::ACCEPT_ENCODING, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn gzip_goes_only_to_clients_that_take_it() {
        for (accept, takes) in [
            (&[][..], false),
            (&["gzip, deflate, br, zstd"][..], true),
            (&["br", "GZip;q=0.5"][..], true),
            (&["identity"][..], false),
            (&["gzip;q=0"][..], false),
            (&["gzip; q=0.000"][..], false),
            (&["*"][..], true),
            (&["*, gzip;q=0"][..], false),
            (&["gzip;q=nonsense"][..], false),
            (&["x-gzip"][..], true),
        ] {
            assert_eq!(accepts_gzip(&headers(accept)), takes, "{accept:?}");
        }
    }

    #[test]
    fn every_stored_file_inflates_to_its_source() {
        for (stored, source) in [
            (gzipped!("index.html"), include_str!("ui/index.html")),
            (gzipped!("app.js"), include_str!("ui/app.js")),
            (gzipped!("style.css"), include_str!("ui/style.css")),
            (
                gzipped!("openapi.yaml"),
                include_str!("../../docs/openapi.yaml"),
            ),
        ] {
            assert_eq!(stored.inflate(), source.as_bytes());
            let length = &stored.0[stored.0.len() - 4..];
            assert_eq!(
                u32::from_le_bytes(length.try_into().unwrap()) as usize,
                source.len()
            );
        }
    }
}
