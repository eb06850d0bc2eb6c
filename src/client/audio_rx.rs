//! The engine's receiving thread, `sapora-audio-rx`: the host's datagrams
//! (mix, levels, reception reports on our audio) into the jitter buffer,
//! the tick phase and the counters.

use super::*;

pub(super) fn receive(
    arrivals: std::sync::mpsc::Receiver<bytes::Bytes>,
    shared: &Shared,
    events: &Sender<AudioEvent>,
) {
    let mut up_loss = LossEstimate::default();
    while !shared.stop.load(Ordering::Relaxed) {
        // Only the host speaks on our link: whatever arrives is its.
        let buf = match arrivals.recv_timeout(Duration::from_millis(50)) {
            Ok(got) => got,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let n = buf.len();
        if is_audio_feedback(&buf[..n]) {
            // The host's report on our audio: our encoder's FEC follows it.
            if let Ok(r) = FeedbackDown::decode(&buf[..n]) {
                shared.expected_loss.store(r.expected_loss_percent, Ordering::Relaxed);
                let smoothed = up_loss.update(r.loss);
                shared
                    .up_loss_permille
                    .store((smoothed * 1000.0).round() as u16, Ordering::Relaxed);
                let mut s = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
                s.up_reports += 1;
                s.up_loss_sum += r.loss;
            }
            continue;
        }
        let Ok(down) = AudioDown::decode(&buf[..n]) else { continue };
        // The host sends to us: it has heard our keepalive or audio.
        shared.heard.store(true, Ordering::Relaxed);
        let now = shared.now_us();
        shared.codec.store(down.codec.base() as u8, Ordering::Relaxed);
        {
            let mut s = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.packets_received += 1;
            s.bytes_received += n as u64;
        }
        if !down.levels.is_empty() {
            *shared.levels.lock().unwrap_or_else(|e| e.into_inner()) = down.levels.clone();
            // Nobody listening, or a slow one: newer levels follow soon.
            let _ = events.try_send(AudioEvent::Levels(down.levels.clone()));
        }
        let samples = usize::from(down.samples);
        if samples != FRAME_10MS && samples != FRAME_20MS {
            continue;
        }
        if shared.frame_samples.swap(samples, Ordering::Relaxed) != samples {
            // The host mixes with another frame size: start over with it.
            let fus = frame_us(samples);
            *shared.phase.lock().unwrap_or_else(|e| e.into_inner()) = TickPhase::new(fus);
            *shared.jb.lock().unwrap_or_else(|e| e.into_inner()) =
                JitterBuffer::new(JitterConfig::new(fus));
        }
        // Levels-only datagrams leave right after the tick as the mix does:
        // they show its phase too, so a talker who hears nobody (and gets
        // only levels) still sends just before the tick. Unaligned, its
        // packets reach the host at a random phase, and one that lands just
        // before the tick misses it whenever the machine is a little slow.
        shared.phase.lock().unwrap_or_else(|e| e.into_inner()).arrival(now);
        if down.keepalive {
            // Levels only: no audio, not in the sequence. Our next
            // keepalive may go at once and carry QUIC's ACK of it.
            shared.levels_only.store(true, Ordering::Relaxed);
            continue;
        }
        shared.down_loss.lock().unwrap_or_else(|e| e.into_inner()).record(down.seq);
        {
            let mut s = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.mix_datagrams += 1;
            s.frames_forwarded += u64::from(down.forwarded);
        }
        // Redundancy (RFC 2198): copies of earlier frames ride along.
        let red = match down.codec {
            AudioCodec::OpusRed => RedPayload::decode(down.payload).ok(),
            _ => None,
        };
        let (codec, primary) = match &red {
            Some(r) => (AudioCodec::Opus, r.primary),
            None => (down.codec, down.payload),
        };
        // An empty payload is an end mark with no audio.
        let packet = (!primary.is_empty()).then(|| (codec, primary.to_vec(), down.fec));
        let mut jb = shared.jb.lock().unwrap_or_else(|e| e.into_inner());
        jb.set_min_depth(red.as_ref().map_or(0, RedPayload::depth));
        jb.push_marked(now, down.seq, down.timestamp, packet, down.end);
        for b in red.as_ref().map_or(&[][..], RedPayload::blocks) {
            let seq = down.seq.wrapping_sub(u32::from(b.back));
            if jb.wants(seq) {
                jb.push_redundant(seq, (AudioCodec::Opus, b.data.to_vec(), b.fec));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_only_datagrams_show_the_tick_phase() {
        let shared = Shared::new(FRAME_20MS, false);
        // A talker who hears nobody gets only levels, five a second.
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..10 {
            let mut buf = Vec::new();
            AudioDown {
                seq: 0,
                keepalive: true,
                end: false,
                forwarded: false,
                fec: false,
                timestamp: 0,
                codec: AudioCodec::Opus,
                samples: FRAME_20MS as u16,
                levels: vec![SpeakingLevel {
                    session: crate::proto::SessionId(1),
                    level: 90,
                    name: "t".into(),
                }],
                payload: &[],
            }
            .encode(&mut buf);
            tx.send(bytes::Bytes::from(buf)).unwrap();
        }
        drop(tx);
        let (events, _keep) = smol::channel::bounded(64);
        receive(rx, &shared, &events);
        assert!(shared.phase.lock().unwrap().window().is_some(), "the phase is known");
        let s = shared.stats.lock().unwrap();
        assert_eq!(s.mix_datagrams, 0, "no audio counted");
    }
}
