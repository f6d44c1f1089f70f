"""Width-reduced sub-models (bench/strategies/fedavg/width.py, models.build(width=r)) against hand-computed cases,
torch's own slicing, and HeteroFL's rule (Diao et al. 2021) written out on a hand-made two-layer model."""

import numpy as np
import pytest

from bench.strategies.fedavg.width import EntrywiseMean, sub_model_indices

torch = pytest.importorskip("torch")


def test_indices_of_leading_slices_by_hand():
    """A (4, 3) weight and a (4,) bias cut to (2, 3) and (2,): rows 0-1 of the weight are flat 0-5, the bias starts
    at 12. A (2, 3, 2) tensor cut to (1, 2, 2): entries 0-3. Mutations caught: trailing instead of leading slices,
    the offset of the next parameter left out."""
    assert sub_model_indices([(4, 3), (4,)], [(2, 3), (2,)]).tolist() == [0, 1, 2, 3, 4, 5, 12, 13]
    assert sub_model_indices([(2, 3, 2)], [(1, 2, 2)]).tolist() == [0, 1, 2, 3]
    assert sub_model_indices([(3,), (2, 2)], [(3,), (2, 1)]).tolist() == [0, 1, 2, 3, 5]


def test_width_reduced_models_keep_inputs_and_classes_and_scale_hidden_units():
    """ceil(r C) units per hidden layer: resnet20 at r = 0.5 has 8, 16 and 32 channels; cnn at r = 0.3 has
    ceil(9.6) = 10 and ceil(19.2) = 20 channels and ceil(153.6) = 154 hidden units; an exact product is not rounded
    up (0.5 x 16 = 8)."""
    from bench.workload.models import build

    res = build("resnet20", (3, 32, 32), 10, 0, width=0.5)
    assert (res.conv1.out_channels, res.blocks[3].conv1.out_channels, res.fc.in_features) == (8, 16, 32)
    assert res.conv1.in_channels == 3 and res.fc.out_features == 10
    cnn = build("cnn", (1, 8, 8), 10, 0, width=0.3)
    assert (cnn.conv1.out_channels, cnn.conv2.out_channels, cnn.fc1.out_features) == (10, 20, 154)
    assert cnn.fc1.in_features == 20 * 2 * 2 and cnn.fc2.out_features == 10


@pytest.mark.parametrize("name, shape", [("cnn", (1, 8, 8)), ("resnet20", (3, 8, 8)), ("mlp", (1, 8, 8))])
def test_a_sub_model_loaded_from_the_indices_holds_the_leading_slices(name, shape):
    """Loading the full model's flat vector at the indices into the narrow model gives, for every parameter, the
    full parameter's leading slice (torch's own indexing as the oracle)."""
    from bench.strategies.fedavg.replica import shapes
    from bench.workload.models import build, flat_parameters, layers_of, load_flat

    full, sub = build(name, shape, 10, 1), build(name, shape, 10, 2, width=0.4)
    full_layers, sub_layers = layers_of(full), layers_of(sub)
    indices = sub_model_indices(shapes(full_layers), shapes(sub_layers))
    sub_params = [p for layer in sub_layers for p in layer.params]
    load_flat(sub_params, flat_parameters(full_layers)[indices])
    full_params = [p for layer in full_layers for p in layer.params]
    for f, s in zip(full_params, sub_params, strict=True):
        assert torch.equal(s, f[tuple(slice(0, n) for n in s.shape)])


def test_entrywise_mean_is_heterofls_rule_on_a_two_layer_model():
    """Linear(3, 4) then Linear(4, 2). Client a trains the full model (n = 2), client b the half-width one (n = 3:
    W1[:2, :], b1[:2], W2[:, :2], b2). Entries both hold: (2 a + 3 b) / 5; entries only a holds: a's. A round with
    b alone keeps the entries it does not hold. Mutations caught: dividing by the clients' total weight, the
    sub-model's values written at the leading flat positions."""
    full_shapes = [(4, 3), (4,), (2, 4), (2,)]
    sub_shapes = [(2, 3), (2,), (2, 2), (2,)]
    gen = np.random.default_rng(1)
    a = [gen.normal(size=s) for s in full_shapes]
    b = [gen.normal(size=s) for s in sub_shapes]
    mean = EntrywiseMean(12 + 4 + 8 + 2)
    mean.add(np.concatenate([t.ravel() for t in a]).astype(np.float32), 2.0, np.arange(26))
    mean.add(np.concatenate([t.ravel() for t in b]).astype(np.float32), 3.0, sub_model_indices(full_shapes, sub_shapes))
    x = np.zeros(26, dtype=np.float32)
    mean.update(x)
    a32 = [t.astype(np.float32).astype(np.float64) for t in a]
    b32 = [t.astype(np.float32).astype(np.float64) for t in b]
    expected = [t.copy() for t in a32]
    expected[0][:2, :] = (2 * a32[0][:2, :] + 3 * b32[0]) / 5
    expected[1][:2] = (2 * a32[1][:2] + 3 * b32[1]) / 5
    expected[2][:, :2] = (2 * a32[2][:, :2] + 3 * b32[2]) / 5
    expected[3][:] = (2 * a32[3] + 3 * b32[3]) / 5
    assert np.array_equal(x, np.concatenate([t.ravel() for t in expected]).astype(np.float32))
    mean.reset()
    mean.add(np.concatenate([t.ravel() for t in b]).astype(np.float32), 3.0, sub_model_indices(full_shapes, sub_shapes))
    before = x.copy()
    mean.update(x)
    held = np.zeros(26, dtype=bool)
    held[sub_model_indices(full_shapes, sub_shapes)] = True
    assert np.array_equal(x[~held], before[~held]) and not np.array_equal(x[held], before[held])


def test_a_tiers_width_is_given_or_the_root_of_its_parameter_share():
    """Layers of 10, 30 and 60 parameters, weak leaving the first two untrained (p = 0.6): r = sqrt(0.6) unless
    --tier-width gives it; moderate leaves one (p = 0.9); strong trains all (r = 1)."""
    from bench.strategies.fedavg.width import WidthReduction
    from tests.fl_config import fl_config

    offsets = np.array([0, 10, 40, 100])
    for given, weak in (("", np.sqrt(0.6)), ("weak:0.25", 0.25)):
        cfg = fl_config(strategy="fedavg", fl_algorithm="width", client_tiers="strong:0.5,moderate:0.25,weak:0.25",
                        tier_frozen="moderate:1,weak:2", tier_width=given)  # fmt: skip
        algorithm = WidthReduction(cfg, 100)
        algorithm.set_model(offsets)
        assert np.allclose(algorithm.widths, (1.0, np.sqrt(0.9), weak), rtol=1e-12)


def test_indices_of_no_parameters_and_of_mismatched_models():
    assert sub_model_indices([], []).tolist() == []
    with pytest.raises(ValueError):
        sub_model_indices([(2, 2), (2,)], [(1, 1)])  # a sub-model with fewer parameters is not a sub-model


def test_width_reduction_folds_each_tiers_sub_model_into_the_entries_it_holds():
    """4 clients, 2 strong, 2 weak (tiers from the recorded assignment); a 3-entry layer and a 2-entry layer, the
    weak sub-model holding entries 0 and 3. Strong a (n = 1), weak b (n = 3): entries 0 and 3 = (a + 3 b) / 4,
    entries 1, 2, 4 = a's. Bytes uploaded: 20 (strong), 8 (weak). Mutations caught: a weak client folded over the
    full model, its weight taken as 1, the sub-model's size read from the strong tier."""
    from bench.strategies.fedavg.protocol import Head, client_header
    from bench.strategies.fedavg.width import WidthReduction
    from tests.fl_config import fl_config

    cfg = fl_config(strategy="fedavg", fl_algorithm="width", clients=4, client_tiers="strong:0.5,weak:0.5",
                    tier_frozen="weak:1", tier_width="weak:0.5")  # fmt: skip
    algorithm = WidthReduction(cfg, 5)
    algorithm.set_model(np.array([0, 3, 5]))
    algorithm.set_sub_model(2, np.array([0, 3]), [1, 1])
    strong, weak = (int(np.flatnonzero(algorithm.tier_of == t)[0]) for t in (0, 2))
    assert algorithm.upload_offsets(strong) is None and algorithm.upload_offsets(weak).tolist() == [0, 1, 2]
    layer_bytes = np.array([12, 8])
    assert algorithm.uploaded_bytes(strong, layer_bytes) == 20 and algorithm.uploaded_bytes(weak, layer_bytes) == 8
    a = np.array([1, 2, 3, 4, 5], dtype=np.float32)
    b = np.array([10, 20, 0, 0, 0], dtype=np.float32)  # the sub-model's 2 entries first (the rest: scratch)
    mean = algorithm.new_aggregate()
    algorithm.fold(mean, a, client_header(strong, 0, samples=1))
    algorithm.fold(mean, b, client_header(weak, 0, samples=3))
    x = np.zeros(5, dtype=np.float32)
    algorithm.server_update(x, mean, 0)
    assert x.tolist() == [(1 + 30) / 4, 2, 3, (4 + 60) / 4, 5] and Head.SAMPLES == 1
    facts = algorithm.tier_facts()
    assert facts[2] == {"width": 0.5, "parameters": 2, "layer_parameters": [1, 1]} and facts[0]["parameters"] == 5
