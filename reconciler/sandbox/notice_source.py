"""The sandbox cloud's notices (`notices.jsonl` via NoticeFeed) as a NoticeSource."""

from __future__ import annotations

from pathlib import Path

from reconciler.policy.signals import Notice, NoticeKind
from reconciler.sandbox.market import NoticeFeed, notices_path


class SandboxNoticeSource:
    """Reads the sandbox feed from a byte cursor, so each notice is returned once."""

    def __init__(self, state_dir: Path, cursor: int = 0) -> None:
        self.feed = NoticeFeed(notices_path(Path(state_dir)))
        self.cursor = cursor

    def poll(self) -> list[Notice]:
        raw, self.cursor = self.feed.read(self.cursor)
        notices: list[Notice] = []
        for item in raw:
            try:
                kind = NoticeKind(item.kind)
            except ValueError:
                continue
            notices.append(Notice(kind, item.replica_id, item.zone, item.at))
        return notices
