"""A run's options: the one option table, its parsers and what the options resolve to (``options``), ``--set``
overrides, and the configuration file both front ends read (``inifile``)."""
