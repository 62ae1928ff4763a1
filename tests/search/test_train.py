"""`make train`'s hour: how the budgeted models share it (``search.train.share_of_hour``)."""

import pytest

from search.train import AFTER_TRAINING_SECONDS, HOUR_SECONDS, ROLES, nominal_budget, share_of_hour


def test_on_fast_cores_every_model_keeps_its_nominal_budget():
    assert share_of_hour(420.0, [150.0, 150.0, 360.0], elapsed=1400.0) == 420.0


def test_on_slow_cores_the_time_left_is_shared_in_proportion_to_the_nominal_budgets():
    left = HOUR_SECONDS - AFTER_TRAINING_SECONDS - 2400.0
    share = share_of_hour(420.0, [150.0, 150.0, 360.0], elapsed=2400.0)
    assert share == pytest.approx(left * 420.0 / 1080.0)
    assert share < 420.0


def test_no_time_left_gives_no_budget_and_the_model_its_minimum_epochs():
    assert share_of_hour(360.0, [], elapsed=HOUR_SECONDS) == 0.0


def test_the_cpu_profile_budgets_every_model_and_a_gpu_trains_its_epochs():
    assert all((nominal_budget(role, "cpu") or 0) > 0 for role in ROLES)
    assert all(nominal_budget(role, "full") is None for role in ROLES)
