"""Fixture: files starting with an underscore are not algorithms and are never executed."""

raise RuntimeError("discover() must skip files starting with '_'")
