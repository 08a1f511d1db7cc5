"""The I/O edge: the executor, its worker processes, their wire protocol and timing."""
