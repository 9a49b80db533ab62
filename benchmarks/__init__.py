"""Repository tooling, not shipped: the keystroke benchmark, the keystroke storm, the
perfect-model replay and the measurement scripts. Run them from the repository root, e.g.
`python -m benchmarks.keystrokes`, `python -m benchmarks.storm`, `python -m benchmarks.replay`.
"""
