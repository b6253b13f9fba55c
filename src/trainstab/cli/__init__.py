"""The command line: its commands (``main``), their help texts, progress lines and the terminal's symbols."""
