#!/usr/bin/env python3
"""PESQ (ITU-T P.862.2 wideband, via the `pesq` package) of processed WAVs
against a clean reference, for the voice-processing figures in the README.

    SAPORA_APM_WAV_DIR=/tmp/apm cargo test --lib media::audio::apm::tests
    python3 scripts/apm_pesq.py /tmp/apm dt_near dt_mic dt_out_aec dt_out_default

Needs `pip install pesq numpy scipy` (not part of CI). Each file is
resampled 48 -> 16 kHz and cut to the reference's length; the score covers
the part from FROM_S seconds on (default 3: double talk starts there). The
test writes the processed files already shifted by the chain's delay (to
1 ms; PESQ aligns the rest itself).

With LADDER=MIC (e.g. LADDER=dt_mic), it first scores the reference plus
the echo alone (MIC minus the reference) at -6, -12, -20 and -30 dB: what
a canceller that leaves the near end intact would score at each residual.
"""
import os
import sys

import numpy as np
from pesq import pesq
from scipy.io import wavfile
from scipy.signal import resample_poly


def load(d, name):
    rate, x = wavfile.read(os.path.join(d, name + ".wav"))
    assert rate == 48000, rate
    return resample_poly(x.astype(np.float64), 1, 3)


def main():
    d, ref_name, *names = sys.argv[1:]
    start = int(float(os.environ.get("FROM_S", "3")) * 16000)
    ref = load(d, ref_name)[start:]
    ladder = os.environ.get("LADDER")
    if ladder:
        mic = load(d, ladder)[start:]
        n = min(len(ref), len(mic))
        echo = mic[:n] - ref[:n]
        for db in (-6, -12, -20, -30):
            deg = ref[:n] + 10 ** (db / 20) * echo
            print(f"near end + echo at {db} dB: PESQ-WB {pesq(16000, ref[:n], deg, 'wb'):.2f}")
    for name in names:
        deg = load(d, name)[start:]
        n = min(len(ref), len(deg))
        print(f"{name}: PESQ-WB {pesq(16000, ref[:n], deg[:n], 'wb'):.2f}")


if __name__ == "__main__":
    main()
