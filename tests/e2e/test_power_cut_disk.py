"""A power cut as the disk sees it: the data folder on a loop-mounted ext4 image, copied without a sync.

The paper engine trades real minutes against the fake Alpaca (the broker keeps its book in another
place, as Alpaca does) with its data folder on a freshly made ext4 file system. Part-way the image
is copied while the engine still runs and without any ``sync``: the copy holds what had reached the
block device, not what still sat in the page cache — what a power cut leaves. The copy is mounted
(ext4 replays its journal), the engine starts on it, and every fill of ours at the broker must be
booked exactly once, nothing foreign adopted, whatever the copy lost.

Needs root, ``losetup``/``mkfs.ext4``/``mount`` and a free loop device; skipped with the reason
otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from app.engine.minute.order_ids import ClientOrderIds
from tests.engine.crash_child import FLIPPER_SOURCE, write_algorithm
from tests.engine.netting_helpers import expected_bookings
from tests.integration.test_broker_reconcile import (OTHER_INSTALLATION, PaperEngine, booked, fake_fills,
                                                fake_with_bars, minute)

IMAGE_MB = 64


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _loop_skip_reason(scratch: Path) -> str | None:
    if os.geteuid() != 0:
        return "loop devices need root"
    for tool in ("losetup", "mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if _run("losetup", "-f").returncode != 0:
        return "no free loop device (losetup -f failed)"
    image, mnt = scratch / "probe.img", scratch / "probe"
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(8 * 1024 * 1024)
    made = _run("mkfs.ext4", "-q", "-F", str(image))
    if made.returncode != 0:
        return f"mkfs.ext4 failed: {made.stderr.strip()[:200]}"
    mounted = _run("mount", "-o", "loop", str(image), str(mnt))
    if mounted.returncode != 0:
        return f"cannot loop-mount an ext4 image here: {mounted.stderr.strip()[:200]}"
    _run("umount", str(mnt))
    image.unlink()
    return None


class LoopDisk:
    """An ext4 file system on an image file, loop-mounted; unmounted (and detached) at close."""

    def __init__(self, image: Path, mountpoint: Path, *, make: bool) -> None:
        self.image, self.mountpoint = image, mountpoint
        mountpoint.mkdir(parents=True, exist_ok=True)
        if make:
            with image.open("wb") as f:
                f.truncate(IMAGE_MB * 1024 * 1024)
            assert _run("mkfs.ext4", "-q", "-F", str(image)).returncode == 0
        # commit=60: jbd2 would otherwise push ordered data out every 5 s; a cut may come at any time.
        done = _run("mount", "-o", "loop,commit=60", str(image), str(mountpoint))
        assert done.returncode == 0, done.stderr
        self.mounted = True

    def close(self) -> None:
        if self.mounted:
            _run("umount", str(self.mountpoint))  # mount -o loop detaches the loop device with it
            self.mounted = False


def test_power_cut_on_a_loop_mounted_ext4_disk_books_every_fill_once(tmp_path):
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    from app.engine.marketdata.clock import ManualClock
    from app.engine.marketdata.calendar import MarketCalendar
    from tests.fakes.alpaca_server import FakeAlpaca, wait_until
    from tests.fakes.fixtures import trading_client

    reason = _loop_skip_reason(tmp_path)
    if reason:
        pytest.skip(reason)
    algos = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    disk = LoopDisk(tmp_path / "disk.img", tmp_path / "disk", make=True)
    cut: LoopDisk | None = None
    clock = ManualClock(minute(0) + timedelta(seconds=2))
    try:
        with FakeAlpaca(cash=100_000, fill_delay=0.02) as fake:
            fake_with_bars(tmp_path, MarketCalendar(), fake)
            fake.set_now(clock.now)
            engine = PaperEngine(fake, disk.mountpoint / "data", algos, clock)
            try:
                a = engine.service.create_instance("AAPL", "flipper", "5000")
                engine.service.create_instance("MSFT", "flipper", "5000")
                engine.service.create_instance("AAPL", "flipper", "3000", {"shares": "4"})
                engine.step(minute(1))
                assert _run("sync").returncode == 0  # the kiosk had been up a while: this much is on disk
                for i in range(2, 7):
                    engine.step(minute(i))
                hand = trading_client(fake)
                other = ClientOrderIds(OTHER_INSTALLATION).make(a, minute(6), "buy")
                for coid in ("typed-in-by-hand", other):
                    hand.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                         time_in_force=TimeInForce.DAY, client_order_id=coid))
                assert wait_until(lambda: all(fake.order(c)["status"] == "filled"
                                              for c in ("typed-in-by-hand", other)), 5)
                in_memory = booked(engine.parts.system.path)
                # The cut: the image as the block device has it, copied while the engine runs, no sync.
                shutil.copyfile(disk.image, tmp_path / "cut.img")
            finally:
                engine.close()
            disk.close()

            cut = LoopDisk(tmp_path / "cut.img", tmp_path / "cut", make=False)  # ext4 replays its journal
            engine = PaperEngine(fake, cut.mountpoint / "data", algos, clock)
            try:
                survived = booked(engine.parts.system.path)
                open_on_cut_disk = {o.client_order_id for o in engine.parts.system.open_orders()}
                result = engine.parts.reconcile_at_start()
                after = booked(engine.parts.system.path)
                ids = engine.parts.journal.ids
                fills = fake_fills(fake)
                ours = expected_bookings(ids, fills)  # the two AAPL cards' orders are netted
                print(f"fills {len(ours)}: on the cut disk {len(survived)}, booked from the broker "
                      f"{len(result.fills)}")
                assert len(ours) == len(in_memory) == 3 * 6
                assert set(survived) <= set(ours)
                assert set(after) == set(ours)  # every fill once (booked() fails on a doubled id) …
                for coid, (symbol, side, qty, price) in ours.items():
                    card, t_side, t_qty, t_price = after[coid]
                    assert (engine.parts.system.get_instance(card).ticker, t_side, t_qty, t_price) == \
                        (symbol, side, qty, price)
                for coid in ("typed-in-by-hand", other):  # … and nothing that is not ours
                    assert coid in fills and coid not in after and engine.parts.system.get_order(coid) is None
                # A fill whose journal row the cut took is announced; one whose open row survived is not.
                announced = [n for n in result.notices if n.message.startswith("booked a ")]
                assert len(announced) == len(set(after) - set(survived) - open_on_cut_disk)
            finally:
                engine.close()
    finally:
        if cut is not None:
            cut.close()
        disk.close()
