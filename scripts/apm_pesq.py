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

With CELLS=MIC it also says where the score goes, in 20 ms x 50 Hz cells
(100 Hz - 7 kHz) of each processed file: the median level of the output
against the near end where the near end is 6 dB above the echo (0 dB: the
near end is kept), and against the echo where the echo is 6 dB above the
near end (how much echo is taken out during double talk).
"""
import os
import sys

import numpy as np
from pesq import pesq
from scipy.io import wavfile
from scipy.signal import resample_poly, stft


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
    cells = os.environ.get("CELLS")
    for name in names:
        deg = load(d, name)[start:]
        if cells:
            mic = load(d, cells)[start:]
            n = min(len(ref), len(mic), len(deg))
            spec = lambda x: np.abs(stft(x[:n], 16000, nperseg=320)[2]) ** 2
            f = stft(ref[:n], 16000, nperseg=320)[0]
            pn, pe, po = spec(ref), spec(mic - ref[: len(mic)]), spec(deg)
            band = ((f > 100) & (f < 7000))[:, None]
            near = band & (pn > 4 * pe) & (pn > 1e-3)
            echo = band & (pe > 4 * pn) & (pe > 1e-3)
            kept = np.median(10 * np.log10(po[near] / pn[near]))
            left = np.median(10 * np.log10(po[echo] / pe[echo]))
            print(f"{name}: near end kept at {kept:.1f} dB, echo at {left:.1f} dB (medians)")
        n = min(len(ref), len(deg))
        print(f"{name}: PESQ-WB {pesq(16000, ref[:n], deg[:n], 'wb'):.2f}")


if __name__ == "__main__":
    main()
