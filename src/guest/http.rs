//! The sans-IO routing of the guest web page: which request gets which
//! answer, and the bytes of an asset's answer. The request head itself is
//! parsed by [`crate::transport::http`] (the host's TCP port reads it before
//! choosing between the native tunnel and this page).
//!
//! Only what a browser needs from the host is understood: `GET` (and
//! `HEAD`) of the embedded page and its assets, and the WebSocket upgrade
//! of [`GUEST_PATH`] (RFC 6455 §4.2). Everything else gets a short error
//! response and the connection closes.

use super::assets::{self, Asset};
use crate::transport::http::Request;

/// The WebSocket path browser guests connect to.
pub const GUEST_PATH: &str = "/guest";

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Answer with an embedded file, then close.
    Asset(&'static Asset),
    /// Upgrade to a WebSocket for a browser guest: answer
    /// `transport::http::upgrade_response` with this `Sec-WebSocket-Accept`
    /// value.
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
        return match req.websocket_accept() {
            Ok(accept) => Route::Guest { accept },
            Err(text) => Route::Error { status: 400, text },
        };
    }
    match assets::find(&req.path) {
        Some(asset) => Route::Asset(asset),
        None => Route::Error { status: 404, text: "no such page; the meeting is at /" },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::http::parse;

    fn request(method: &str, path: &str, extra: &str) -> Request {
        let head = format!("{method} {path} HTTP/1.1\r\nHost: 10.0.0.2:5000\r\n{extra}\r\n");
        parse(head.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn the_page_and_its_assets_are_served_and_the_query_is_ignored() {
        let get = |path| route(&request("GET", path, ""));
        assert!(matches!(get("/?room=r&name=n"), Route::Asset(a) if a.path == "/"));
        assert!(matches!(get("/app.js"), Route::Asset(a) if a.content_type.contains("javascript")));
        assert!(matches!(get("/nope"), Route::Error { status: 404, .. }));
        let post = request("POST", "/", "");
        assert!(matches!(route(&post), Route::Error { status: 405, .. }));
        let head = String::from_utf8(asset_response(assets::find("/").unwrap(), true)).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn the_guest_path_takes_only_a_websocket_upgrade() {
        // The example of RFC 6455 §1.3.
        let req = request(
            "GET",
            "/guest",
            "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(route(&req), Route::Guest { accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into() });
        assert!(matches!(route(&request("GET", "/guest", "")), Route::Error { status: 400, .. }));
    }
}
