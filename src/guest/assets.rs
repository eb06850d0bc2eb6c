//! The web client, embedded in the binary (plain HTML, JS and CSS; no build
//! step). Sources: `src/guest/web/`.

/// One embedded file.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    /// The request path it answers.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file the page needs.
pub static ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("web/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("web/app.js"),
    },
    Asset {
        path: "/worklet.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("web/worklet.js"),
    },
    Asset {
        path: "/encoder.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("web/encoder.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("web/style.css"),
    },
];

/// The asset at `path` (`/index.html` is `/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}
