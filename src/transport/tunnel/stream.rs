//! One stream's state inside the tunnel's multiplexer ([`super::mux::Mux`]):
//! its send half (queue, credit, FIN/RESET state) and receive half (buffer,
//! window, FIN/RESET), and the wakers of the application's blocked reads and
//! writes. The multiplexer drives it; the fields are its to change.

use std::collections::VecDeque;
use std::task::Waker;

use bytes::Bytes;

use super::events::StreamError;
use super::mux::STREAM_WINDOW;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SendState {
    Open,
    /// FIN queued behind the data.
    Finishing,
    /// FIN or RESET sent (queued in order): nothing more to send.
    Done,
}

#[derive(Debug)]
pub(super) struct Stream {
    pub(super) opened_here: bool,
    // Send half.
    pub(super) send_state: SendState,
    /// Framed DATA/CONTROL messages waiting for the writer.
    pub(super) send_queue: VecDeque<Vec<u8>>,
    /// Bytes the peer allows beyond what is queued or sent.
    pub(super) send_credit: u64,
    /// Set when the peer stopped reading (its STOP code).
    pub(super) send_error: Option<StreamError>,
    pub(super) send_handle: bool,
    pub(super) send_waker: Option<Waker>,
    // Receive half.
    pub(super) recv_buf: VecDeque<Bytes>,
    /// Bytes received in total, and the most the peer may have sent.
    pub(super) recv_total: u64,
    pub(super) recv_limit: u64,
    /// Bytes read since the last WINDOW.
    pub(super) recv_unacked: u32,
    pub(super) recv_fin: bool,
    pub(super) recv_reset: Option<u32>,
    pub(super) recv_handle: bool,
    pub(super) recv_waker: Option<Waker>,
}

impl Stream {
    pub(super) fn new(opened_here: bool) -> Stream {
        Stream {
            opened_here,
            send_state: SendState::Open,
            send_queue: VecDeque::new(),
            send_credit: u64::from(STREAM_WINDOW),
            send_error: None,
            send_handle: true,
            send_waker: None,
            recv_buf: VecDeque::new(),
            recv_total: 0,
            recv_limit: u64::from(STREAM_WINDOW),
            recv_unacked: 0,
            recv_fin: false,
            recv_reset: None,
            recv_handle: true,
            recv_waker: None,
        }
    }

    pub(super) fn wake(&mut self) {
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }

    /// Whether the state can go: both handles gone, our half sent to the
    /// end, the peer's half ended.
    pub(super) fn is_over(&self) -> bool {
        !self.send_handle
            && !self.recv_handle
            && self.send_state == SendState::Done
            && (self.recv_fin || self.recv_reset.is_some())
    }
}
