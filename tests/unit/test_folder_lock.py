"""The data folder lock within one process: exclusive, named holder, probe without taking it."""

from __future__ import annotations

import os

import pytest

from app.engine.system.folder_lock import FolderLock, FolderLocked, running_engine_pid


def test_the_lock_is_exclusive_names_its_holder_and_is_free_again_after_release(tmp_path):
    assert running_engine_pid(tmp_path) is None  # no lock file yet
    with FolderLock(tmp_path) as held:
        assert held.held and running_engine_pid(tmp_path) == os.getpid()
        with pytest.raises(FolderLocked) as err:
            FolderLock(tmp_path).acquire(patience_s=0)  # another open file description: refused
        assert err.value.pid == os.getpid() and f"(pid {os.getpid()})" in str(err.value)
        assert os.stat(held.path).st_mode & 0o777 == 0o600
    assert running_engine_pid(tmp_path) is None
    again = FolderLock(tmp_path).acquire(patience_s=0)
    again.release()
