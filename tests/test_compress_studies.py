"""The approximation studies (deep compression, TT-layer, sparse crossover, low rank): their specs,
and the pieces of their measurements that can be checked by hand."""

import pytest
import torch

from suite.compress.tensor_train import TTLinear
from suite.forward_memory import measure_forward
from suite.paths import reproductions_dir
from suite.spec import PROFILES, load_spec
from suite.studies import deep_compression as dc
from suite.studies import low_rank as lr
from suite.studies import sparse_crossover as sc

STUDY_SPECS = ["deep-compression-mnist", "deep-compression-vgg16", "tt-layer", "sparse-crossover", "low-rank"]


@pytest.mark.parametrize("name", STUDY_SPECS)
@pytest.mark.parametrize("profile", PROFILES)
def test_specs_load_in_every_profile(name, profile):
    spec = load_spec(reproductions_dir() / f"{name}.toml", profile)
    assert spec.study is not None and spec.seeds


def test_forward_memory_counts_what_the_pass_holds_at_once():
    def fn():
        a = torch.ones(100)  # 400 bytes
        b = a * 2  # 400 more while a lives
        del a
        return b[:50].clone()  # 200 more while b lives: peak 800 bytes

    m = measure_forward(fn)
    assert (m.peak_bytes, m.largest_bytes, m.allocated_bytes) == (800, 400, 1000)


def test_the_papers_tt_layer_allocates_0_766_mib_at_once_at_most_per_tensor():
    """Modes 2x7x8x8x7x4 -> 4^6, ranks 4, one image: the first core's output is m_1 r_1 (N / n_1) =
    4 x 4 x 12544 floats = 802816 bytes = 0.766 MiB, the paper's 'memory for feeding forward'."""
    layer = TTLinear([2, 7, 8, 8, 7, 4], [4] * 6, ranks=4)
    x = torch.randn(1, 25088)
    m = measure_forward(lambda: layer(x), x, *layer.parameters())
    assert m.largest_bytes == 4 * 4 * 12544 * 4


def test_crossover_interpolates_in_log_density():
    cells = [{"density": d, "over_dense": {"csr": r}} for d, r in ((0.01, 0.25), (0.1, 0.5), (1.0, 2.0))]
    c = sc.crossover_density(cells, "csr")
    # between 0.1 (ratio 1/2) and 1.0 (ratio 2): log-ratio crosses 0 halfway in log density -> sqrt(0.1)
    assert c["kind"] == "crossover" and c["density"] == pytest.approx(0.1 ** 0.5)
    assert sc.crossover_density(cells[:2], "csr")["kind"] == "always faster"


def test_pruned_matrices_have_the_asked_density():
    w = torch.randn(64, 64)
    assert int((sc.magnitude_pruned(w, 0.25) != 0).sum()) == 1024
    b = sc.block_pruned(w, 0.25, 8)
    assert int((b != 0).sum()) == 1024
    assert b.to_sparse_bsr((8, 8)).values().shape[0] == 16  # 16 of the 64 blocks kept


def test_low_rank_factorizes_only_layers_it_makes_smaller():
    model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    net, layers = lr.factorized(model, 8)  # 8 (784 + 64) < 784 x 64; 8 (64 + 10) < 640 too
    assert [x["factorized"] for x in layers] == [True, True]
    net, layers = lr.factorized(model, 9)  # 9 x 74 = 666 > 640: the classifier stays dense
    assert [x["factorized"] for x in layers] == [True, False]
    assert lr.weight_count(net) == 9 * (784 + 64) + 640


def test_deep_compression_summary_rates():
    rows = [{"dense_bytes": 4000, "bias_bytes": 40, "nonzero": 100, "weights": 1000, "pq_bytes": 200,
             "pqh_bytes": 100, "huffman_table_bytes": 10}]
    stages = {s: {"test_error": 1.0} for s in dc.STAGES}
    s = dc._summary(rows, stages)
    assert (s["pruning_rate"], s["pq_rate"], s["pqh_rate"]) == (10.0, 20.0, 40.0)
    assert s["model_pqh_rate"] == pytest.approx(4040 / 140)


def test_a_validation_error_is_context_never_compared_with_our_test_error():
    """The KConv table gives validation errors on another dataset: shown as context, not compared."""
    import pandas as pd

    from suite.report.baselines import comparable

    row = pd.Series({"metric": "validation_error", "value": "7.84", "plusminus": "", "unit": "%"}, name="kconv")
    assert comparable(row) is None
    assert comparable(row.replace({"validation_error": "test_error"}))[1] == 7.84
