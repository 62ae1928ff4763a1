import numpy as np
import pytest

from search.index import AnnoyStore, IndexFileError, build_index, recall_at_k


def unit(rng, n, d=16):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def vectors():
    return unit(np.random.default_rng(0), 2000)


def test_build_and_query_matches_exact(tmp_path, vectors):
    manifest = build_index(tmp_path / "v1", {"image": vectors}, version="v1", n_trees=16, search_k=2000)
    assert manifest.count == 2000 and manifest.spaces == {"image": 16} and manifest.metric == "angular"
    store = AnnoyStore(tmp_path / "v1")
    hits = store.query(vectors[7], 5)
    assert hits[0][0] == 7 and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert [h for h, _ in hits] == [h for h, _ in store.exact(vectors[7], 5)]
    assert recall_at_k(store, vectors[:100], k=10) > 0.9
    assert not (tmp_path / "v1.building").exists()


def test_filters_use_mask(tmp_path, vectors):
    build_index(tmp_path / "v", {"image": vectors}, version="v")
    store = AnnoyStore(tmp_path / "v")
    allowed = np.zeros(len(vectors), bool)
    allowed[::10] = True  # selective: exact over members
    hits = store.query(vectors[3], 5, allowed=allowed)
    assert len(hits) == 5 and all(h % 10 == 0 for h, _ in hits)
    broad = np.ones(len(vectors), bool)
    broad[3] = False
    assert 3 not in [h for h, _ in store.query(vectors[3], 5, allowed=broad)]
    assert store.query(vectors[3], 5, allowed=np.zeros(len(vectors), bool)) == []


def test_two_shards_merge_to_the_same_answer(tmp_path, vectors):
    build_index(tmp_path / "one", {"image": vectors}, version="one", n_trees=16, search_k=4000)
    build_index(tmp_path / "two", {"image": vectors}, version="two", n_trees=16, search_k=4000, shards=2)
    one, two = AnnoyStore(tmp_path / "one"), AnnoyStore(tmp_path / "two")
    assert two.manifest.shards == 2 and (tmp_path / "two" / "image.1.ann").exists()
    for q in vectors[[0, 1500, 1999]]:
        assert [h for h, _ in one.exact(q, 10)] == [h for h, _ in two.query(q, 10, search_k=100000)]


def test_missing_or_corrupt_index_raises_clear_error(tmp_path, vectors):
    with pytest.raises(IndexFileError, match="manifest"):
        AnnoyStore(tmp_path / "nothing")
    build_index(tmp_path / "v", {"image": vectors}, version="v")
    (tmp_path / "v" / "image.0.ann").write_bytes(b"garbage")
    with pytest.raises(IndexFileError):
        AnnoyStore(tmp_path / "v")
