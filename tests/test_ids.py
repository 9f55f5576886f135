"""Generated IDs (``_execution/ids.py``): version-7 UUIDs from pooled random bytes."""

from __future__ import annotations

import os
import threading
import time
import uuid

from dbos._execution.ids import new_id


def test_ids_are_version_7_uuids_in_creation_order() -> None:
    ids = []
    for _ in range(3):
        ids.append(new_id())
        time.sleep(0.002)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
    assert ids == sorted(ids)
    assert abs(int(ids[0].replace("-", "")[:12], 16) - time.time() * 1000) < 60_000


def test_ids_are_unique_across_threads_and_pool_refills() -> None:
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_id() for _ in range(5_000))  # 50 KB of random bytes: many refills

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in per_thread for i in out]
    assert len(set(everything)) == len(everything) == 20_000


def test_a_forked_child_does_not_repeat_its_parents_random_bits() -> None:
    new_id()  # the pool holds bytes the child would otherwise inherit
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ID and leave at once
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = new_id()
    # The last 74 bits are random: a child that reused the parent's pool would match.
    assert uuid.UUID(child).int & ((1 << 74) - 1) != uuid.UUID(parent).int & ((1 << 74) - 1)
