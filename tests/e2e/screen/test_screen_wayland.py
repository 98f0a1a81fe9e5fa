"""The kiosk under a real Wayland compositor (headless weston, Qt's wayland platform plugin), not
offscreen and not X: full screen covers the output exactly, ``--windowed`` opens inside it (issue 14
item 1; the Pi's labwc/wayfire speak the same xdg-shell to the same plugin).

A Wayland client cannot read its own global position, so each test checks both sides: Qt's screen
equals the output's mode and the window's size equals the screen's, and the compositor's own scene
graph (``weston-debug``) says where the kiosk's surface is and what is drawn above it.
"""

from __future__ import annotations

import pytest

from tests.e2e.screen.weston import output_mode, views, wait_for_toplevel, wayland_probe, weston

SIZES = [(800, 480), (1280, 720)]
IDS = [f"{w}x{h}" for w, h in SIZES]


@pytest.mark.parametrize(("width", "height"), SIZES, ids=IDS)
def test_full_screen_covers_the_output(width, height):
    with weston(width, height) as compositor, wayland_probe(compositor) as probe:
        first = probe.report()
        view, graph = wait_for_toplevel(compositor, probe.process.pid,
                                        lambda v, g: v.rect == (0, 0, width, height)
                                        and all(other.layer >= v.layer for other in views(g)))
        report = probe.fresh_report()
    assert first["platform"] == report["platform"] == "wayland"
    assert output_mode(graph) == (width, height)
    assert report["screen"] == [0, 0, width, height], report  # Qt's screen is the output's mode
    assert report["geometry"][2:] == [width, height], report  # and the window is that size
    assert report["margins"] == [0, 0, 0, 0], report  # no decorations drawn around a full-screen kiosk
    assert report["scale"] == pytest.approx(min(width / 800, height / 480), abs=0.001)
    assert report["problems"] == []
    # The compositor's side: the kiosk's surface is exactly the output, opaque, with nothing above it
    # (weston's panel, in a lower layer, stays hidden behind it).
    assert view is not None, graph
    assert view.rect == (0, 0, width, height), graph
    assert view.opaque, graph
    assert all(other.layer >= view.layer for other in views(graph)), graph
    assert any("panel" in other.description and other.layer > view.layer for other in views(graph)), graph


@pytest.mark.parametrize(("width", "height"), SIZES, ids=IDS)
def test_windowed_opens_inside_the_output(width, height):
    """``--windowed``: the surface, Qt's decorations and all, fits the output below weston's panel.

    At 800×480 the 1024×600 window cannot fit, and the client sees neither the panel nor its place:
    800×480 plus decorations overran the output by 65 px until the kiosk asked to be maximized.
    """
    with weston(width, height) as compositor, wayland_probe(compositor, "--windowed") as probe:
        probe.report()
        view, graph = wait_for_toplevel(compositor, probe.process.pid,
                                        lambda v, g: _inside(v.rect, width, height))
        report = probe.fresh_report()
    assert report["platform"] == "wayland"
    assert report["screen"] == [0, 0, width, height], report
    assert view is not None, graph
    assert _inside(view.rect, width, height), graph
    panel = next(v for v in views(graph) if "panel" in v.description)
    assert view.rect[1] >= panel.rect[1] + panel.rect[3], graph  # below the panel, not under it
    # Both sides agree: Qt's window plus the decorations it draws is the surface the compositor shows.
    left, top, right, bottom = report["margins"]
    _, _, w, h = report["geometry"]
    assert (w + left + right, h + top + bottom) == view.rect[2:], (report, graph)
    if (width, height) == (800, 480):
        assert view.rect[2] * view.rect[3] >= 0.8 * width * height, graph  # and uses the screen
    else:
        assert [w, h] == [1024, 600], report  # a big screen keeps the window's own size
    assert report["problems"] == []


def _inside(rect: tuple[int, int, int, int], width: int, height: int) -> bool:
    x, y, w, h = rect
    return x >= 0 and y >= 0 and x + w <= width and y + h <= height
