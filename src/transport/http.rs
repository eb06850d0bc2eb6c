//! The sans-IO HTTP/1.1 front of TCP 5000: one request head, parsed with
//! `httparse`, and the bytes of the short answers the host gives.
//!
//! After the TLS handshake every connection to the host's TCP port sends one
//! HTTP/1.1 request (RFC 9112): the native tunnel's WebSocket upgrade
//! ([`super::fallback::WS_PATH`]), a browser guest's page and assets, or
//! their WebSocket upgrade. [`super::fallback::accept_any`] reads the head
//! (at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields, within a time
//! limit) and routes it.

/// Largest request head, request line and fields together (431 past it):
/// browsers send about 1 KiB.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request (431 past it); browsers send ~15.
pub const MAX_HEADERS: usize = 64;

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
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
    pub fn header_has(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The `Sec-WebSocket-Accept` value for this request if it is a valid
    /// WebSocket opening handshake (RFC 6455 §4.2.1: `GET`, `Upgrade:
    /// websocket`, `Connection: Upgrade`, a key, version 13), else why not.
    pub fn websocket_accept(&self) -> Result<String, &'static str> {
        if self.method != "GET" {
            return Err("a WebSocket opens with GET");
        }
        if !self.header_has("upgrade", "websocket") || !self.header_has("connection", "upgrade") {
            return Err("this path takes a WebSocket upgrade");
        }
        if self.header("sec-websocket-version") != Some("13") {
            return Err("only WebSocket version 13 is spoken here");
        }
        let key = self.header("sec-websocket-key").ok_or("the WebSocket key is missing")?;
        Ok(async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
    }
}

/// Why a request head cannot be answered normally; each maps to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error(
        "the request head is longer than {MAX_HEAD} bytes or has more than {MAX_HEADERS} fields"
    )]
    TooLarge,
    #[error("malformed HTTP request: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    /// The response status: 431 (RFC 6585 §5) or 400.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed(_) => 400,
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is
/// incomplete, else the request and the head's length in bytes. Bytes after
/// the head are not looked at.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(malformed(e))),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(HeadError::Malformed("no request line"));
    };
    // HTTP/1.0 has no Upgrade and no Host rule; browsers speak 1.1.
    if req.version != Some(1) {
        return Err(HeadError::Malformed("only HTTP/1.1 is spoken here"));
    }
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("the target is not a path"));
    }
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HeadError::Malformed("a header value is not UTF-8"))?;
        headers.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let target = target.to_string();
    Ok(Some((Request { method: method.to_string(), target, path, headers }, len)))
}

fn malformed(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "bad header name",
        httparse::Error::HeaderValue => "bad header value",
        httparse::Error::NewLine => "bad line ending",
        httparse::Error::Status => "bad status",
        httparse::Error::Token => "bad method or token",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "bad HTTP version",
    }
}

/// The reason phrase of `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// A plain-text error response (the connection closes after it).
pub fn error_response(status: u16, text: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{text}",
        reason(status),
        text.len()
    )
    .into_bytes()
}

/// Where a plain-HTTP `request` (a browser sent to `http://` on the TLS
/// port) should go: `https://HOST/TARGET`, from its `Host` header; `None`
/// without a plausible one (a name or address and a port only).
pub fn https_location(request: &Request) -> Option<String> {
    let host = request.header("host").filter(|h| !h.is_empty())?;
    let plausible = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    host.chars().all(plausible).then(|| format!("https://{host}{}", request.target))
}

/// A `301` to `location` (from [`https_location`]).
pub fn redirect_response(location: &str) -> Vec<u8> {
    let text = "this is an HTTPS port";
    format!(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
    .into_bytes()
}

/// The `101 Switching Protocols` answer to a WebSocket upgrade.
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
        parse(head.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn a_head_is_parsed_once_complete_and_the_query_is_dropped() {
        let head = b"GET /app.js?x=1 HTTP/1.1\r\nHost: h\r\nX-A:  b \r\n\r\nrest";
        assert_eq!(parse(&head[..20]), Ok(None));
        let (req, len) = parse(head).unwrap().unwrap();
        assert_eq!(len, head.len() - 4, "the bytes after the head are not taken");
        assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/app.js"));
        assert_eq!(req.header("x-a"), Some("b"));
    }

    #[test]
    fn the_upgrade_gets_the_rfc_6455_accept_key() {
        // The example of RFC 6455 §1.3.
        let req = get(
            "/guest",
            "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(req.websocket_accept().as_deref(), Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(get("/guest", "").websocket_accept().is_err());
        // Version 8 (an old draft) is not spoken.
        let old = get(
            "/guest",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Version: 8\r\n",
        );
        assert!(old.websocket_accept().is_err());
    }

    #[test]
    fn bad_heads_are_errors_with_a_status_not_panics() {
        let bad = |head: &[u8]| parse(head).map(|r| r.map(|(req, _)| req));
        // Oversized: a long field, too many fields, or no end in MAX_HEAD bytes.
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(bad(long.as_bytes()), Err(HeadError::TooLarge));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(bad(many.as_bytes()), Err(HeadError::TooLarge));
        assert_eq!(bad(&vec![b'a'; MAX_HEAD]), Err(HeadError::TooLarge));
        let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(bad(endless.as_bytes()), Err(HeadError::TooLarge));
        assert_eq!(HeadError::TooLarge.status(), 431);
        // Malformed: 400.
        for head in [
            &b"GET\r\n\r\n"[..],
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nnocolon\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert_eq!(bad(head).map_err(|e| e.status()), Err(400), "{head:?}");
        }
    }

    #[test]
    fn plain_http_is_sent_to_https_on_the_same_host_and_port() {
        let req = get("/?room=r&name=n", "");
        assert_eq!(https_location(&req).as_deref(), Some("https://10.0.0.2:5000/?room=r&name=n"));
        let v6 = parse(b"GET / HTTP/1.1\r\nHost: [fe80::1]:5000\r\n\r\n").unwrap().unwrap().0;
        assert_eq!(https_location(&v6).as_deref(), Some("https://[fe80::1]:5000/"));
        // No Host, or one that could lead elsewhere: no redirect.
        for head in [&b"GET / HTTP/1.1\r\n\r\n"[..], b"GET / HTTP/1.1\r\nHost: a@evil/x\r\n\r\n"] {
            let req = parse(head).unwrap().unwrap().0;
            assert_eq!(https_location(&req), None, "{head:?}");
        }
        let answer = String::from_utf8(redirect_response("https://h:5000/")).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 301 Moved Permanently\r\nLocation: https://h:5000/\r\n")
        );
    }

    #[test]
    fn answers_say_their_status_and_length() {
        let answer = String::from_utf8(error_response(404, "no such page")).unwrap();
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
        assert!(
            answer.contains("Content-Length: 12\r\n") && answer.ends_with("\r\n\r\nno such page")
        );
        let answer = String::from_utf8(error_response(431, "")).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }
}
