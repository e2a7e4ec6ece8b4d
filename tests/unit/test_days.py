"""The programme's day is Riga's: what a teacher there calls today is never in the future."""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo

import pytest

from shared import days


class _Clock(datetime):
    """The wall clock at 23:30 UTC on 30 November 2026: already 1 December in Riga."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _Clock:
        moment = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
        return cls.fromtimestamp(moment.timestamp(), tz)


def test_today_is_rigas_date_when_utc_is_still_on_the_day_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(days, "datetime", _Clock)
    assert days.today() == date(2026, 12, 1)
