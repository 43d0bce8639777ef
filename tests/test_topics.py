import numpy as np

from secondself.memory.topics import assign, choose_k, cluster, keywords, representatives


def _blobs(seed=1, per=12, dim=16):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim, dtype=np.float32)[:3] * 5
    x = np.concatenate([c + rng.normal(scale=0.6, size=(per, dim)) for c in centres]).astype(np.float32)
    truth = np.repeat(np.arange(3), per)
    return x, truth


def test_clusters_are_recovered_and_deterministic():
    x, truth = _blobs()
    a = cluster(x, seed=3, k=3, min_cosine=0.0)
    b = cluster(x, seed=3, k=3, min_cosine=0.0)
    assert np.array_equal(a.labels, b.labels) and np.allclose(a.centroids, b.centroids)
    # each true blob maps onto exactly one cluster
    for t in range(3):
        assert len(set(a.labels[truth == t])) == 1
    assert len(set(a.labels)) == 3
    assert np.allclose(np.linalg.norm(a.centroids, axis=1), 1, atol=1e-5)


def test_far_points_and_small_clusters_fit_no_topic():
    x, _ = _blobs()
    odd = np.zeros((1, x.shape[1]), np.float32)
    odd[0, -1] = 5                                   # orthogonal to every blob
    c = cluster(np.concatenate([x, odd]), seed=0, k=3, min_cosine=0.5)
    assert c.labels[-1] == -1
    assert (c.labels[:-1] >= 0).all()
    tiny = cluster(np.concatenate([x, odd, odd * 1.01]), seed=0, k=4, min_size=3, min_cosine=0.0)
    assert (tiny.labels[-2:] == -1).all()            # a 2-chunk cluster is dissolved, its chunks reported


def test_assign_places_new_vectors_or_refuses():
    x, truth = _blobs()
    c = cluster(x, seed=0, k=3, min_cosine=0.0)
    new = np.stack([x[0] * 1.1, np.eye(x.shape[1], dtype=np.float32)[-1]])
    labels = assign(new, c.centroids, min_cosine=0.5)
    assert labels[0] == c.labels[0] and labels[1] == -1


def test_representatives_closest_first_and_keywords_specific():
    x, truth = _blobs()
    c = cluster(x, seed=0, k=3, min_cosine=0.0)
    members = list(np.flatnonzero(c.labels == 0))
    reps = representatives(x, members, c.centroids[0])
    sims = [float(x[i] @ c.centroids[0] / np.linalg.norm(x[i])) for i in reps]
    assert sims == sorted(sims, reverse=True) and sorted(reps) == sorted(members)
    kw = keywords([["cello practice with the orchestra", "orchestra rehearsal, cello bow"],
                   ["sourdough loaf and starter", "the starter needs flour; loaf baked"]], n=3)
    assert set(kw[0]) <= {"cello", "orchestra", "practice", "rehearsal", "bow"} and "orchestra" in kw[0]
    assert "loaf" in kw[1] or "starter" in kw[1]
    assert choose_k(0) == 1 and choose_k(243) == 16 and choose_k(10**6) == 40


def test_speech_verbs_name_no_topic():
    # "Tomás & tell": every note about a person tells and asks; the verb said nothing about the topic
    kw = keywords([["I did not tell Tomás about the audition", "Tomás asked me to tell him first", "told Tomás"],
                   ["the kiln and the glaze", "glaze firing in the kiln"]], n=3)
    words = {w for k in kw[0] for w in k.lower().split()}
    assert "tomás" in words and not {"tell", "asked", "told"} & words
