//! The sans-IO half of the guest web server: parsing one HTTP/1.1 request
//! head, choosing what answers it, and the bytes of the answers.
//!
//! Only what a browser needs from the host is understood: `GET` of the
//! embedded page and its assets, and the WebSocket upgrade of
//! [`GUEST_PATH`] (RFC 6455 §4.2). Everything else gets a short error
//! response and the connection closes.

use super::assets::{self, Asset};

/// The WebSocket path browser guests connect to.
pub const GUEST_PATH: &str = "/guest";
/// Largest request head read before giving up (413): browsers send ~1 KiB.
pub const MAX_HEAD: usize = 16 * 1024;

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// `(lower-case name, value)` in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header called `name` (lower case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim())
    }

    /// Whether a header lists `token` (comma-separated, case-insensitive),
    /// as `Connection: keep-alive, Upgrade` does.
    fn header_has(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Why a request head cannot be answered normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the request head is longer than {MAX_HEAD} bytes")]
    TooLong,
    #[error("malformed HTTP request: {0}")]
    Malformed(&'static str),
}

/// The end of the head in `buf` (index just past `\r\n\r\n`), if it is all
/// there; [`HeadError::TooLong`] once `buf` passed [`MAX_HEAD`] without one.
pub fn head_end(buf: &[u8]) -> Result<Option<usize>, HeadError> {
    match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) if i + 4 <= MAX_HEAD => Ok(Some(i + 4)),
        Some(_) => Err(HeadError::TooLong),
        None if buf.len() >= MAX_HEAD => Err(HeadError::TooLong),
        None => Ok(None),
    }
}

/// Parses a complete request head (up to and including the blank line).
pub fn parse(head: &[u8]) -> Result<Request, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().ok_or(HeadError::Malformed("empty"))?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed("not HTTP/1.x"));
    }
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("the target is not a path"));
    }
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed("bad header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Request { method: method.to_string(), path, headers })
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Answer with an embedded file, then close.
    Asset(&'static Asset),
    /// Upgrade to a WebSocket for a browser guest: answer
    /// [`upgrade_response`] with this `Sec-WebSocket-Accept` value.
    Guest { accept: String },
    /// Answer with an error status and this text, then close.
    Error { status: u16, text: &'static str },
}

/// Decides what answers `req`.
pub fn route(req: &Request) -> Route {
    if req.method != "GET" && req.method != "HEAD" {
        return Route::Error { status: 405, text: "only GET is served here" };
    }
    if req.path == GUEST_PATH {
        let upgrade =
            req.header_has("upgrade", "websocket") && req.header_has("connection", "upgrade");
        return match (upgrade, req.header("sec-websocket-key"), req.header("sec-websocket-version"))
        {
            (true, Some(key), Some("13")) => Route::Guest {
                accept: async_tungstenite::tungstenite::handshake::derive_accept_key(
                    key.as_bytes(),
                ),
            },
            _ => Route::Error { status: 400, text: "this path takes a WebSocket (version 13)" },
        };
    }
    match assets::find(&req.path) {
        Some(asset) => Route::Asset(asset),
        None => Route::Error { status: 404, text: "no such page; the meeting is at /" },
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        _ => "Error",
    }
}

/// The full response for an asset (`head_only` for `HEAD`).
pub fn asset_response(asset: &Asset, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        asset.content_type,
        asset.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(asset.body);
    }
    out
}

/// A plain-text error response.
pub fn error_response(status: u16, text: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        reason(status),
        text.len()
    )
    .into_bytes()
}

/// The `101 Switching Protocols` answer to a guest's upgrade.
pub fn upgrade_response(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, extra: &str) -> Request {
        let head = format!("GET {path} HTTP/1.1\r\nHost: 10.0.0.2:5000\r\n{extra}\r\n");
        parse(head.as_bytes()).unwrap()
    }

    #[test]
    fn the_page_and_its_assets_are_served_and_the_query_is_ignored() {
        assert!(matches!(route(&get("/?room=r&name=n", "")), Route::Asset(a) if a.path == "/"));
        assert!(
            matches!(route(&get("/app.js", "")), Route::Asset(a) if a.content_type.contains("javascript"))
        );
        assert!(matches!(route(&get("/nope", "")), Route::Error { status: 404, .. }));
    }

    #[test]
    fn the_guest_upgrade_gets_the_rfc_6455_accept_key() {
        // The example of RFC 6455 §1.3.
        let req = get(
            "/guest",
            "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(route(&req), Route::Guest { accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into() });
        assert!(matches!(route(&get("/guest", "")), Route::Error { status: 400, .. }));
    }

    #[test]
    fn bad_heads_are_errors_not_panics() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), Ok(None));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Ok(Some(18)));
        assert_eq!(head_end(&vec![b'a'; MAX_HEAD]), Err(HeadError::TooLong));
        assert!(parse(b"GET\r\n\r\n").is_err());
        assert!(parse(b"GET http://x/ HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(b"GET / SPDY/3\r\n\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n").is_err());
        assert!(parse(&[0xff, 0xfe, b'\r', b'\n', b'\r', b'\n']).is_err());
        let post = parse(b"POST / HTTP/1.1\r\n\r\n").unwrap();
        assert!(matches!(route(&post), Route::Error { status: 405, .. }));
    }
}
