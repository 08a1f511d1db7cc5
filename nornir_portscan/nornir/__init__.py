"""The Nornir front door: the ``portscan`` task and the ``ProgressBar`` processor."""
