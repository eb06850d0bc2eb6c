#!/usr/bin/env python3
"""Scores a recording against the speech it should contain with wideband PESQ.

    scripts/pesq_score.py REFERENCE.wav RECORDING.wav
    scripts/pesq_score.py --make-reference SPEECH.wav COPIES OUT.wav
    scripts/pesq_score.py --make-talk REFERENCE.wav WARMUP_S OUT.wav

Scoring: both files are brought to 16 kHz mono (polyphase resampling), the
recording is aligned to the reference by the lag that maximises their
cross-correlation (one lag for the whole file: jumps inside the recording
stay in and cost what they cost), cut to the reference's length, and scored
with ITU-T P.862.2 (wideband PESQ, MOS-LQO 1.0-4.64) by the `pesq` package.
Prints one JSON object: {"pesq_wb": ..., "lag_ms": ..., "correlation": ...}.

Exit codes: 0 scored; 2 a Python package is missing (the message names it,
and no score is printed); 1 anything else (unreadable file, no speech found).

--make-reference writes COPIES copies of SPEECH.wav, 0.5 s of silence apart,
as 48 kHz 16-bit mono: a longer test signal (P.862 asks for 8-20 s).

--make-talk writes what the talker reads: WARMUP_S seconds of the reference
played backwards (speech-like sound and pauses that do not correlate with
the reference, so the alignment cannot pick it), 0.5 s of silence, then the
reference. The warm-up lets loss-adaptive senders and receivers settle (loss
reports, redundancy, jitter-buffer depth) before the scored speech starts.
"""
import json
import sys


def need(module):
    try:
        return __import__(module)
    except ImportError:
        print(
            f"pesq_score: the Python package '{module}' is not installed, so no PESQ "
            f"score was computed (scripts/setup.sh installs numpy, scipy and pesq)",
            file=sys.stderr,
        )
        sys.exit(2)


np = need("numpy")
need("scipy")
from scipy.io import wavfile  # noqa: E402
from scipy.signal import fftconvolve, resample_poly  # noqa: E402


def load(path, rate):
    """Mono float samples in [-1, 1] at `rate` Hz."""
    sr, x = wavfile.read(path)
    if x.dtype.kind == "i":
        x = x.astype(np.float64) / float(np.iinfo(x.dtype).max + 1)
    elif x.dtype.kind == "u":
        x = (x.astype(np.float64) - 128.0) / 128.0
    else:
        x = x.astype(np.float64)
    if x.ndim > 1:
        x = x.mean(axis=1)
    if sr != rate:
        from math import gcd

        g = gcd(sr, rate)
        x = resample_poly(x, rate // g, sr // g)
    return x


def make_reference(speech, copies, out):
    x = load(speech, 48000)
    gap = np.zeros(24000)
    parts = []
    for i in range(copies):
        if i:
            parts.append(gap)
        parts.append(x)
    y = np.concatenate(parts)
    wavfile.write(out, 48000, (np.clip(y, -1, 1) * 32767).astype(np.int16))


def make_talk(ref_path, warmup_s, out):
    x = load(ref_path, 48000)
    n = int(warmup_s * 48000)
    warm = x[::-1]
    while len(warm) < n:
        warm = np.concatenate([warm, x[::-1]])
    y = np.concatenate([warm[:n], np.zeros(24000), x]) if n > 0 else x
    wavfile.write(out, 48000, (np.clip(y, -1, 1) * 32767).astype(np.int16))


def score(ref_path, deg_path):
    pesq = need("pesq")
    ref = load(ref_path, 16000)
    deg = load(deg_path, 16000)
    if len(deg) < len(ref):
        deg = np.concatenate([deg, np.zeros(len(ref) - len(deg))])
    # Lag of the recording against the reference (>= 0: the speech starts
    # later in the recording).
    corr = fftconvolve(deg, ref[::-1], mode="valid")
    lag = int(np.argmax(corr))
    aligned = deg[lag : lag + len(ref)]
    norm = np.sqrt(np.sum(ref * ref) * np.sum(aligned * aligned))
    r = float(corr[lag] / norm) if norm > 0 else 0.0
    if np.max(np.abs(aligned)) < 1e-3 or r < 0.1:
        print(
            f"pesq_score: no speech found in {deg_path} (best correlation {r:.3f}): not scored",
            file=sys.stderr,
        )
        sys.exit(1)
    mos = pesq.pesq(16000, ref.astype(np.float32), aligned.astype(np.float32), "wb")
    print(json.dumps({"pesq_wb": round(float(mos), 3), "lag_ms": round(lag / 16.0, 1), "correlation": round(r, 3)}))


def main():
    a = sys.argv[1:]
    if len(a) == 4 and a[0] == "--make-reference":
        make_reference(a[1], int(a[2]), a[3])
    elif len(a) == 4 and a[0] == "--make-talk":
        make_talk(a[1], float(a[2]), a[3])
    elif len(a) == 2:
        score(a[0], a[1])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
