"""Essentia peer, run by the peer venv's Python (never imported by the project).

Reads one JSON request per line on stdin, ``{"npy": path, "sr": 22050}`` (a float32 mono
array), and answers one JSON line: ``bpm``, ``beats_s`` (``RhythmExtractor2013``,
``method="multifeature"``, its defaults), ``key`` (``KeyExtractor``, its defaults:
``profileType="bgate"``) and ``compute_s`` (wall time of the two extractors, one thread;
loading and the resampling to the 44.1 kHz both extractors assume are not counted).
"""

import json
import sys
import time

import numpy as np

import essentia
import essentia.standard as es

essentia.log.infoActive = False
essentia.log.warningActive = False
rhythm = es.RhythmExtractor2013(method="multifeature")
key_extractor = es.KeyExtractor(sampleRate=44100)
resamplers = {}
print(json.dumps({"ready": True, "version": essentia.__version__}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    try:
        y = np.load(req["npy"]).astype(np.float32)
        sr = int(req["sr"])
        if sr != 44100:
            if sr not in resamplers:
                resamplers[sr] = es.Resample(inputSampleRate=sr, outputSampleRate=44100, quality=1)
            y = resamplers[sr](y)
        t0 = time.perf_counter()
        bpm, ticks, _conf, _est, _intervals = rhythm(y)
        key, scale, strength = key_extractor(y)
        dt = time.perf_counter() - t0
        out = {"bpm": float(bpm), "beats_s": [float(t) for t in ticks], "key": f"{key} {scale}", "compute_s": dt}
    except Exception as exc:  # report and go on
        out = {"error": repr(exc)}
    print(json.dumps(out), flush=True)
