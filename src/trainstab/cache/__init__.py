"""Sweeps kept: for one pytest session, shared by its xdist workers (``session_cache``), and between runs
(``sweep_cache``), both read as untrusted input."""
