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
    use axum::http::header::{AUTHORIZATION, COOKIE as COOKIE_HEADER};
    // Another scheme (Basic auth added by a reverse proxy) is not ours: the cookie may still be.
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
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
    fn the_bearer_header_wins_over_the_cookie() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("cookie", "x=1; facegate_session=abc".parse().unwrap());
        assert_eq!(credential(&h), Some("abc"));
        h.insert("authorization", "Bearer tok".parse().unwrap());
        assert_eq!(credential(&h), Some("tok"));
    }
}
