//! A bot's screen share and screen viewer (`--share-screen`,
//! `--view-screen`, `--save-png`).

use std::time::Instant;

use serde::Serialize;

use super::super::session::Client;
use super::super::streams::StreamOpener;
use super::{PresentOptions, Presenter, PresenterEvent, ScreenTarget, Viewer};
use crate::media::screen::{DEFAULT_FPS, MAX_FPS, ScreenSource, encode_png_rgba};
use crate::stats::Percentiles;

/// `--share-screen`, `--view-screen`, `--save-png`, `--screen-fps`.
#[derive(Debug, Clone, Default)]
pub struct BotScreenOptions {
    /// `test`, `test:WxH`, or an X display such as `:99`.
    pub share: Option<String>,
    pub view: bool,
    /// Where a viewer saves the last picture it saw.
    pub save_png: Option<std::path::PathBuf>,
    /// Capture rate when sharing (default 10).
    pub fps: Option<u32>,
}

impl BotScreenOptions {
    pub fn any(&self) -> bool {
        self.share.is_some() || self.view
    }
}

/// The `screen` object of a bot's JSON report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScreenReport {
    /// "presenter" or "viewer".
    pub role: String,
    /// Updates sent (presenter) or complete pictures received (viewer).
    pub updates: u64,
    pub fps: f64,
    /// Viewer: capture → picture shown. Presenter: capture + diff + encode.
    pub latency_ms: Option<Percentiles>,
    pub bytes: u64,
    pub tiles: u64,
    /// Who the viewer last saw presenting.
    pub presenter: Option<String>,
    pub png: Option<String>,
}

/// A bot's screen share and/or screen viewer.
pub struct BotScreen {
    presenter: Option<Presenter>,
    viewer: Option<Viewer>,
    started: Instant,
    save_png: Option<std::path::PathBuf>,
}

impl BotScreen {
    /// Starts what `opts` asks for, with streams on the client's link;
    /// problems come back as report errors.
    pub async fn start(
        client: &Client,
        opts: &BotScreenOptions,
        media: &mut crate::proto::MediaState,
    ) -> (BotScreen, Vec<String>) {
        let opener = StreamOpener::for_client(client);
        BotScreen::start_via(client, opener, opts, media).await
    }

    /// [`BotScreen::start`] with streams from `opener`.
    pub async fn start_via(
        client: &Client,
        opener: StreamOpener,
        opts: &BotScreenOptions,
        media: &mut crate::proto::MediaState,
    ) -> (BotScreen, Vec<String>) {
        let target = ScreenTarget { opener, welcome: client.current_slot() };
        let mut errors = Vec::new();
        let viewer = if opts.view {
            match Viewer::start_async(target.clone()).await {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(format!("screen viewer: {e}"));
                    None
                }
            }
        } else {
            None
        };
        let presenter = match &opts.share {
            Some(src) => {
                let mut p = PresentOptions::new(ScreenSource::parse(src));
                p.fps = opts.fps.unwrap_or(DEFAULT_FPS).clamp(1, MAX_FPS);
                match Presenter::start_async(target, p).await {
                    Ok(p) => {
                        media.screen = true;
                        let _ = client.set_media(*media);
                        Some(p)
                    }
                    Err(e) => {
                        errors.push(format!("screen share: {e}"));
                        None
                    }
                }
            }
            None => None,
        };
        let bot = BotScreen {
            presenter,
            viewer,
            started: Instant::now(),
            save_png: opts.save_png.clone(),
        };
        (bot, errors)
    }

    /// Stops everything, saves the PNG if asked, and reports.
    pub fn finish(self) -> (Option<ScreenReport>, Vec<String>) {
        let mut errors = Vec::new();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mut report = None;
        if let Some(p) = self.presenter {
            let events = p.events();
            while let Ok(e) = events.try_recv() {
                if let PresenterEvent::Ended { reason } = e {
                    errors.push(format!("screen share ended: {reason}"));
                }
            }
            let s = p.stop();
            report = Some(ScreenReport {
                role: "presenter".into(),
                updates: s.updates,
                fps: s.updates as f64 / secs,
                latency_ms: Percentiles::of(&s.process_ms),
                bytes: s.bytes,
                tiles: s.tiles,
                presenter: None,
                png: None,
            });
        }
        if let Some(v) = self.viewer {
            let latest = v.latest();
            let s = v.stop();
            let span = match (s.first_update, s.last_update) {
                (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
                _ => secs,
            };
            let mut png = None;
            if let Some(path) = &self.save_png {
                match &latest {
                    Some(img) => {
                        let saved = encode_png_rgba(img.width, img.height, &img.rgba)
                            .map_err(|e| e.to_string())
                            .and_then(|bytes| {
                                std::fs::write(path, bytes).map_err(|e| e.to_string())
                            });
                        match saved {
                            Ok(()) => png = Some(path.display().to_string()),
                            Err(e) => errors.push(format!("cannot save {}: {e}", path.display())),
                        }
                    }
                    None => errors.push(format!(
                        "no shared screen was seen, so {} was not saved",
                        path.display()
                    )),
                }
            }
            report = Some(ScreenReport {
                role: "viewer".into(),
                updates: s.updates,
                fps: s.updates.saturating_sub(1) as f64 / span.max(1e-3),
                latency_ms: Percentiles::of(&s.latency_ms),
                bytes: s.bytes,
                tiles: s.tiles,
                presenter: latest.map(|i| i.presenter.clone()),
                png,
            });
        }
        (report, errors)
    }
}
