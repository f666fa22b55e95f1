"""The ramp's step plan (RampClimb): coarse steps, then fine steps from the last held.

Pure: each test plays the server's answers (held or not) to the steps the plan asks
for and checks the rates asked, their stage and the figure held.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ecigdis_ws.bench.plan import BenchOptions, RampClimb, RampOptions


def climb_against(options: RampOptions, holds: Callable[[float], bool]) -> tuple[
        list[tuple[float, str]], RampClimb]:
    """Every (rate, stage) the plan asks for, a server holding what `holds` says."""
    climb = RampClimb(options)
    asked: list[tuple[float, str]] = []
    while (step := climb.next_step()) is not None:
        asked.append((step.rate, step.stage))
        held = holds(step.rate)
        climb.record(held, "" if held else "p99 150 ms > 100 ms")
        assert len(asked) < 100, "the climb does not end"
    return asked, climb


def test_fine_steps_of_ten_percent_start_from_the_last_coarse_step_held() -> None:
    options = RampOptions(start=1000, factor=1.25, fine_factor=1.1)
    asked, climb = climb_against(options, lambda rate: rate <= 2000)
    assert asked == [(1000, "coarse"), (1250, "coarse"), (1562.5, "coarse"),
                     (1953.125, "coarse"), (2441.406, "coarse"),
                     (2148.438, "fine")]
    assert climb.held == 1953.125
    assert climb.stopped_because == "2,148/s (fine): p99 150 ms > 100 ms"


def test_fine_steps_climb_while_they_hold_and_stop_below_the_failed_coarse_step() -> None:
    options = RampOptions(start=1000, factor=1.25, fine_factor=1.1)
    # 1,250 fails; 1,100 and 1,210 hold; 1,331 would not be below 1,250.
    asked, climb = climb_against(options, lambda rate: rate < 1240)
    assert asked == [(1000, "coarse"), (1250, "coarse"), (1100, "fine"), (1210, "fine")]
    assert climb.held == 1210
    assert climb.failed_coarse == 1250
    assert climb.stopped_because == (
        "1,250/s: p99 150 ms > 100 ms; the fine step after 1,210/s held, 1,331/s, "
        "would not be below it")


def test_additive_coarse_steps_get_fine_steps_too() -> None:
    options = RampOptions(start=1000, step=1000, fine_factor=1.1)
    asked, climb = climb_against(options, lambda rate: rate <= 2500)
    assert asked == [(1000, "coarse"), (2000, "coarse"), (3000, "coarse"),
                     (2200, "fine"), (2420, "fine"), (2662, "fine")]
    assert climb.held == 2420


def test_no_fine_steps_with_a_fine_factor_of_zero_as_before() -> None:
    options = RampOptions(start=1000, factor=1.25, fine_factor=0)
    asked, climb = climb_against(options, lambda rate: rate < 1500)
    assert asked == [(1000, "coarse"), (1250, "coarse"), (1562.5, "coarse")]
    assert climb.held == 1250
    assert climb.stopped_because == "1,562/s: p99 150 ms > 100 ms"


def test_a_first_step_that_fails_ends_the_climb_with_nothing_held() -> None:
    asked, climb = climb_against(RampOptions(start=1000, factor=1.25), lambda rate: False)
    assert asked == [(1000, "coarse")]
    assert climb.held is None
    assert climb.failed_coarse is None


def test_a_ladder_held_to_max_rate_needs_no_fine_steps() -> None:
    options = RampOptions(start=20, step=20, max_rate=60)
    asked, climb = climb_against(options, lambda rate: True)
    assert asked == [(20, "coarse"), (40, "coarse"), (60, "coarse")]
    assert climb.held == 60
    assert climb.stopped_because == "reached --max-rate 60"


def test_a_fine_factor_as_wide_as_the_coarse_one_adds_no_step() -> None:
    options = RampOptions(start=1000, factor=1.1, fine_factor=1.1)
    asked, climb = climb_against(options, lambda rate: rate < 1200)
    assert [stage for _, stage in asked] == ["coarse"] * 3
    assert climb.held == 1100
    assert climb.stopped_because == (
        "1,210/s: p99 150 ms > 100 ms; the fine step after 1,100/s held, 1,210/s, "
        "would not be below it")


@pytest.mark.parametrize("fine", [1.0, 0.5, -1.1])
def test_a_fine_factor_that_does_not_climb_is_refused(fine: float) -> None:
    options = BenchOptions(url="http://x", scenario="ramp",
                           ramp=RampOptions(factor=1.25, fine_factor=fine))
    assert "--fine-factor must be above 1 (or 0: no fine steps)" in options.check()
    assert BenchOptions(url="http://x", scenario="ramp",
                        ramp=RampOptions(fine_factor=0)).check() == []
