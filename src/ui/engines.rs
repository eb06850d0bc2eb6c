//! The call's media engines as the app drives them: starting them off the
//! UI thread, restarting only what a settings change touched, taking new
//! pictures when an engine wakes the UI, and keeping the call screen's
//! mic/camera/screen buttons true to what actually runs.

use std::time::{Duration, Instant};

use iced::Task;

use super::call::{self, Notice};
use super::settings::Settings;
use super::{App, Handoff, Message, media};
use crate::client::audio::{AudioEngine, AudioEvent};
use crate::client::screen::{Presenter, Viewer};
use crate::client::video::VideoEngine;

/// What a `*Started` message carries: the engine, or why it did not start.
type Started<T> = Result<Handoff<T>, String>;

impl App {
    /// Speaking indicators from the audio engine.
    pub(super) fn on_audio(&mut self, id: u64, event: AudioEvent) -> Task<Message> {
        if self.current(id)
            && let Some(call) = &mut self.call
        {
            call.set_speaking(media::Media::speaking(&event));
        }
        Task::none()
    }

    /// An engine has new pictures (and maybe cameras that failed).
    pub(super) fn on_frames(&mut self, id: u64, errors: Vec<String>) -> Task<Message> {
        if !self.current(id) {
            return Task::none();
        }
        let mut tasks = Vec::new();
        for e in errors {
            tasks.push(self.set_camera_state(false));
            tasks.push(self.notify(Notice { text: e, error: true }));
        }
        self.poll_media();
        Task::batch(tasks)
    }

    pub(super) fn on_video_started(
        &mut self,
        id: u64,
        result: Started<(VideoEngine, Option<String>)>,
    ) -> Task<Message> {
        if !self.current(id) {
            return Task::none();
        }
        match result.map(|h| h.take()) {
            Ok(Some((engine, camera_error))) => {
                let camera = engine.camera_on();
                let old = self.media.replace_video(Some(engine));
                smol::spawn(smol::unblock(move || drop(old))).detach();
                let mut tasks = vec![self.set_camera_state(camera)];
                if let Some(why) = camera_error {
                    tasks.push(
                        self.notify(Notice { text: format!("Camera off: {why}"), error: true }),
                    );
                }
                Task::batch(tasks)
            }
            Ok(None) => Task::none(),
            Err(e) => {
                let t = self.set_camera_state(false);
                Task::batch([
                    t,
                    self.notify(Notice { text: format!("No video: {e}"), error: true }),
                ])
            }
        }
    }

    pub(super) fn on_audio_started(
        &mut self,
        id: u64,
        result: Started<AudioEngine>,
    ) -> Task<Message> {
        if !self.current(id) {
            return Task::none();
        }
        match result.map(|h| h.take()) {
            Ok(Some(engine)) => {
                let mic = !engine.muted();
                let old = self.media.replace_audio(Some(engine));
                if let Some(old) = old {
                    smol::spawn(smol::unblock(move || drop(old))).detach();
                }
                self.set_mic_state(mic);
                Task::none()
            }
            Ok(None) => Task::none(),
            Err(e) => {
                self.set_mic_state(false);
                self.notify(Notice { text: format!("No sound: {e}"), error: true })
            }
        }
    }

    pub(super) fn on_viewer_started(&mut self, id: u64, result: Started<Viewer>) -> Task<Message> {
        if !self.current(id) {
            return Task::none();
        }
        match result.map(|h| h.take()) {
            Ok(Some(viewer)) => {
                self.media.viewer = Some(viewer);
                Task::none()
            }
            Ok(None) => Task::none(),
            Err(e) => self
                .notify(Notice { text: format!("Cannot watch shared screens: {e}"), error: true }),
        }
    }

    pub(super) fn on_presenter_started(
        &mut self,
        id: u64,
        result: Started<Presenter>,
    ) -> Task<Message> {
        if !self.current(id) {
            return Task::none();
        }
        match result.map(|h| h.take()) {
            Ok(Some(p)) => {
                self.media.presenter = Some(p);
                self.set_screen_state(true);
                Task::none()
            }
            Ok(None) => Task::none(),
            Err(e) => {
                self.set_screen_state(false);
                self.notify(Notice { text: format!("Cannot share the screen: {e}"), error: true })
            }
        }
    }

    /// (video, audio) engine generations: each restart bumps one.
    pub fn engine_generations(&self) -> (u64, u64) {
        (self.media.generation, self.media.audio_generation)
    }

    /// New settings saved during a call: restarts only the engines whose
    /// choices changed, off the UI thread; a failure becomes a notification
    /// (via `VideoStarted`/`AudioStarted`) and the call goes on.
    pub(super) fn apply_live(&mut self, old: &Settings) -> Task<Message> {
        let (Some(route), Some(id), Some(call)) =
            (self.route.clone(), self.session.as_ref().map(|s| s.id), self.call.as_mut())
        else {
            return Task::none();
        };
        let new = self.settings.clone();
        let mut layers = None;
        if new.always_full != old.always_full {
            call.always_full = new.always_full;
            layers = call.refresh_layers();
        }
        let (camera_on, mic_on) = (call.media.camera, call.media.mic);
        let mut tasks: Vec<Task<Message>> =
            layers.into_iter().map(|e| self.call_event(e)).collect();
        // A camera that is off picks the new choice up when turned on.
        let video_changed = new.camera != old.camera || new.quality != old.quality;
        if video_changed && (camera_on || self.media.video.is_none()) {
            let camera = camera_on || new.camera.trim() != "none";
            let old_video = self.media.replace_video(None);
            let (r, s) = (route.clone(), new.clone());
            tasks.push(Task::perform(
                smol::unblock(move || {
                    drop(old_video);
                    media::start_video(&r, &s, camera)
                }),
                move |r| Message::VideoStarted(id, r.map(Handoff::new)),
            ));
        }
        if new.voice != old.voice {
            // Takes effect at the engine's next frame; no restart.
            if let Some(audio) = &self.media.audio {
                audio.set_voice(new.voice);
            }
        }
        if new.mic != old.mic || new.speaker != old.speaker {
            let muted = !mic_on || new.mic.trim() == "none";
            let old_audio = self.media.replace_audio(None);
            tasks.push(Task::perform(
                smol::unblock(move || {
                    drop(old_audio);
                    media::start_audio(&route, &new, muted)
                }),
                move |r| Message::AudioStarted(id, r.map(Handoff::new)),
            ));
        }
        Task::batch(tasks)
    }

    pub(super) fn current(&self, id: u64) -> bool {
        self.session.as_ref().map(|s| s.id) == Some(id)
    }

    /// Starts video, audio and the screen viewer, each off the UI thread.
    pub(super) fn start_engines(&mut self, id: u64, route: media::Route) -> Task<Message> {
        let settings = self.settings.clone();
        let camera = settings.camera.trim() != "none";
        let mic = settings.mic.trim() != "none";
        let (r1, s1, r2, s2, r3) =
            (route.clone(), settings.clone(), route.clone(), settings, route);
        Task::batch([
            Task::perform(smol::unblock(move || media::start_video(&r1, &s1, camera)), move |r| {
                Message::VideoStarted(id, r.map(Handoff::new))
            }),
            Task::perform(smol::unblock(move || media::start_audio(&r2, &s2, !mic)), move |r| {
                Message::AudioStarted(id, r.map(Handoff::new))
            }),
            Task::perform(smol::unblock(move || media::start_viewer(&r3)), move |r| {
                Message::ViewerStarted(id, r.map(Handoff::new))
            }),
        ])
    }

    pub(super) fn poll_media(&mut self) {
        let polled = self.media.poll();
        if let Some(call) = &mut self.call {
            if let (Some(clicked), false) = (self.join_clicked, polled.frames.is_empty()) {
                let ms = clicked.elapsed().as_secs_f64() * 1000.0;
                self.first_frame_ms = Some(ms);
                self.join_clicked = None;
                tracing::info!("join → first remote frame shown: {ms:.0} ms");
            }
            self.shown += polled.frames.len() as u64;
            let since = *self.shown_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(10) {
                let secs = since.elapsed().as_secs_f64();
                tracing::info!("video: {:.1} frames/s shown", self.shown as f64 / secs);
                self.shown = 0;
                self.shown_since = Some(Instant::now());
            }
            for (name, frame) in polled.frames {
                call.set_frame(&name, frame);
            }
            if let Some((presenter, frame)) = polled.screen
                && call.presenter.as_deref() == Some(presenter.as_str())
            {
                call.screen = Some(frame);
            }
        }
    }

    pub(super) fn publish_media(&mut self) {
        if let (Some(call), Some(s)) = (&self.call, &self.session) {
            let _ = s.client.set_media(call.media);
        }
    }

    pub(super) fn set_camera_state(&mut self, on: bool) -> Task<Message> {
        if let Some(call) = &mut self.call {
            call.media.camera = on;
            let _ = call.update(call::Message::Refresh);
        }
        self.publish_media();
        Task::none()
    }

    pub(super) fn set_mic_state(&mut self, on: bool) {
        if let Some(call) = &mut self.call {
            call.media.mic = on;
            let _ = call.update(call::Message::Refresh);
        }
        self.publish_media();
    }

    pub(super) fn set_screen_state(&mut self, on: bool) {
        if let Some(call) = &mut self.call {
            call.media.screen = on;
            let _ = call.update(call::Message::Refresh);
        }
        self.publish_media();
    }

    /// The user flipped mic, camera or screen in the call screen.
    pub(super) fn media_changed(&mut self, wanted: crate::proto::MediaState) -> Task<Message> {
        let (Some(route), Some(id)) = (self.route.clone(), self.session.as_ref().map(|s| s.id))
        else {
            return Task::none();
        };
        let mut tasks = Vec::new();
        // Microphone: the engine just stops sending.
        match &self.media.audio {
            Some(a) => a.set_muted(!wanted.mic),
            None if wanted.mic => {
                self.set_mic_state(false);
                tasks.push(self.notify(Notice {
                    text: "No microphone: choose one in Settings (or \"tone\").".into(),
                    error: true,
                }));
            }
            None => {}
        }
        // Camera: restart the video engine with or without it.
        let camera_now = self.media.video.as_ref().is_some_and(|v| v.camera_on());
        if wanted.camera != camera_now {
            let old = self.media.replace_video(None);
            let settings = self.settings.clone();
            let camera = wanted.camera;
            let r = route.clone();
            tasks.push(Task::perform(
                smol::unblock(move || {
                    drop(old);
                    media::start_video(&r, &settings, camera)
                }),
                move |r| Message::VideoStarted(id, r.map(Handoff::new)),
            ));
        }
        // Screen: start or stop presenting.
        if wanted.screen && self.media.presenter.is_none() {
            tasks.push(Task::perform(
                smol::unblock(move || media::start_presenter(&route)),
                move |r| Message::PresenterStarted(id, r.map(Handoff::new)),
            ));
        } else if !wanted.screen
            && let Some(p) = self.media.presenter.take()
        {
            smol::spawn(smol::unblock(move || drop(p))).detach();
        }
        self.publish_media();
        Task::batch(tasks)
    }
}
