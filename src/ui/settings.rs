//! Settings: camera, microphone and speaker (device-free ones included) and
//! video quality, kept in `settings.json` next to the schedule.

use std::path::PathBuf;

use iced::widget::{button, checkbox, column, pick_list, row, text, text_input};
use iced::{Element, Task};
use serde::{Deserialize, Serialize};

use crate::media::audio::apm::{NoiseSuppression, VoiceSettings};
use crate::schedule::CONFIG_DIR_ENV;

pub const FILE_NAME: &str = "settings.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Quality {
    /// 320×240: slow networks and machines.
    Low,
    /// 640×480 @ 15 fps, the default.
    #[default]
    Standard,
    /// 1280×720.
    High,
}

impl Quality {
    pub const ALL: [Quality; 3] = [Quality::Low, Quality::Standard, Quality::High];

    pub fn size(self) -> (u32, u32) {
        match self {
            Quality::Low => (320, 240),
            Quality::Standard => (640, 480),
            Quality::High => (1280, 720),
        }
    }
}

impl std::fmt::Display for Quality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (w, h) = self.size();
        let name = match self {
            Quality::Low => "Low",
            Quality::Standard => "Standard",
            Quality::High => "High",
        };
        write!(f, "{name} ({w}×{h})")
    }
}

/// Device choices use the same words as the bots' `--camera`, `--mic` and
/// `--speaker` flags, so a value can be copied from one to the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub name: String,
    pub camera: String,
    pub mic: String,
    pub speaker: String,
    pub quality: Quality,
    /// Receive everyone's full-size video even in a big grid (more
    /// bandwidth and CPU; thumbnails are the default there).
    pub always_full: bool,
    /// Echo cancellation, noise suppression and gain control.
    pub voice: VoiceSettings,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            name: String::new(),
            camera: "default".into(),
            mic: "default".into(),
            speaker: "default".into(),
            quality: Quality::Standard,
            always_full: false,
            voice: VoiceSettings::default(),
        }
    }
}

/// Where settings live: `$SAPORA_CONFIG_DIR`, else the platform config dir.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "sapora").map(|d| d.config_dir().to_path_buf())
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("there is no configuration directory to keep settings in")]
    NoConfigDir,
    #[error("cannot write settings to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl Settings {
    /// Missing or unreadable settings are not an error: defaults are used,
    /// and a warning names the file.
    pub fn load() -> Settings {
        let Some(path) = config_dir().map(|d| d.join(FILE_NAME)) else {
            return Settings::default();
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable settings");
                Settings::default()
            }),
            Err(_) => Settings::default(),
        }
    }

    /// Writes atomically (temp file + rename), like the schedule store.
    pub fn save(&self) -> Result<PathBuf, SettingsError> {
        let dir = config_dir().ok_or(SettingsError::NoConfigDir)?;
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, json)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| SettingsError::Write { path: path.clone(), source })?;
        Ok(path)
    }
}

/// The settings dialog: edits a copy, applied and saved on "Save".
pub struct Dialog {
    pub draft: Settings,
    /// Choices offered besides free text (device-free ones first).
    pub cameras: Vec<String>,
    pub mics: Vec<String>,
    pub speakers: Vec<String>,
    pub status: Option<String>,
    /// Opened during a call: "Save" also restarts the engines it affects.
    pub live: bool,
}

#[derive(Debug, Clone)]
pub enum Message {
    Camera(String),
    Mic(String),
    Speaker(String),
    Quality(Quality),
    AlwaysFull(bool),
    Aec(bool),
    NoiseSuppression(NoiseSuppression),
    Agc(bool),
    Save,
    Saved(Result<String, String>),
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// New settings to use from now on (already being written to disk).
    Apply(Settings),
    Close,
}

impl Dialog {
    pub fn new(current: &Settings) -> Dialog {
        let words = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Dialog {
            draft: current.clone(),
            cameras: words(&["default", "test", "none"]),
            mics: words(&["default", "tone", "clicks", "none"]),
            speakers: words(&["default", "null"]),
            status: None,
            live: false,
        }
    }

    /// The dialog as the call screen opens it: changes apply at once.
    pub fn in_call(current: &Settings) -> Dialog {
        Dialog { live: true, ..Dialog::new(current) }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::Camera(v) => self.draft.camera = v,
            Message::Mic(v) => self.draft.mic = v,
            Message::Speaker(v) => self.draft.speaker = v,
            Message::Quality(q) => self.draft.quality = q,
            Message::AlwaysFull(v) => self.draft.always_full = v,
            Message::Aec(v) => self.draft.voice.aec = v,
            Message::NoiseSuppression(v) => self.draft.voice.noise_suppression = v,
            Message::Agc(v) => self.draft.voice.agc = v,
            Message::Save => {
                let s = self.draft.clone();
                let save = smol::unblock(move || {
                    s.save().map(|p| p.display().to_string()).map_err(|e| e.to_string())
                });
                self.status = Some("Saving…".into());
                return (
                    Task::perform(save, Message::Saved),
                    Some(Event::Apply(self.draft.clone())),
                );
            }
            Message::Saved(Ok(path)) => self.status = Some(format!("Saved to {path}")),
            Message::Saved(Err(e)) => self.status = Some(e),
            Message::Close => return (Task::none(), Some(Event::Close)),
        }
        (Task::none(), None)
    }

    pub fn view(&self) -> Element<'_, Message> {
        let choice =
            |label: &'static str, list: &[String], value: &str, on: fn(String) -> Message| {
                row![
                    text(label).width(110),
                    pick_list(list.to_vec(), Some(value.to_string()), on).width(180),
                    text_input("or a device name / wav:PATH", value).on_input(on).width(260),
                ]
                .spacing(8)
                .align_y(iced::Center)
            };
        let mut body = column![
            text("Settings").size(22),
            choice("Camera", &self.cameras, &self.draft.camera, Message::Camera),
            choice("Microphone", &self.mics, &self.draft.mic, Message::Mic),
            choice("Speaker", &self.speakers, &self.draft.speaker, Message::Speaker),
            row![
                text("Video quality").width(110),
                pick_list(Quality::ALL, Some(self.draft.quality), Message::Quality),
            ]
            .spacing(8),
            checkbox(self.draft.always_full)
                .label("Always receive full-size video (more bandwidth and CPU)")
                .on_toggle(Message::AlwaysFull),
            checkbox(self.draft.voice.aec)
                .label("Echo cancellation (others do not hear themselves from your speakers)")
                .on_toggle(Message::Aec),
            row![
                text("Noise suppression").width(110),
                pick_list(
                    NoiseSuppression::ALL,
                    Some(self.draft.voice.noise_suppression),
                    Message::NoiseSuppression
                ),
            ]
            .spacing(8),
            checkbox(self.draft.voice.agc)
                .label("Automatic gain control (an even voice level)")
                .on_toggle(Message::Agc),
            text(if self.live {
                "Save applies changes now: only the camera or the sound restarts, the call goes on."
            } else {
                "Device choices take effect at the next join."
            })
            .size(12),
            row![
                button(text("Save")).on_press(Message::Save),
                button(text("Close")).style(button::secondary).on_press(Message::Close),
            ]
            .spacing(8),
        ]
        .spacing(12)
        .padding(24);
        if let Some(s) = &self.status {
            body = body.push(text(s.clone()).size(12));
        }
        body.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_switches_are_on_by_default_and_apply_on_save() {
        let mut d = Dialog::new(&Settings::default());
        assert_eq!(d.draft.voice, VoiceSettings::default());
        let _ = d.update(Message::Aec(false));
        let _ = d.update(Message::NoiseSuppression(NoiseSuppression::Strong));
        let _ = d.update(Message::Agc(false));
        let (_, event) = d.update(Message::Save);
        let Some(Event::Apply(s)) = event else { panic!("{event:?}") };
        assert_eq!(
            s.voice,
            VoiceSettings { aec: false, noise_suppression: NoiseSuppression::Strong, agc: false }
        );
        // Settings saved before these switches existed load with them on.
        let old: Settings = serde_json::from_str(r#"{"name":"ann","mic":"tone"}"#).unwrap();
        assert_eq!(old.voice, VoiceSettings::default());
    }
}
