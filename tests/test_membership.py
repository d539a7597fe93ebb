"""The group membership watch (streams/membership.py): a join that never completes and a group that never
settles are reported, rarely, and a healthy group never is."""

from __future__ import annotations

from streams.membership import (
    FENCED,
    FENCINGS,
    FLAP_WINDOW_S,
    FLAPPING,
    FLAPS,
    MIN_JOIN_S,
    NO_ASSIGNMENT,
    MembershipWatch,
    join_limit,
)


def test_a_worker_never_assigned_is_reported_after_the_join_limit_then_once_each_limit():
    w = MembershipWatch(started=100.0, join_s=30.0, instance_id="w-1")
    assert w.problem(129.0) is None
    line = w.problem(130.0)
    assert line is not None and "no partition assignment 30 s after start" in line and "'w-1'" in line
    assert w.problem(131.0) is None and w.problem(159.0) is None  # not a line a second
    assert w.problem(160.0) is not None


def test_an_empty_assignment_is_settled_and_a_dynamic_worker_is_not_told_about_instance_ids():
    w = MembershipWatch(started=0.0, join_s=30.0)
    w.assigned(5.0)  # nothing for it: more workers than partitions
    assert w.problem(1000.0) is None
    never = MembershipWatch(started=0.0, join_s=30.0).problem(30.0)
    assert never is not None and "group_instance_id" not in never and "coordinator" in never


def test_a_rebalance_a_second_is_reported_and_workers_joining_one_by_one_are_not():
    flapping = MembershipWatch(started=0.0, join_s=30.0, instance_id="same")
    lines = []
    for t in range(1, 120):
        flapping.assigned(float(t))
        lines.append(flapping.problem(float(t) + 0.5))
    reported = [line for line in lines if line]
    assert len(reported) == 4 and f"{FLAPS} rebalances in {FLAP_WINDOW_S:.0f} s" in reported[0]
    assert "each join fences the other" in reported[0]
    # a fleet of 12 started a few seconds apart: a rebalance each, then quiet
    fleet = MembershipWatch(started=0.0, join_s=30.0)
    for t in range(12):
        fleet.assigned(2.0 + 3 * t)
        assert fleet.problem(2.5 + 3 * t) is None
    assert fleet.problem(600.0) is None


def test_partitions_fenced_again_and_again_are_reported_and_one_move_a_rebalance_is_not():
    """Twins on a loaded host: rebalances a few seconds apart, too few to be flapping, while each side's
    transactions fence the other's (tests/test_faults.py saw it in CI on 2026-12-03)."""
    twin = MembershipWatch(started=0.0, join_s=30.0, instance_id="twin")
    lines = []
    for t in range(40):
        if t % 4 == 0:
            twin.assigned(float(t))  # a rebalance every 4 s: 15 a minute, under FLAPS
        twin.fenced(t + 0.5)
        lines.append(twin.problem(t + 0.6))
    reported = [i for i, line in enumerate(lines) if line]
    assert reported == [FENCINGS - 1, FENCINGS - 1 + 30], lines  # then once each join_s
    first = lines[reported[0]]
    assert first is not None and f"{FENCINGS} transactions fenced in {FLAP_WINDOW_S:.0f} s" in first
    assert "'twin'" in first
    assert twin.unsettled(40.0) == FENCED
    assert twin.unsettled(39.6 + FLAP_WINDOW_S) is None  # a quiet window: settled
    # a fleet rebalanced a few times: each partition that moved fences its old owner once
    fleet = MembershipWatch(started=0.0, join_s=30.0)
    for t in range(3):
        fleet.assigned(10.0 * t)
        for p in range(3):
            fleet.fenced(10.0 * t + 0.1 * p)
    assert fleet.unsettled(25.0) is None and fleet.problem(25.0) is None


def test_the_state_a_dashboard_reads_is_unsettled_for_as_long_as_it_lasts_not_once_per_limit():
    never = MembershipWatch(started=0.0, join_s=30.0)
    assert never.unsettled(29.0) is None
    assert never.problem(30.0) is not None and never.problem(31.0) is None  # the log line: once per limit
    assert never.unsettled(30.0) == never.unsettled(31.0) == NO_ASSIGNMENT  # the metric: all along
    never.assigned(40.0)
    assert never.unsettled(41.0) is None and never.rebalances == 1
    flapping = MembershipWatch(started=0.0, join_s=30.0)
    for t in range(FLAPS):
        flapping.assigned(float(t))
    assert flapping.unsettled(float(FLAPS)) == FLAPPING and flapping.rebalances == FLAPS
    assert flapping.unsettled(FLAPS + FLAP_WINDOW_S) is None  # quiet for a window: settled
    assert flapping.rebalances == FLAPS  # a total, not the window's count


def test_the_join_limit_is_several_sessions_and_never_under_the_minimum():
    assert join_limit(6.0) == MIN_JOIN_S
    assert join_limit(60.0) == 300.0


def test_the_watch_thread_logs_a_problem_on_its_own(caplog):
    import threading
    import time

    from streams.membership import watch_membership

    caplog.set_level("ERROR", logger="streams.membership")
    stop = threading.Event()  # else it logs on into the other tests of this process for as long as it lives
    watch = MembershipWatch(started=time.monotonic() - 60, join_s=30.0, instance_id="x")
    thread = watch_membership(watch, "mygroup", stop)
    try:
        deadline = time.monotonic() + 10
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(10)
    assert caplog.records and "consumer group mygroup: no partition assignment" in caplog.records[0].getMessage()
    assert not thread.is_alive()


def test_error_82_is_named_and_says_what_to_fix():
    """aiokafka 0.14 has no class for FENCED_INSTANCE_ID: its join, sync and heartbeat lines said UnknownError."""
    from aiokafka import errors

    from streams.membership import FencedInstanceIdError, name_fenced_instance_id

    name_fenced_instance_id()
    name_fenced_instance_id()  # twice: harmless
    assert errors.for_code(82) is FencedInstanceIdError
    line = f"Unexpected exception in heartbeat task: {errors.for_code(82)()!r}"  # aiokafka's own wording
    assert "[Error 82] FencedInstanceIdError" in line and "MT_GROUP_INSTANCE_ID" in line
    assert errors.for_code(-1) is errors.UnknownError
