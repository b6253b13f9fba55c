"""Judgement: the battery (``battery``), the scaling and paired checks (``scaling``, ``forecast``), and the registry
of every check (``registry``). Each check carries its own facts: what it reads, its metrics, its options."""
