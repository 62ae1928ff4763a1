"""Reliability fixtures. These tests check refusals and fault handling, not ranking quality, so
``trained_models_dir`` is overridden here with one-epoch models (about a third of the shared
fixture's training time); ``searchable`` and the rest come from tests/conftest.py unchanged."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def trained_models_dir(synthetic_catalog, tmp_path_factory):
    from search.dataset import load_dataset
    from search.train import train_role

    artifacts = tmp_path_factory.mktemp("quick-trained")
    data = load_dataset(synthetic_catalog, artifacts / "cache")
    for role in ("encoder", "classifier", "classifier_image"):
        train_role(role, data, artifacts, profile="tiny", device="cpu", overrides={"epochs": 1})
    return artifacts / "models"


@pytest.fixture(autouse=True)
def no_rate_limit(settings):
    """Searches are not rate limited here (test_ratelimit.py sets its own limits); counters start at zero."""
    from django.core.cache import cache

    settings.SEARCH_RATE_LIMIT = "0"
    cache.clear()
    yield
    cache.clear()
