"""The status page benchmark (`python -m bench.status_page`) runs end to end on a small shop.

Timings are never asserted: only that it builds the shop it describes and the page counts
every problem it was given.
"""

from __future__ import annotations

from bench.status_page import Shape, measure, render


def test_the_problem_shape_adds_up_to_the_problems_asked_for() -> None:
    for problems in (5_000, 101, 7):
        shape = Shape(100_000, problems)
        parts = (shape.rejected, shape.unreadable, shape.unmapped, shape.shadowed)
        assert sum(parts) + shape.untracked == problems


async def test_the_status_page_benchmark_renders_every_problem_it_was_given() -> None:
    figures, groups = await measure(2_000, 100)

    assert [f.name for f in figures] == [
        "first page (works out the mapping facts once)",
        "page",
        "page filtered by SKU (?q=)",
        "page with one SKU's view (?sku=)",
        "/status.json",
    ]
    assert all(f.size > 0 and f.runs for f in figures)
    assert groups == {
        "rejected": 50,
        "not_pushed": 20,
        "unmapped": 20,
        "shadowed": 5,
        "untracked": 5,
        "config": 0,
        "other": 0,
    }
    assert "problems on the page: 100" in render(figures, groups, 2_000, 100)
