"""Where topics live on disk (or in memory): partition logs and topic metadata.

Layout under the data directory (see storage.datadir):
    topics/<topic>/topic.json        the TopicConfig and purge marks, written atomically
    topics/<topic>/<partition>/      one FileLog per partition
    deleted/<topic>-<random>/        a topic being removed (finished at the next start)

`TopicFiles` opens, creates and removes these; it knows nothing of groups or leases.
With `fs` None it keeps MemoryLogs and writes nothing (the broker's memory mode).
Raises StorageError (the caller maps it).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable

from broker.api import TopicConfig
from broker.config import Config
from broker.core.topic import TopicState
from storage.api import PartitionLog
from storage.fileio import FileSystem
from storage.log import FileLog
from storage.memory import MemoryLog
from storage.state import read_json, write_json_atomic

log = logging.getLogger(__name__)

TOPIC_META = "topic.json"


class TopicFiles:
    def __init__(self, fs: FileSystem | None, root: str, config: Config,
                 clock_ms: Callable[[], int]) -> None:
        self.fs = fs
        self.root = root
        self.config = config
        self.clock_ms = clock_ms

    def _topic_dir(self, name: str) -> str:
        return os.path.join(self.root, "topics", name)

    def open_log(self, topic: str, p: int) -> PartitionLog:
        if self.fs is None:
            return MemoryLog(clock_ms=self.clock_ms)
        return FileLog.open(self.fs, os.path.join(self._topic_dir(topic), str(p)),
                            segment_bytes=self.config.segment_bytes, clock_ms=self.clock_ms)

    def load(self, now: float) -> list[TopicState]:
        """Finish interrupted deletions, then open every topic that has its metadata."""
        fs = self.fs
        if fs is None:
            return []
        fs.makedirs(os.path.join(self.root, "topics"))
        trash = os.path.join(self.root, "deleted")
        for name in fs.listdir(trash):
            fs.rmtree(os.path.join(trash, name))
        out = []
        for name in fs.listdir(os.path.join(self.root, "topics")):
            meta = read_json(fs, os.path.join(self._topic_dir(name), TOPIC_META))
            if meta is None:
                log.warning("topic directory %s has no %s; skipped", name, TOPIC_META)
                continue
            raw = dict(meta.get("config", {}))
            raw["backoff_s"] = tuple(raw.get("backoff_s", ()))
            config = TopicConfig(**raw)
            logs = [self.open_log(name, p) for p in range(config.partitions)]
            t = TopicState(name, config, logs, self.config, float(meta.get("created_at", now)))
            for p, cut in enumerate(list(meta.get("purged_to", []))[: config.partitions]):
                t.purged_to[p] = int(cut)
            out.append(t)
        return out

    def create(self, name: str, config: TopicConfig, now: float) -> TopicState:
        """Write the metadata first, so a crash leaves either no topic or a whole one."""
        if self.fs is not None:
            self.fs.makedirs(self._topic_dir(name))
            write_json_atomic(self.fs, os.path.join(self._topic_dir(name), TOPIC_META),
                              {"config": config.to_dict(), "created_at": now})
        logs = [self.open_log(name, p) for p in range(config.partitions)]
        return TopicState(name, config, logs, self.config, now)

    def write_meta(self, t: TopicState) -> None:
        if self.fs is None:
            return
        write_json_atomic(self.fs, os.path.join(self._topic_dir(t.name), TOPIC_META),
                          {"config": t.config.to_dict(), "created_at": t.created_at,
                           "purged_to": t.purged_to})

    def remove(self, name: str) -> None:
        """Move the topic's directory out of `topics/` (durably), then delete it."""
        fs = self.fs
        if fs is None:
            return
        trash = os.path.join(self.root, "deleted")
        fs.makedirs(trash)
        gone = os.path.join(trash, f"{name}-{secrets.token_hex(4)}")
        fs.rename(self._topic_dir(name), gone)
        fs.fsync_dir(os.path.join(self.root, "topics"))
        fs.fsync_dir(trash)
        fs.rmtree(gone)
