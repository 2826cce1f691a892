#!/usr/bin/env python
"""Everyday recordings from outside the datasets: the 16 real recordings of Debian's tuxpaint-stamps-default package
(2022.06.04) that name an ESC-50 class, scored zero-shot by embedded models (50-way over ESC-50's prompts and over
all 61 classes). The clips are not redistributed; unpack the package first:

    apt-get download tuxpaint-stamps-default && dpkg -x tuxpaint-stamps-default_*.deb /tmp/debx/tux
    python tools/everyday_check.py default
"""
import sys
from pathlib import Path

import torch
from lmaczs import datasets
from lmaczs.clap.embedded import EmbeddedClap
from lmaczs.clap_train import zero_shot_predictions
from lmaczs.audio import load_audio, peak_normalize
torch.set_num_threads(1)
root = Path("/tmp/debx/tux/usr/share/tuxpaint/stamps")
want = {"animals/mammals/dogs/dog.ogg": "dog", "animals/birds/rooster.ogg": "rooster", "animals/birds/hen.ogg": "hen",
        "animals/birds/crow.ogg": "crow", "animals/mammals/pig.ogg": "pig", "animals/mammals/bovines/cow.ogg": "cow",
        "animals/mammals/bovines/sheep.ogg": "sheep", "animals/amphibians/frog.ogg": "frog", "animals/insects/bee.ogg": "insects",
        "household/toilet.ogg": "toilet_flush", "household/vacuum_cleaner.ogg": "vacuum_cleaner",
        "household/Washing-machine.ogg": "washing_machine", "household/tools/saw.ogg": "hand_saw",
        "seasonal/newyears/fireworks.ogg": "fireworks", "vehicles/emergency/firetruck.ogg": "siren",
        "household/dishes/glass.ogg": "glass_breaking"}
esc = datasets.class_names(datasets.read_dataset("esc50"))
us = datasets.class_names(datasets.read_dataset("urbansound8k"))
for name in sys.argv[1:]:
    m = EmbeddedClap.from_package(name)
    embs = []
    for rel in want:
        w = m.fit_window(load_audio(root / rel, m.sample_rate))
        x, _ = m.analyze(peak_normalize(w[None])[0])
        with torch.no_grad(): embs.append(m.encode_spec(x).embedding[0])
    e = torch.stack(embs)
    p50 = zero_shot_predictions(m, e, esc); p61 = zero_shot_predictions(m, e, esc + us + ["speech"])
    r50 = sum(p == t for p, t in zip(p50, want.values())); r61 = sum(p == t or (t, p) in {("dog", "dog_bark"), ("siren", "siren")} for p, t in zip(p61, want.values()))
    print(name, f"50-way {r50}/{len(want)}; 61-way {r61}/{len(want)}")
    for (rel, t), a, b in zip(want.items(), p50, p61): print(f"  {Path(rel).name:22s} want {t:16s} 50-way {a:16s} 61-way {b}")
