"""A running app moves to newly trained models together with the index they built (``make train`` + reindex)."""

import pytest

from webapp import services
from webapp.models import IndexVersion


@pytest.fixture
def loaded(searchable):
    models = services.get_models()
    models.encoder()  # loaded, as after a first query
    return models


def test_models_stay_loaded_while_the_index_is_theirs(loaded):
    services.active_store()
    assert services.get_models() is loaded


def test_an_index_built_by_another_encoder_reloads_the_models_from_disk(loaded, settings):
    # a retrained encoder on disk (another version) and an index version built with it
    import torch

    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.train_encoder import load_encoder

    path = settings.ARTIFACTS_DIR / "models" / "encoder.pt"
    old = load_checkpoint(path, kind="encoder")
    net = load_encoder(old)
    with torch.no_grad():
        net.project.weight.mul_(1.01)  # "retrained"
    new = save_checkpoint(path, kind="encoder", config=old["config"], model=net, metrics=old["metrics"])
    assert new["version"] != old["version"]
    services.active_store()
    assert services.get_models() is loaded  # the file changed, the index did not: the old models still serve
    IndexVersion.objects.filter(is_active=True).update(encoder_version=new["version"])
    services.active_store()
    assert services.get_models() is not loaded
    assert services.get_models().encoder().version == new["version"]
