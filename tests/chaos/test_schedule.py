"""The seeded parts alone: the fault schedule and the workload repeat for a seed and keep limits."""

from __future__ import annotations

import itertools

from tests.chaos.nemesis import CATEGORY, RESTART_BROKER, plan
from tests.chaos.workload import ABORTED, PLAIN, TOMBSTONE, Workload


def test_a_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    """``plan`` is a pure function of seed and length."""
    assert plan(7, 120) == plan(7, 120)
    assert plan(7, 120) != plan(8, 120)


def test_faults_of_one_category_never_overlap_and_end_in_time() -> None:
    """Within a category faults follow one another; all end before the period; one restart."""
    for seed in range(30):
        faults = plan(seed, 150)
        assert all(f.ends <= 150 for f in faults)
        assert sum(f.kind == RESTART_BROKER for f in faults) <= 1
        for category in set(CATEGORY.values()):
            mine = [f for f in faults if CATEGORY[f.kind] == category]
            assert all(a.ends <= b.at for a, b in itertools.pairwise(mine))


def test_a_seed_gives_the_same_stream_and_flags_limit_its_kinds() -> None:
    """The same seed gives the same batches; a restricted workload writes only its kinds."""

    def stream(workload: Workload) -> list[tuple[str, list[str]]]:
        return [(b.producer, [r.kind for r in b.records]) for b in workload.batches(200)]

    assert stream(Workload(3, "t")) == stream(Workload(3, "t"))
    only_new = stream(Workload(3, "t", frozenset({"new"})))
    assert {producer for producer, _ in only_new} == {PLAIN}
    assert {kind for _, kinds in only_new for kind in kinds} == {"new"}
    everything = {kind for _, kinds in stream(Workload(3, "t")) for kind in kinds}
    assert {TOMBSTONE, ABORTED} <= everything
