//! The web app's defences: a per-launch token for every state-changing call (CSRF), a check of
//! `Origin`/`Sec-Fetch-Site` on writes, and security headers on every page and API answer
//! (Content-Security-Policy with no outside source, no framing, no sniffing, no referrer).
//! There is no CORS: no `Access-Control-Allow-*` header is ever sent, so other sites' pages
//! cannot read answers. The Host check against DNS rebinding is [`crate::is_loopback_host`];
//! the `Origin` of a write must be this server's own (scheme, loopback host and bound port).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// The header that carries the token on writes.
pub const TOKEN_HEADER: &str = "x-kino-token";

/// The Content-Security-Policy of every page: only this origin, no inline script or style,
/// no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self'; \
    font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A per-launch secret handed to the page in its HTML.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// 32 random bytes from the OS, as hex.
    pub fn generate() -> std::io::Result<Token> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Token(
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
                .into(),
        ))
    }

    /// A fixed token (tests).
    pub fn from_string(s: impl Into<String>) -> Token {
        Token(s.into().into())
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, other: &[u8]) -> bool {
        let a = self.0.as_bytes();
        if a.len() != other.len() {
            return false;
        }
        a.iter().zip(other).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Refuses state-changing requests (anything but GET/HEAD) without the token, from another
/// site (`Sec-Fetch-Site: cross-site`), or with an `Origin` other than this server's own:
/// exactly `http://` and a loopback name with the port the server is bound to (another
/// local server's page is another origin).
pub async fn require_token(State(token): State<Token>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let h = req.headers();
    if h.get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return csrf("requests from other sites are refused");
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let bound_port = req
            .extensions()
            .get::<crate::BoundAddr>()
            .map(|b| b.0.port());
        let own = origin
            .to_str()
            .ok()
            .zip(bound_port)
            .is_some_and(|(origin, port)| is_own_origin(origin, port));
        if !own {
            return csrf("requests from other origins are refused");
        }
    }
    match h.get(TOKEN_HEADER) {
        Some(v) if token.matches(v.as_bytes()) => next.run(req).await,
        Some(_) => csrf("the page's token is wrong: reload the page"),
        None => csrf("this request needs the page's token (x-kino-token): reload the page"),
    }
}

/// Whether an `Origin` header value is this server's own origin: `http://`, a loopback name
/// and the bound `port` (left out only for port 80, as browsers do), nothing else.
pub fn is_own_origin(origin: &str, port: u16) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|host| crate::is_loopback_host(host, port))
}

fn csrf(message: &str) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "csrf", message).into_response()
}

/// Adds the security headers to every answer: pages, API, streams, `/health` and errors.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token() {
        let t = Token::generate().expect("random");
        assert_eq!(t.as_str().len(), 64);
        assert!(t.matches(t.as_str().as_bytes()));
        assert!(!t.matches(b"nope"));
        assert_ne!(t.as_str(), Token::generate().expect("random").as_str());
        assert!(!format!("{t:?}").contains(t.as_str()));
    }

    /// Issue 12, D16: the Origin check ignored the port, so other local servers' pages
    /// passed it.
    #[test]
    fn origin_must_match_scheme_host_and_port() {
        for own in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            assert!(is_own_origin(own, 8080), "{own}");
        }
        for foreign in [
            "http://127.0.0.1:8081",
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://evil.example:8080",
            "null",
            "127.0.0.1:8080",
        ] {
            assert!(!is_own_origin(foreign, 8080), "{foreign}");
        }
        assert!(is_own_origin("http://127.0.0.1", 80));
    }
}
