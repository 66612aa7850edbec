"""Probe: does a seeded Omniglot training repeat bit for bit on this host? Builds the run that
``omniglot_quality`` would with the given options (its own ``training_setup``), trains STEPS
meta-iterations on one thread in the benchmark's chunks of 25, and prints a hash of the weights
after each chunk (prints only). Run it twice, or at two commits, and compare the lines.

STEPS=100 PYTHONPATH=. python benchmarks/probes/omniglot_determinism.py --mirrors --augment-affine 1 --augment-shift 2
"""

import hashlib
import os
import sys

import torch

from benchmarks.omniglot_quality import build_parser, training_setup

torch.set_num_threads(1)
args = build_parser().parse_args(sys.argv[1:])
train, eng = training_setup(args)
for done in range(args.chunk, int(os.environ.get("STEPS", "100")) + 1, args.chunk):
    eng.config = eng.config.replace(num_meta_iterations=args.chunk)
    eng.learner.config = eng.config
    eng.meta_train_sync(train)
    weights = b"".join(p.detach().numpy().tobytes() for p in eng.model.parameters())
    print(done, hashlib.sha1(weights).hexdigest()[:12], flush=True)
