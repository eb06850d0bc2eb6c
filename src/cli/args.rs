//! Flag groups several subcommands share: network (`--port-offset`,
//! `--discovery-addr`), `--passcode`, and the desktop app's devices and voice
//! processing.

use std::net::IpAddr;

use clap::Args;

use crate::transport::pake::Passcode;
use crate::ui;

/// `--passcode CODE` (or `SAPORA_PASSCODE`).
#[derive(Args, Clone, Default)]
pub(crate) struct PasscodeArg {
    /// Passcode of the meeting (host: every meeting on this host needs it)
    #[arg(long, value_name = "CODE", env = "SAPORA_PASSCODE", hide_env_values = true)]
    pub(crate) passcode: Option<String>,
}

impl PasscodeArg {
    pub(crate) fn get(&self) -> Result<Option<Passcode>, String> {
        self.passcode
            .as_deref()
            .map(|p| Passcode::new(p).map_err(|e| format!("--passcode: {e}")))
            .transpose()
    }
}

#[derive(Args, Clone)]
pub(crate) struct NetArgs {
    /// Shift the default ports (UDP+TCP 5000, UDP 5001) by N, to run several hosts on one machine
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) port_offset: u16,
    /// Where discovery probes and beacons go (use 127.255.255.255 to stay on this machine)
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "255.255.255.255",
        env = "SAPORA_DISCOVERY_ADDR"
    )]
    pub(crate) discovery_addr: IpAddr,
}

/// Devices for the desktop app; the same words as the bots use.
#[derive(Args, Clone, Default)]
pub(crate) struct AppMediaArgs {
    /// Camera for the desktop app: test, none, or a device index or name from `sapora devices`
    #[arg(long, value_name = "CAMERA")]
    pub(crate) camera: Option<crate::media::video::CameraChoice>,
    /// Microphone for the desktop app: tone[:HZ], clicks, file:PATH.wav, none, default, or a device
    #[arg(long, value_name = "SOURCE")]
    pub(crate) mic: Option<String>,
    /// Speaker for the desktop app: record:PATH.wav, null, default, or a device
    #[arg(long, value_name = "SINK")]
    pub(crate) speaker: Option<String>,
    #[command(flatten)]
    pub(crate) voice: VoiceArgs,
}

impl AppMediaArgs {
    pub(crate) fn choice(&self) -> ui::MediaChoice {
        ui::MediaChoice {
            camera: self.camera.as_ref().map(ui::media::camera_word),
            mic: self.mic.clone(),
            speaker: self.speaker.clone(),
            aec: self.voice.aec,
            noise_suppression: self.voice.noise_suppression,
            agc: self.voice.agc,
        }
    }
}

/// Voice processing switches (default: the saved settings, else all on).
#[derive(Args, Clone, Default)]
pub(crate) struct VoiceArgs {
    /// Echo cancellation: on or off (default on)
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub(crate) aec: Option<bool>,
    /// Noise suppression: off, normal or strong (RNNoise as well) (default normal)
    #[arg(long, value_name = "LEVEL")]
    pub(crate) noise_suppression: Option<crate::media::audio::apm::NoiseSuppression>,
    /// Automatic gain control: on or off (default on)
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub(crate) agc: Option<bool>,
}

impl VoiceArgs {
    pub(crate) fn settings(&self) -> crate::media::audio::apm::VoiceSettings {
        let mut s = crate::media::audio::apm::VoiceSettings::default();
        s.aec = self.aec.unwrap_or(s.aec);
        s.noise_suppression = self.noise_suppression.unwrap_or(s.noise_suppression);
        s.agc = self.agc.unwrap_or(s.agc);
        s
    }
}

pub(crate) fn on_off(s: &str) -> Result<bool, String> {
    match s.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("\"{other}\": use on or off")),
    }
}
