//! Who may use the API: one bearer token (or the session cookie the login sets for the web UI,
//! since a browser cannot add headers to `<img>` requests), compared in constant time, and a
//! per-address limit on failed attempts so the token cannot be guessed at line speed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const COOKIE: &str = "facegate_session";

/// Failed attempts one address may make per window before it is refused for the rest of it.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; beyond that the oldest windows are forgotten first.
const MAX_ADDRESSES: usize = 4096;

pub struct Token {
    digest: [u8; 32],
}

impl Token {
    pub fn new(token: &str) -> Token {
        Token {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Compares digests, so the time taken depends neither on the token's length nor on where
    /// the first difference is.
    pub fn matches(&self, candidate: &str) -> bool {
        let other: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        let diff = self
            .digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// The credential a request carries: the bearer token, else the session cookie.
pub fn credential(headers: &axum::http::HeaderMap) -> Option<&str> {
    use axum::http::header::COOKIE as COOKIE_HEADER;
    if let Some(token) = bearer(headers) {
        return Some(token.trim());
    }
    headers
        .get_all(COOKIE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == COOKIE).then_some(v)
        })
}

/// Whether a request that carries the session cookie (not the bearer header) comes from a page
/// of another origin: a cross-site request forgery, for which the browser adds the owner's
/// cookie on its own. The cookie's `SameSite=Strict` stops other sites, but not other origins of
/// the same site (a page on another port of the board's address): so state-changing requests
/// with the cookie must come from the board's own pages.
///
/// Browsers say where a request comes from in `Sec-Fetch-Site` (current ones) and `Origin`
/// (every cross-origin POST). A request with neither is not from a browser's cross-origin page
/// (curl, scripts), and a bearer token cannot be added by another page at all.
pub fn cross_origin(headers: &axum::http::HeaderMap) -> bool {
    use axum::http::header::{HOST, ORIGIN};
    if let Some(site) = headers.get("sec-fetch-site") {
        // `none`: typed in or bookmarked by the user; `same-origin`: our own pages.
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return false;
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
        _ => true,
    }
}

/// The token of the `Authorization: Bearer` header, which no other page can add. Another scheme
/// (Basic auth added by a reverse proxy) is not ours: the cookie may still be.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether the request authenticates with the bearer header.
pub fn has_bearer(headers: &axum::http::HeaderMap) -> bool {
    bearer(headers).is_some()
}

/// Failed attempts per address.
#[derive(Default)]
pub struct FailedLogins {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedLogins {
    /// Whether `addr` has used up its failures for the current window.
    pub fn blocked(&self, addr: IpAddr, now: Instant) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&addr)
            .is_some_and(|&(start, n)| now.duration_since(start) < WINDOW && n >= MAX_FAILURES)
    }

    /// Counts a failure; returns the failures of this window so far.
    pub fn failed(&self, addr: IpAddr, now: Instant) -> u32 {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_ADDRESSES {
            seen.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if seen.len() >= MAX_ADDRESSES {
                // A flood from many addresses: forget them all rather than grow without bound.
                seen.clear();
            }
        }
        let entry = seen.entry(addr).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_matches() {
        let t = Token::new("0123456789abcdef0123456789abcdef");
        assert!(t.matches("0123456789abcdef0123456789abcdef"));
        assert!(!t.matches("0123456789abcdef0123456789abcdee"));
        assert!(!t.matches(""));
        assert!(!t.matches("0123456789abcdef0123456789abcdef0"));
    }

    #[test]
    fn failures_block_an_address_for_the_rest_of_the_window() {
        let f = FailedLogins::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(!f.blocked(a, t0));
            f.failed(a, t0);
        }
        assert!(f.blocked(a, t0 + Duration::from_secs(30)));
        assert!(!f.blocked(b, t0), "other addresses are not affected");
        assert!(!f.blocked(a, t0 + WINDOW), "the window ends");
    }

    #[test]
    fn only_our_own_pages_count_as_same_origin() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = axum::http::HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        let host = ("host", "door.local:8080");
        assert!(!cross_origin(&headers(&[host])), "curl: no browser headers");
        assert!(!cross_origin(&headers(&[
            host,
            ("origin", "http://door.local:8080")
        ])));
        assert!(cross_origin(&headers(&[
            host,
            ("origin", "http://door.local:9000")
        ])));
        assert!(cross_origin(&headers(&[host, ("origin", "null")])));
        assert!(!cross_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!cross_origin(&headers(&[host, ("sec-fetch-site", "none")])));
        assert!(cross_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
        assert!(cross_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://door.local:8080")
        ])));
    }

    #[test]
    fn the_bearer_header_wins_over_the_cookie() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("cookie", "x=1; facegate_session=abc".parse().unwrap());
        assert_eq!(credential(&h), Some("abc"));
        h.insert("authorization", "Bearer tok".parse().unwrap());
        assert_eq!(credential(&h), Some("tok"));
    }
}
