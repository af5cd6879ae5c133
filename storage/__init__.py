"""spoolmq storage: the append-only segmented log, its indexes and recovery, and the state store.

Synchronous file code behind one I/O seam (`storage.fileio`); the only asyncio
here is the group-commit shell in `storage.committer`. Knows nothing of
sockets, topics' semantics, groups or leases.
"""
