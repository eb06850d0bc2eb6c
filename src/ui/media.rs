//! The call's media engines as the app holds them: video, audio and the
//! screen viewer/presenter from `client::*`, and the glue between their
//! "latest frame" slots and the call screen. Engines start and stop off the
//! UI thread (devices can take seconds to open); frames are turned into image
//! handles here, once per new frame, never in `view`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::call::Frame;
use super::settings::Settings;
use crate::client::audio::{AudioConfig, AudioEngine, AudioEvent};
use crate::client::media::MediaLink;
use crate::client::screen::{PresentOptions, Presenter, ScreenImage, ScreenTarget, Viewer};
use crate::client::video::{VideoEngine, VideoOptions};
use crate::media::audio::{MicSpec, SpeakerSpec};
use crate::media::jpeg::Rgba;
use crate::media::screen::ScreenSource;
use crate::media::video::{CameraChoice, CaptureConfig};
use crate::proto::{SPEAKING_LEVEL, SessionId, Subscription, Welcome};

/// What the app needs to (re)start engines for one session.
#[derive(Clone)]
pub struct Route {
    pub welcome: Arc<Mutex<Welcome>>,
    /// The session's current link (files and screen streams).
    pub link: Arc<Mutex<crate::transport::link::Link>>,
    pub host: IpAddr,
    pub name: String,
}

/// The camera word from settings or `--camera`; "default" is the first device.
pub fn camera_choice(word: &str) -> Result<CameraChoice, String> {
    match word.trim() {
        "" | "default" => Ok(CameraChoice::Index(0)),
        w => w.parse(),
    }
}

pub fn video_options(
    route: &Route,
    settings: &Settings,
    camera: bool,
) -> Result<VideoOptions, String> {
    let choice = if camera { camera_choice(&settings.camera)? } else { CameraChoice::None };
    let mut opts = VideoOptions::new(route.name.clone(), choice, Subscription::Thumb);
    let (width, height) = settings.quality.size();
    opts.capture = CaptureConfig { width: width as usize, height: height as usize, fps: 15 };
    Ok(opts)
}

/// Starts video; blocking (a camera may take seconds to open). The second
/// part says why the camera is off, if it failed.
pub fn start_video(
    route: &Route,
    settings: &Settings,
    camera: bool,
) -> Result<(VideoEngine, Option<String>), String> {
    let opts = video_options(route, settings, camera)?;
    let media =
        MediaLink::new(route.link.clone(), route.welcome.clone()).map_err(|e| e.to_string())?;
    VideoEngine::start(media, opts).map_err(|e| e.to_string())
}

/// Starts audio, muted or not; blocking (opens devices).
pub fn start_audio(route: &Route, settings: &Settings, muted: bool) -> Result<AudioEngine, String> {
    let mic: MicSpec =
        settings.mic.parse().map_err(|e: crate::media::audio::AudioError| e.to_string())?;
    let speaker: SpeakerSpec =
        settings.speaker.parse().map_err(|e: crate::media::audio::AudioError| e.to_string())?;
    let mut config = AudioConfig::new(mic, speaker);
    config.muted = muted;
    config.voice = settings.voice;
    let media =
        MediaLink::new(route.link.clone(), route.welcome.clone()).map_err(|e| e.to_string())?;
    AudioEngine::start(media, config).map_err(|e| e.to_string())
}

pub fn start_viewer(route: &Route) -> Result<Viewer, String> {
    let target = ScreenTarget::link(route.link.clone(), route.welcome.clone());
    Viewer::start(target).map_err(|e| e.to_string())
}

/// Shares `$DISPLAY` (the screen this app shows on).
pub fn start_presenter(route: &Route) -> Result<Presenter, String> {
    let target = ScreenTarget::link(route.link.clone(), route.welcome.clone());
    let source = ScreenSource::Display(String::new());
    Presenter::start(target, PresentOptions::new(source)).map_err(|e| e.to_string())
}

/// A decoded picture as the engines share it (`Arc<Rgba>` for cameras,
/// `Arc<ScreenImage>` for the shared screen): its RGBA bytes.
trait Pixels: Send + Sync + 'static {
    fn rgba(&self) -> &[u8];
}

impl Pixels for Rgba {
    fn rgba(&self) -> &[u8] {
        &self.pixels
    }
}

impl Pixels for ScreenImage {
    fn rgba(&self) -> &[u8] {
        &self.rgba
    }
}

/// Owns one reference to an engine's picture for as long as the image
/// handle lives.
struct Shared<T>(Arc<T>);

impl<T: Pixels> AsRef<[u8]> for Shared<T> {
    fn as_ref(&self) -> &[u8] {
        self.0.rgba()
    }
}

/// The picture's pixels as [`Bytes`] without copying them: a 640×480 camera
/// frame is 1.2 MB, a 1080p screen 8 MB, and the engine's slot already
/// holds them behind an `Arc`.
fn shared<T: Pixels>(picture: Arc<T>) -> Bytes {
    Bytes::from_owner(Shared(picture))
}

/// The engines of the current call and what was last shown from them.
#[derive(Default)]
pub struct Media {
    pub video: Option<VideoEngine>,
    pub audio: Option<AudioEngine>,
    pub viewer: Option<Viewer>,
    pub presenter: Option<Presenter>,
    /// Last frame id shown per sender, so a frame is converted only once.
    shown: HashMap<SessionId, u32>,
    screen_shown: Option<(String, u32)>,
    /// Sender ids by name, learnt from received frames.
    ids: HashMap<String, SessionId>,
    /// The layer the layout wants per name, and what the engine was told.
    wanted: HashMap<String, Subscription>,
    told: HashMap<SessionId, Subscription>,
    /// Bumped whenever the video engine is replaced.
    pub generation: u64,
    /// Bumped whenever the audio engine is replaced (its events need a
    /// subscription of their own).
    pub audio_generation: u64,
}

/// What one poll found.
#[derive(Default)]
pub struct Polled {
    pub frames: Vec<(String, Frame)>,
    pub screen: Option<(String, Frame)>,
}

impl Media {
    pub fn set_layers(&mut self, changes: Vec<(String, Subscription)>) {
        for (name, layer) in changes {
            self.wanted.insert(name, layer);
        }
        self.apply_layers();
    }

    fn apply_layers(&mut self) {
        let Some(video) = &self.video else { return };
        for (name, layer) in &self.wanted {
            let Some(&id) = self.ids.get(name) else { continue };
            let sub = *layer;
            if self.told.get(&id) != Some(&sub) {
                video.subscribe(id, sub);
                self.told.insert(id, sub);
            }
        }
    }

    /// A new video engine (camera switched): it knows no subscriptions yet.
    pub fn replace_video(&mut self, video: Option<VideoEngine>) -> Option<VideoEngine> {
        self.told.clear();
        self.generation += 1;
        let old = std::mem::replace(&mut self.video, video);
        self.apply_layers();
        old
    }

    /// A new audio engine (microphone or speaker switched).
    pub fn replace_audio(&mut self, audio: Option<AudioEngine>) -> Option<AudioEngine> {
        self.audio_generation += 1;
        std::mem::replace(&mut self.audio, audio)
    }

    /// Takes the newest frame of each sender that changed since the last
    /// poll and builds its image handle; older frames are never seen.
    pub fn poll(&mut self) -> Polled {
        let mut out = Polled::default();
        if let Some(video) = &self.video {
            let fresh: Vec<_> = {
                let slot = video.frames();
                let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                slot.values()
                    .filter(|f| self.shown.get(&f.sender) != Some(&f.frame_id))
                    .cloned()
                    .collect()
            };
            let mut learnt = false;
            for f in fresh {
                self.shown.insert(f.sender, f.frame_id);
                if self.ids.insert(f.name.clone(), f.sender) != Some(f.sender) {
                    learnt = true;
                }
                let (width, height) = (f.image.width as u32, f.image.height as u32);
                if let Some(frame) = Frame::from_rgba(width, height, shared(f.image.clone())) {
                    out.frames.push((f.name.clone(), frame));
                }
            }
            if learnt {
                self.apply_layers();
            }
        }
        if let Some(viewer) = &self.viewer
            && let Some(img) = viewer.latest()
        {
            let key = (img.presenter.clone(), img.frame);
            if self.screen_shown.as_ref() != Some(&key) {
                let (width, height) = (img.width as u32, img.height as u32);
                let presenter = img.presenter.clone();
                if let Some(frame) = Frame::from_rgba(width, height, shared(img)) {
                    out.screen = Some((presenter, frame));
                }
                self.screen_shown = Some(key);
            }
        }
        out
    }

    /// Names currently speaking, from an audio event.
    pub fn speaking(event: &AudioEvent) -> Vec<String> {
        match event {
            AudioEvent::Levels(levels) => levels
                .iter()
                .filter(|l| l.level >= SPEAKING_LEVEL)
                .map(|l| l.name.clone())
                .collect(),
        }
    }

    /// Everything, for stopping off the UI thread.
    pub fn take_all(&mut self) -> impl FnOnce() + Send + 'static {
        let (v, a, s, p) =
            (self.video.take(), self.audio.take(), self.viewer.take(), self.presenter.take());
        move || {
            drop((v, a, s, p));
        }
    }
}

/// The word for a camera choice, as `--camera` and the settings take it.
pub fn camera_word(choice: &CameraChoice) -> String {
    match choice {
        CameraChoice::None => "none".into(),
        CameraChoice::Test => "test".into(),
        CameraChoice::Index(i) => i.to_string(),
        CameraChoice::Name(n) => n.clone(),
    }
}
