"""The thread count of torch: the count given, else ALVA_THREADS, else OMP_NUM_THREADS, else the cores that other
jobs leave free (alva.threads)."""

from __future__ import annotations

import pytest
import torch

from alva import threads
from alva.threads import ThreadCountError, cgroup_cores, choose_threads, free_cores


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cores, load, free", [
    (2, 0.0, 2),  # idle: every core, torch's own choice
    (2, 0.3, 2),  # a little background work does not cost a core
    (2, 1.0, 1),  # one busy job
    (2, 2.0, 1),  # two busy jobs: never fewer than one thread
    (2, 7.5, 1),  # more load than cores
    (16, 4.0, 12),
    (16, 3.6, 12),  # rounded to the nearest core
    (8, -1.0, 8),  # a nonsense negative load counts as none
])
def test_free_cores_are_the_cores_minus_the_load_rounded_at_least_one(cores, load, free):
    assert free_cores(cores, load) == free


def test_a_process_on_some_of_the_cores_carries_their_share_of_the_load():
    # pinned to 4 of 64 cores on a machine whose 64 cores carry a load of 32: half of each core is busy
    assert free_cores(4, 32.0, host_cores=64) == 2
    assert free_cores(4, 0.0, host_cores=64) == 4
    assert free_cores(4, 64.0, host_cores=64) == 1
    assert free_cores(4, 2.0, host_cores=2) == free_cores(4, 2.0)  # host smaller than cores: no scaling


def test_free_cores_refuses_no_cores():
    with pytest.raises(ValueError, match="cores must be >= 1"):
        free_cores(0, 0.0)


def test_the_given_count_wins_over_the_environment_and_the_machine():
    env = {"ALVA_THREADS": "3", "OMP_NUM_THREADS": "5"}
    assert choose_threads(7, env, cores=2, load=2.0) == threads.ThreadChoice(7, "given")


def test_alva_threads_wins_over_omp_num_threads_and_the_machine():
    assert choose_threads(None, {"ALVA_THREADS": " 3 ", "OMP_NUM_THREADS": "5"}, cores=8, load=0.0) == \
        threads.ThreadChoice(3, "ALVA_THREADS")


def test_omp_num_threads_wins_over_the_machine_unless_torch_would_not_take_it():
    assert choose_threads(None, {"OMP_NUM_THREADS": "5"}, cores=8, load=0.0) == \
        threads.ThreadChoice(5, "OMP_NUM_THREADS")
    for value in ("", "0", "four", "4,2"):
        assert choose_threads(None, {"OMP_NUM_THREADS": value}, cores=8, load=0.0).source == "free cores"


def test_without_a_setting_the_free_cores_are_shared_among_the_processes_of_a_run():
    assert choose_threads(None, {}, cores=8, load=0.0) == threads.ThreadChoice(8, "free cores")
    assert choose_threads(None, {}, cores=8, load=2.0, processes=2).threads == 3
    assert choose_threads(None, {}, cores=2, load=1.0, processes=4).threads == 1
    assert choose_threads(None, {"ALVA_THREADS": ""}, cores=4, load=0.0).threads == 4  # empty: not set


@pytest.mark.parametrize("given, env, message", [
    (0, {}, "threads must be >= 1, got 0"),
    (-2, {}, "threads must be >= 1, got -2"),
    (None, {"ALVA_THREADS": "abc"}, "ALVA_THREADS must be a whole number >= 1, got 'abc'"),
    (None, {"ALVA_THREADS": "0"}, "ALVA_THREADS must be a whole number >= 1, got '0'"),
    (None, {"ALVA_THREADS": "1.5"}, "ALVA_THREADS must be a whole number >= 1, got '1.5'"),
])
def test_a_bad_count_is_refused_naming_where_it_came_from(given, env, message):
    with pytest.raises(ThreadCountError, match=message):
        choose_threads(given, env, cores=2, load=0.0)


@pytest.mark.parametrize("text, cores", [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2),
                                         ("50000 100000", 1), ("", None), ("a b", None)])
def test_a_container_quota_caps_the_cores(text, cores):
    assert cgroup_cores(text) == cores


def test_local_processes_come_from_torchrun():
    assert threads.local_processes({}) == 1
    assert threads.local_processes({"LOCAL_WORLD_SIZE": "4"}) == 4
    assert threads.local_processes({"LOCAL_WORLD_SIZE": "x"}) == 1


STAT_BEFORE = """cpu  300 0 100 600 0 0 0 0 0 0
cpu0 100 0 0 100 0 0 0 0 0 0
cpu1 100 0 50 50 0 0 0 0 0 0
cpu2 100 0 50 450 0 0 0 0 0 0
intr 12345 0 0
"""
# 100 ticks later: cpu0 all busy (user, nice and steal), cpu1 half busy (the rest idle or waiting on I/O),
# cpu2 all idle
STAT_AFTER = """cpu  0 0 0 0 0 0 0 0 0 0
cpu0 180 10 0 100 0 0 0 10 5 0
cpu1 130 0 70 80 20 0 0 0 0 0
cpu2 100 0 50 550 0 0 0 0 0 0
"""


def test_busy_cores_are_the_busy_shares_of_the_cpus_this_process_may_use():
    before, after = threads.parse_cpu_times(STAT_BEFORE), threads.parse_cpu_times(STAT_AFTER)
    assert set(before) == {0, 1, 2}  # the lines of single CPUs only
    assert threads.busy_cores(before, after, {0, 1, 2}) == pytest.approx(1.5)
    assert threads.busy_cores(before, after, {0}) == pytest.approx(1.0)
    assert threads.busy_cores(before, after, {1, 2}) == pytest.approx(0.5)  # pinned to cores that are free
    assert threads.busy_cores(before, after, {7}) == 0.0  # a CPU not reported counts as free
    assert threads.busy_cores(before, before, {0, 1}) == 0.0  # no time passed


def test_the_machine_readers_give_usable_figures():
    cores = threads.usable_cores()
    assert 1 <= cores <= (__import__("os").cpu_count() or 1)
    load, over = threads.other_load(window_s=0.05)
    assert 0.0 <= load and over >= 1


def test_set_threads_sets_torch(restore_threads, monkeypatch):
    assert threads.set_threads(3, environ={}) == threads.ThreadChoice(3, "given")
    assert torch.get_num_threads() == 3
    assert threads.set_threads(environ={"ALVA_THREADS": "2"}).threads == 2
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "other_load", lambda processes=1: (1.0, 4))
    assert threads.set_threads(environ={}) == threads.ThreadChoice(3, "free cores")
    assert torch.get_num_threads() == 3
    assert threads.set_threads(environ={"LOCAL_WORLD_SIZE": "3"}).threads == 1


def test_a_count_the_user_set_needs_no_measurement(restore_threads, monkeypatch):
    def measured(processes=1):
        raise AssertionError("the machine was measured although the count was set")

    monkeypatch.setattr(threads, "other_load", measured)
    assert threads.set_threads(2, environ={}).threads == 2
    assert threads.set_threads(environ={"ALVA_THREADS": "1"}).threads == 1
    assert threads.set_threads(environ={"OMP_NUM_THREADS": "3"}) == threads.ThreadChoice(3, "OMP_NUM_THREADS")
    assert threads.configured_threads(None, {"OMP_NUM_THREADS": "x"}) is None
