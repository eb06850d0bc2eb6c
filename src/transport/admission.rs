//! The admission drivers: the passcode exchange of [`super::pake`] over any
//! transport that carries whole frames.
//!
//! QUIC carries the frames on the control stream (length-prefixed bytes,
//! [`super::quic`]); the TLS/TCP fallback carries one frame per WebSocket
//! binary message ([`super::fallback`]). Both implement [`FramePipe`], so the
//! logic here (timeout, rate limit before SPAKE2, abort on a bad host proof,
//! limiter bookkeeping on every exit path) exists once.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limit::{AttemptLimiter, AttemptTicket, Refusal};
use super::pake::{
    self, Admission, ClientHandshake, ClientOutput, Exporter, HostDecision, PakeError, Passcode,
    RefuseReason, Request,
};

/// The whole passcode exchange must finish within this time.
pub const ADMISSION_TIMEOUT: Duration = Duration::from_secs(10);
/// What a host tells a client refused as `Busy` to wait before retrying.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_millis(200);

/// Errors of admission, worded for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("{0}")]
    Pake(#[from] PakeError),
    #[error("refused before the passcode check: {0}")]
    Limited(Refusal),
    #[error("the passcode check did not finish within {} s", ADMISSION_TIMEOUT.as_secs())]
    Timeout,
    #[error("the connection failed during the passcode check: {0}")]
    Io(String),
    #[error("cannot derive the TLS exporter for this connection")]
    Exporter,
}

impl AdmissionError {
    /// Whether the refusal is about the passcode (wrong, missing, too many
    /// tries), as opposed to the network: the CLI gives it its own exit code.
    pub fn is_passcode_refusal(&self) -> bool {
        matches!(
            self,
            AdmissionError::Pake(
                PakeError::WrongPasscodeOrIntercepted
                    | PakeError::Refused {
                        reason: RefuseReason::WrongPasscode
                            | RefuseReason::PasscodeRequired
                            | RefuseReason::TooManyAttempts,
                        ..
                    }
            )
        )
    }
}

/// A bidirectional channel of whole passcode-exchange frames (length prefix
/// included, see [`pake::Msg`]).
pub trait FramePipe {
    /// Sends one frame.
    fn send_frame(&mut self, frame: &[u8]) -> impl Future<Output = Result<(), AdmissionError>>;
    /// Receives one frame; a frame whose length prefix is over the limit is
    /// an error before its body is read.
    fn recv_frame(&mut self) -> impl Future<Output = Result<Vec<u8>, AdmissionError>>;
    /// Best effort: make sure what was sent reaches the peer before the
    /// caller drops the channel (after a refusal).
    fn flush_before_close(&mut self) -> impl Future<Output = ()>;
}

async fn with_timeout<T>(
    work: impl Future<Output = Result<T, AdmissionError>>,
) -> Result<T, AdmissionError> {
    smol::future::or(work, async {
        smol::Timer::after(ADMISSION_TIMEOUT).await;
        Err(AdmissionError::Timeout)
    })
    .await
}

/// The client's side: the passcode check for `room` (or the open-room
/// request when `passcode` is `None`), with `exporter` taken from this
/// connection's TLS session under [`pake::EXPORTER_LABEL`].
pub async fn client(
    pipe: &mut impl FramePipe,
    exporter: Exporter,
    room: &str,
    passcode: Option<&Passcode>,
) -> Result<Admission, AdmissionError> {
    let (mut handshake, first) = ClientHandshake::start(room, passcode, exporter)?;
    with_timeout(async {
        pipe.send_frame(&first).await?;
        loop {
            let frame = pipe.recv_frame().await?;
            match handshake.handle(&frame) {
                Ok(ClientOutput::Send(reply)) => pipe.send_frame(&reply).await?,
                Ok(ClientOutput::Admitted(admission)) => return Ok(admission),
                Err(e) => {
                    if e == PakeError::WrongPasscodeOrIntercepted {
                        // Tell the host at once; it counts a failed attempt.
                        let _ = pipe.send_frame(&pake::abort_frame()).await;
                        pipe.flush_before_close().await;
                    }
                    return Err(e.into());
                }
            }
        }
    })
    .await
}

/// Resolves an attempt ticket: failed unless marked successful, also when
/// the admission future is dropped (timeout, lost connection).
struct AttemptGuard<'a> {
    limiter: &'a Mutex<AttemptLimiter>,
    ticket: Option<AttemptTicket>,
}

impl AttemptGuard<'_> {
    fn succeeded(mut self) {
        if let Some(ticket) = self.ticket.take() {
            lock(self.limiter).succeeded(ticket);
        }
    }
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            lock(self.limiter).failed(ticket);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The limiter stays consistent if a holder panicked (single-step updates).
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host's side. `passcode_for` gives a room's passcode (`None`: open
/// room); `ip` is the client's address for `limiter`, which is asked (with
/// `Instant::now()`) before any SPAKE2 work. A refused client gets a
/// `Refused` frame. Returns the admission or why the client was refused.
pub async fn host(
    pipe: &mut impl FramePipe,
    exporter: Exporter,
    ip: IpAddr,
    passcode_for: impl Fn(&str) -> Option<Passcode>,
    limiter: &Mutex<AttemptLimiter>,
) -> Result<Admission, AdmissionError> {
    let result = with_timeout(async {
        let request = match pipe.recv_frame().await {
            Ok(frame) => Request::parse(&frame).map_err(AdmissionError::from),
            Err(e) => Err(e),
        };
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                let _ =
                    pipe.send_frame(&pake::refusal(RefuseReason::BadRequest, Duration::ZERO)).await;
                return Err(e);
            }
        };
        let passcode = passcode_for(request.room());
        let guard = if request.runs_pake(passcode.as_ref()) {
            let ticket = lock(limiter).begin(ip, Instant::now());
            match ticket {
                Ok(ticket) => Some(AttemptGuard { limiter, ticket: Some(ticket) }),
                Err(refusal) => {
                    let (reason, retry_after) = match refusal {
                        Refusal::TooManyAttempts { retry_after } => {
                            (RefuseReason::TooManyAttempts, retry_after)
                        }
                        Refusal::Busy => (RefuseReason::Busy, BUSY_RETRY_AFTER),
                    };
                    pipe.send_frame(&pake::refusal(reason, retry_after)).await?;
                    return Err(AdmissionError::Limited(refusal));
                }
            }
        } else {
            None
        };
        match pake::respond(request, passcode.as_ref(), exporter) {
            HostDecision::Admit { reply, admission } => {
                pipe.send_frame(&reply).await?;
                Ok(admission)
            }
            HostDecision::Refuse { reply, reason } => {
                pipe.send_frame(&reply).await?;
                Err(PakeError::Refused { reason, retry_after_ms: 0 }.into())
            }
            HostDecision::Challenge { reply, pending } => {
                pipe.send_frame(&reply).await?;
                let frame = pipe.recv_frame().await?;
                let (reply, outcome) = pending.finish(&frame);
                if let Some(reply) = reply {
                    pipe.send_frame(&reply).await?;
                }
                let admission = outcome?;
                if let Some(guard) = guard {
                    guard.succeeded();
                }
                Ok(admission)
            }
        }
    })
    .await;
    if result.is_err() {
        pipe.flush_before_close().await;
    }
    result
}
