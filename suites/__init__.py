"""The suites that ship with convbench (``*.toml``; see ``convbench/problem/files.py``).

This file makes the folder a package, so that the wheel carries it as ``convbench.suites`` and
`importlib.resources` finds it in every kind of install; it holds no code.
"""
