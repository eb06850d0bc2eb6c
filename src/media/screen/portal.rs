//! Wayland screen capture through the XDG desktop portal: xcap asks
//! `org.freedesktop.portal.ScreenCast` for a screen (the desktop shows its
//! own dialog) and reads the PipeWire stream it grants, RGBA frames.
//!
//! Before that, [`check_portal`] asks the D-Bus session bus whether a portal
//! is there at all, so a desktop without one gets a clear error at once
//! instead of a request nobody answers. Every wait is bounded.

use std::sync::mpsc;
use std::time::Duration;

use super::capture::{CaptureError, PORTAL_TIMEOUT};
use super::tiles::{FrameRef, PixelFormat};

/// The portal's well-known D-Bus name (XDG desktop portal specification).
pub const PORTAL_NAME: &str = "org.freedesktop.portal.Desktop";

/// How long the D-Bus check may take: a session bus answers in
/// milliseconds, so this only bounds a wedged one.
const BUS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the first frame of a granted stream may take (a screen cast
/// starts with a full frame).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `f` on its own thread and waits at most `limit` for its result. On
/// a timeout the thread is left to finish on its own.
fn bounded<T: Send + 'static>(
    what: &'static str,
    limit: Duration,
    f: impl FnOnce() -> Result<T, CaptureError> + Send + 'static,
) -> Result<T, CaptureError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| CaptureError::Portal(format!("cannot start a thread: {e}")))?;
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(CaptureError::PortalTimeout(limit.as_secs())),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(CaptureError::Portal(format!("{what} stopped without an answer")))
        }
    }
}

/// Whether the session bus has an XDG desktop portal, running or
/// D-Bus-activatable.
///
/// Errors: [`CaptureError::Portal`] when the session bus cannot be reached
/// (`DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`) or has no portal;
/// [`CaptureError::PortalTimeout`] when the bus does not answer in 10 s.
pub fn check_portal() -> Result<(), CaptureError> {
    bounded("portal check", BUS_TIMEOUT, || {
        let bus = |e: zbus::Error| {
            CaptureError::Portal(format!("cannot reach the D-Bus session bus ({e})"))
        };
        let conn = zbus::blocking::Connection::session().map_err(bus)?;
        let dbus = zbus::blocking::fdo::DBusProxy::new(&conn).map_err(bus)?;
        let fdo = |e: zbus::fdo::Error| {
            CaptureError::Portal(format!("the D-Bus session bus failed to answer ({e})"))
        };
        let name = zbus::names::BusName::try_from(PORTAL_NAME)
            .map_err(|e| CaptureError::Portal(e.to_string()))?;
        if dbus.name_has_owner(name).map_err(fdo)? {
            return Ok(());
        }
        if dbus.list_activatable_names().map_err(fdo)?.iter().any(|n| n.as_str() == PORTAL_NAME) {
            return Ok(());
        }
        Err(CaptureError::Portal(format!(
            "there is no XDG desktop portal ({PORTAL_NAME}) on the D-Bus session bus"
        )))
    })
}

fn ended() -> CaptureError {
    CaptureError::Portal("the PipeWire stream ended".into())
}

/// A screen granted by the desktop portal, its frames read from PipeWire.
pub struct PortalCapture {
    recorder: xcap::VideoRecorder,
    frames: mpsc::Receiver<xcap::Frame>,
    last: Option<xcap::Frame>,
}

impl PortalCapture {
    /// Asks the portal for a screen (the desktop shows its dialog) and starts
    /// the stream. Waits at most [`PORTAL_TIMEOUT`] for the user's choice.
    ///
    /// Errors: see [`check_portal`]; [`CaptureError::Portal`] when xcap cannot
    /// list monitors (it asks XWayland's RandR) or the portal refuses;
    /// [`CaptureError::PortalTimeout`].
    pub fn open() -> Result<PortalCapture, CaptureError> {
        check_portal()?;
        let (recorder, frames) = bounded("portal screen cast", PORTAL_TIMEOUT, || {
            let err = |e: xcap::XCapError| CaptureError::Portal(e.to_string());
            let monitors = xcap::Monitor::all().map_err(|e| {
                CaptureError::Portal(format!("cannot list monitors (through XWayland): {e}"))
            })?;
            let monitor = monitors
                .iter()
                .find(|m| m.is_primary().unwrap_or(false))
                .or(monitors.first())
                .ok_or_else(|| CaptureError::Portal("no monitor found".into()))?;
            let (recorder, frames) = monitor.video_recorder().map_err(err)?;
            recorder.start().map_err(err)?;
            Ok((recorder, frames))
        })?;
        // The first frame gives the size the presenter sets up with.
        let first = match frames.recv_timeout(FIRST_FRAME_TIMEOUT) {
            Ok(f) => f,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = recorder.stop();
                return Err(CaptureError::Portal(format!(
                    "no frame from the PipeWire stream within {} s",
                    FIRST_FRAME_TIMEOUT.as_secs()
                )));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(ended()),
        };
        Ok(PortalCapture { recorder, frames, last: Some(first) })
    }

    /// The size of the last frame (width, height), pixels.
    pub fn size(&self) -> (usize, usize) {
        self.last.as_ref().map_or((0, 0), |f| (f.width as usize, f.height as usize))
    }

    /// The newest frame of the stream. PipeWire sends a frame only when the
    /// screen changed, so without a new one the last is returned again.
    ///
    /// Errors: [`CaptureError::Portal`] when the stream ended;
    /// [`CaptureError::Frame`] for a short frame.
    pub fn frame(&mut self) -> Result<FrameRef<'_>, CaptureError> {
        loop {
            match self.frames.try_recv() {
                Ok(f) => self.last = Some(f),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return Err(ended()),
            }
        }
        let Some(f) = self.last.as_ref() else { return Err(ended()) };
        let (width, height) = (f.width as usize, f.height as usize);
        if width == 0 || height == 0 || f.raw.len() < width * height * 4 {
            return Err(CaptureError::Frame(std::io::ErrorKind::UnexpectedEof.into()));
        }
        // xcap converts every PipeWire format it accepts to RGBA, rows unpadded.
        Ok(FrameRef { width, height, stride: width * 4, format: PixelFormat::Rgba, data: &f.raw })
    }
}

impl Drop for PortalCapture {
    fn drop(&mut self) {
        let _ = self.recorder.stop();
    }
}

#[cfg(test)]
mod tests {
    //! Opening the portal reads this process's environment (D-Bus, Wayland
    //! and X variables), so each case runs [`probe`] in a child test process
    //! with its own environment, and checks what it printed and that it
    //! finished in time (no hang).
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A test process of this binary running only [`probe`].
    fn probe_command() -> Command {
        let mut c = Command::new(std::env::current_exe().expect("test binary path"));
        c.args(["--exact", "media::screen::portal::tests::probe", "--ignored", "--nocapture"])
            .env("SAPORA_PORTAL_PROBE", "1")
            .env("XDG_SESSION_TYPE", "wayland")
            .env("WAYLAND_DISPLAY", "wayland-sapora-test")
            .env_remove("DISPLAY")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        c
    }

    /// Waits at most `limit` for `child`; its stdout. A child still running
    /// then is killed and the test fails (a hang).
    fn output_within(mut child: Child, limit: Duration) -> String {
        let start = Instant::now();
        while child.try_wait().expect("wait for probe").is_none() {
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("opening the portal hung for more than {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        child.stdout.take().expect("stdout").read_to_string(&mut out).expect("probe output");
        out
    }

    /// The child side: opens `portal` from the environment and prints the result.
    #[test]
    #[ignore = "run by the portal tests in a child process with its own environment"]
    fn probe() {
        if std::env::var_os("SAPORA_PORTAL_PROBE").is_none() {
            return;
        }
        match crate::media::screen::ScreenSource::parse("portal").open() {
            Ok(_) => println!("PROBE: opened"),
            Err(e) => println!("PROBE: {e}"),
        }
    }

    #[test]
    fn no_session_bus_is_a_clear_error_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let child = probe_command()
            .env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={}/no-bus", dir.path().display()))
            .env("XDG_RUNTIME_DIR", dir.path())
            .spawn()
            .unwrap();
        let out = output_within(child, Duration::from_secs(20));
        assert!(out.contains("PROBE: Wayland screen capture through the desktop portal failed: cannot reach the D-Bus session bus"), "{out}");
        assert!(out.contains("share an X display"), "the error says what to do instead: {out}");
    }

    /// A private `dbus-daemon` that knows no services, as on a desktop without
    /// xdg-desktop-portal; killed on drop.
    struct PrivateBus {
        daemon: Child,
        address: String,
        _dir: tempfile::TempDir,
    }

    impl PrivateBus {
        fn start() -> PrivateBus {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("bus.conf");
            std::fs::write(
                &config,
                format!(
                    r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                    dir.path().display()
                ),
            )
            .unwrap();
            let mut daemon = Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .args(["--nofork", "--print-address=1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("dbus-daemon (Debian package dbus-daemon, installed by scripts/setup.sh)");
            let mut address = String::new();
            BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut address).unwrap();
            let address = address.trim().to_string();
            assert!(address.starts_with("unix:"), "dbus-daemon printed {address:?}");
            PrivateBus { daemon, address, _dir: dir }
        }
    }

    impl Drop for PrivateBus {
        fn drop(&mut self) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }

    #[test]
    fn a_bus_without_a_portal_is_a_clear_error_at_once() {
        let bus = PrivateBus::start();
        let child = probe_command().env("DBUS_SESSION_BUS_ADDRESS", &bus.address).spawn().unwrap();
        let out = output_within(child, Duration::from_secs(20));
        assert!(
            out.contains("PROBE: Wayland screen capture through the desktop portal failed: there is no XDG desktop portal (org.freedesktop.portal.Desktop) on the D-Bus session bus"),
            "{out}"
        );
    }
}
