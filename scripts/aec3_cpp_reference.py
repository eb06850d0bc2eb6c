#!/usr/bin/env python3
"""WebRTC's own C++ AEC3 on the double-talk test's files, as a reference for
sonora's port and our tuning (vendor/sonora/SAPORA-PATCH.md).

    SAPORA_APM_WAV_DIR=/tmp/apm cargo test --lib media::audio::apm::tests::double_talk
    python3 scripts/aec3_cpp_reference.py /tmp/apm
    CELLS=dt_mic python3 scripts/apm_pesq.py /tmp/apm dt_near dt_out_aec dt_out_cpp

Needs `pip install pywebrtc-audio numpy scipy` (not part of CI): Python
bindings of WebRTC's audio processing module, AEC3 with its default tuning
and its own delay estimator. Runs it at 48 kHz in 10 ms frames on dt_far
(render) and dt_mic (capture) and writes dt_out_cpp.wav, shifted by the
1 ms lag at which its envelope best matches dt_near (as the Rust test does).
"""
import os
import sys

import numpy as np
import pywebrtc_audio
from scipy.io import wavfile


def main():
    d = sys.argv[1]
    read = lambda name: wavfile.read(os.path.join(d, name + ".wav"))[1].astype(np.float32)
    far, mic, near = read("dt_far"), read("dt_mic"), read("dt_near")
    n = min(len(far), len(mic), len(near)) // 480 * 480
    apm = pywebrtc_audio.AudioProcessor(sample_rate=48000, echo_cancellation=True)
    out = np.zeros(n, np.float32)
    for i in range(0, n, 480):
        out[i : i + 480] = apm.process(mic[i : i + 480], far[i : i + 480])
    env = lambda x: np.abs(x[: n // 48 * 48]).reshape(-1, 48).sum(1)
    r, o = env(near), env(out)
    m = len(r) - 40
    lag = max(range(41), key=lambda k: np.corrcoef(r[:m], o[k : k + m])[0, 1])
    print(f"C++ AEC3: lag {lag} ms")
    wavfile.write(os.path.join(d, "dt_out_cpp.wav"), 48000, out[lag * 48 :])


if __name__ == "__main__":
    main()
