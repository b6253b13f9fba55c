"""The pytest front end: the plugin's hooks and fixtures, the checks as tests (``testing``), a session's state."""
