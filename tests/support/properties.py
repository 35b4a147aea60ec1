"""Per-test Hypothesis settings (the profiles themselves, dev and ci, are registered in tests/conftest.py)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import settings


def generous_deadline(ms: int = 2000) -> timedelta | None:
    """A deadline of ``ms`` per example under a profile that has deadlines (dev), none under one that has none
    (ci). The property tests check what is computed, in a few milliseconds an example: only a machine stalled
    for seconds would reach this, where Hypothesis's 200 ms default fails them on a loaded 2-core machine."""
    profile = settings.default
    return None if profile is None or profile.deadline is None else timedelta(milliseconds=ms)
