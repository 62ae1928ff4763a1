import numpy as np
import pytest

from search.index import IndexFileError, VectorStore, auto_nlist, build_index, recall_at_k


def unit(rng, n, d=16):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def vectors():
    return unit(np.random.default_rng(0), 2000)


def test_build_and_query_matches_exact(tmp_path, vectors):
    manifest = build_index(tmp_path / "v1", {"image": vectors}, version="v1", n_trees=16, search_k=2000)
    assert manifest.count == 2000 and manifest.spaces == {"image": 16} and manifest.metric == "angular"
    store = VectorStore(tmp_path / "v1")
    hits = store.query(vectors[7], 5)
    assert hits[0][0] == 7 and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert [h for h, _ in hits] == [h for h, _ in store.exact(vectors[7], 5)]
    assert recall_at_k(store, vectors[:100], k=10) > 0.9
    assert not (tmp_path / "v1.building").exists()


def test_filters_use_mask(tmp_path, vectors):
    build_index(tmp_path / "v", {"image": vectors}, version="v")
    store = VectorStore(tmp_path / "v")
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
    one, two = VectorStore(tmp_path / "one"), VectorStore(tmp_path / "two")
    assert two.manifest.shards == 2 and (tmp_path / "two" / "image.1.ann").exists()
    for q in vectors[[0, 1500, 1999]]:
        assert [h for h, _ in one.exact(q, 10)] == [h for h, _ in two.query(q, 10, search_k=100000)]


def test_missing_or_corrupt_index_raises_clear_error(tmp_path, vectors):
    with pytest.raises(IndexFileError, match="manifest"):
        VectorStore(tmp_path / "nothing")
    build_index(tmp_path / "v", {"image": vectors}, version="v")
    (tmp_path / "v" / "image.0.ann").write_bytes(b"garbage")
    with pytest.raises(IndexFileError):
        VectorStore(tmp_path / "v")


def test_ivf_backend_finds_what_exact_search_finds(tmp_path, vectors):
    manifest = build_index(tmp_path / "v", {"image": vectors, "text": vectors[::-1].copy()}, version="v",
                           backend="ivf", nprobe=8)
    assert manifest.backend == "ivf" and manifest.nlist == auto_nlist(2000) and manifest.nprobe == 8
    assert (tmp_path / "v" / "image.0.ivf").exists() and not list((tmp_path / "v").glob("*.ann"))
    store = VectorStore(tmp_path / "v")
    assert store.backend == "ivf" and store.describe() == f"ivf nlist={manifest.nlist} nprobe=8"
    hits = store.query(vectors[7], 5)
    assert hits[0][0] == 7 and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert [h for h, _ in store.query(vectors[3], 5, space="text")][0] == 1996
    # scanning every partition is exact search
    for q in vectors[[0, 500, 1999]]:
        assert [h for h, _ in store.query(q, 10, nprobe=manifest.nlist)] == [h for h, _ in store.exact(q, 10)]
    assert recall_at_k(store, vectors[:100], k=10, nprobe=manifest.nlist) == 1.0
    assert recall_at_k(store, vectors[:100], k=10, nprobe=1) < recall_at_k(store, vectors[:100], k=10, nprobe=16)
    broad = np.ones(len(vectors), bool)
    broad[7] = False
    assert 7 not in [h for h, _ in store.query(vectors[7], 5, allowed=broad)]


def test_ivf_shards_merge_and_small_or_empty_indexes_work(tmp_path, vectors):
    build_index(tmp_path / "two", {"image": vectors}, version="two", backend="ivf", shards=2)
    two = VectorStore(tmp_path / "two", nprobe=1000)
    assert (tmp_path / "two" / "image.1.ivf").exists()
    for q in vectors[[0, 1500, 1999]]:
        assert [h for h, _ in two.query(q, 10)] == [h for h, _ in two.exact(q, 10)]
    few = build_index(tmp_path / "few", {"image": vectors[:3]}, version="few", backend="ivf")
    assert few.nlist == 1 and [h for h, _ in VectorStore(tmp_path / "few").query(vectors[2], 5)][0] == 2
    build_index(tmp_path / "none", {"image": np.zeros((0, 16), np.float32)}, version="none", backend="ivf")
    assert VectorStore(tmp_path / "none").query(vectors[0], 5) == []


def test_ivf_corrupt_file_and_unknown_backend_are_clear_errors(tmp_path, vectors):
    with pytest.raises(ValueError, match="unknown index backend"):
        build_index(tmp_path / "x", {"image": vectors}, version="x", backend="lsh")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.building").exists()
    build_index(tmp_path / "v", {"image": vectors}, version="v", backend="ivf")
    path = tmp_path / "v" / "image.0.ivf"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 9 // 10])  # truncated (a copy cut short): refused, never a crash
    with pytest.raises(IndexFileError, match="cannot be loaded"):
        VectorStore(tmp_path / "v")
    path.write_bytes(b"garbage")
    with pytest.raises(IndexFileError, match="cannot be loaded"):
        VectorStore(tmp_path / "v")


def test_ivf_leaves_the_process_thread_count_alone(tmp_path, vectors):
    import torch

    before = torch.get_num_threads()
    build_index(tmp_path / "v", {"image": vectors}, version="v", backend="ivf")
    VectorStore(tmp_path / "v").query(vectors[0], 5)
    assert torch.get_num_threads() == before  # faiss and PyTorch share OpenMP's setting
