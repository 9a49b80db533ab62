"""santa-lsp: local fill-in-the-middle code completion over the Language Server Protocol."""

import os

# OpenMP worker threads that spin while they wait take the core the editor and other processes
# need, and a preempted spinner stalls every step: on a busy 2-core machine a 1.1B decode step
# took 1.5-3.3 s with 2 spinning threads, 0.2 s with 2 passive ones (benchmarks/RESULTS.md).
# libgomp reads this when torch loads, so it is set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
