"""ui.memo: a value is built once per stamp; shared values are one per process, bounded."""

from __future__ import annotations

from ui import memo


def test_a_shared_value_is_built_once_per_stamp_and_the_oldest_are_dropped(monkeypatch):
    monkeypatch.setattr(memo, "_SHARED", type(memo._SHARED)())
    monkeypatch.setattr(memo, "SHARED_ENTRIES", 3)
    builds = []

    def build(v):
        builds.append(v)
        return [v]

    first = memo.cached("fig", ("ready", 0), lambda: build(0), shared=True)
    assert memo.cached("fig", ("ready", 0), lambda: build(99), shared=True) is first
    for seed in (1, 2, 3):
        memo.cached("fig", ("ready", seed), lambda s=seed: build(s), shared=True)
    assert builds == [0, 1, 2, 3]
    assert len(memo._SHARED) == 3 and ("fig", ("ready", 0)) not in memo._SHARED  # least recently used went
    memo.cached("fig", ("ready", 0), lambda: build(0), shared=True)
    assert builds == [0, 1, 2, 3, 0]
