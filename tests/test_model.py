"""Tests for asr.model: shapes, lengths, exactness under padding and gradient flow."""

import math

import pytest
import torch
import torch.nn.functional as F

from asr.model import (
    CTCModel,
    IntermediateCTC,
    ModelDims,
    conv_out_length,
    reverse_within_lengths,
    strides_for,
    subsampled_lengths,
)

N_MELS = 8
VOCAB = 6

# CPU LSTMs with projections fall back from oneDNN; PyTorch says so once.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")


def tiny(
    subsampling=2,
    proj_size=0,
    dropout=0.0,
    kernel=5,
    seed=0,
    recurrent_dropout=0.0,
    front_end="conv1d",
):
    torch.manual_seed(seed)
    dims = ModelDims(
        n_mels=N_MELS,
        vocab_size=VOCAB,
        conv_channels=12,
        conv_kernel=kernel,
        subsampling=subsampling,
        front_end=front_end,
        conv2d_channels=3,
        hidden_size=10,
        num_layers=2,
        proj_size=proj_size,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
    )
    return CTCModel(dims)


def padded_batch(lengths, garbage=True, seed=1):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    feats = torch.randn(len(lengths), int(lengths.max()), N_MELS, generator=gen)
    if garbage:
        # Large values where padding is: anything but zeros.
        noise = 50 * torch.randn(feats.shape, generator=gen) + 7
        pad = torch.arange(feats.shape[1])[None, :] >= lengths[:, None]
        feats = torch.where(pad[:, :, None], noise, feats)
    return feats, lengths


def ceil_div(a, b):
    return -(-a // b)


# ------------------------------------------------------------------ lengths and shapes


@pytest.mark.parametrize("subsampling", [1, 2, 4])
def test_output_shapes_and_lengths(subsampling):
    model = tiny(subsampling).eval()
    feats, lengths = padded_batch([23, 17, 4, 1])
    with torch.no_grad():
        log_probs, out_lengths = model(feats, lengths)
    assert out_lengths.tolist() == subsampled_lengths(lengths, 5, subsampling).tolist()
    assert out_lengths.tolist() == model.output_lengths(lengths).tolist()
    # With kernel 5 and padding 2 each stride-2 conv gives ceil(L / 2).
    expected = [ceil_div(n, subsampling) for n in lengths.tolist()]
    if subsampling == 4:
        expected = [ceil_div(ceil_div(n, 2), 2) for n in lengths.tolist()]
    assert out_lengths.tolist() == expected
    assert log_probs.shape == (4, ceil_div(23, subsampling), VOCAB)
    assert log_probs.dtype == torch.float32


@pytest.mark.parametrize("kernel", [3, 4, 5, 7])
def test_conv_out_length_formula(kernel):
    for n in range(1, 30):
        # Output of a conv with padding k // 2, by the definition of a strided window count.
        padded = n + 2 * (kernel // 2)
        assert int(conv_out_length(torch.tensor(n), kernel, 1)) == padded - kernel + 1
        assert int(conv_out_length(torch.tensor(n), kernel, 2)) == (padded - kernel) // 2 + 1


def test_strides_for():
    assert strides_for(1) == [1]
    assert strides_for(2) == [2]
    assert strides_for(4) == [2, 2]
    assert strides_for(8) == [2, 2, 2]
    for bad in (0, 3, 16):
        with pytest.raises(ValueError):
            strides_for(bad)


@pytest.mark.parametrize("subsampling", [1, 4])
def test_log_probs_are_normalised(subsampling):
    model = tiny(subsampling).eval()
    feats, lengths = padded_batch([19, 11])
    with torch.no_grad():
        log_probs, _ = model(feats, lengths)
    assert torch.all(log_probs <= 0)
    sums = log_probs.exp().sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ padding invariance


@pytest.mark.parametrize("proj_size", [0, 4])
@pytest.mark.parametrize("train_mode", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("subsampling", [1, 2, 4])
def test_padding_does_not_change_results(proj_size, train_mode, subsampling):
    model = tiny(subsampling, proj_size=proj_size, dropout=0.0)
    model.train(train_mode)
    assert_padded_matches_alone(model, [21, 14, 5])


def assert_padded_matches_alone(model, lengths):
    """Each utterance of a padded batch (garbage past its length) gives what it gives alone;
    returns the batch's output lengths."""
    feats, lengths = padded_batch(lengths)
    with torch.no_grad():
        batch_lp, batch_len = model(feats, lengths)
        for b, n in enumerate(lengths.tolist()):
            alone_lp, alone_len = model(feats[b : b + 1, :n], torch.tensor([n]))
            assert int(alone_len[0]) == int(batch_len[b]) == alone_lp.shape[1]
            m = int(alone_len[0])
            diff = float((batch_lp[b, :m] - alone_lp[0]).abs().max())
            assert diff <= 1e-5, f"utterance {b}: padded vs alone differ by {diff:.3g}"
    return batch_len


@pytest.mark.parametrize("train_mode", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("subsampling", [1, 2, 4, 8])
def test_conv2d_front_end_padding_and_lengths(train_mode, kernel, subsampling):
    model = tiny(subsampling, kernel=kernel, front_end="conv2d")
    model.train(train_mode)
    lengths = [21, 14, 5, 1]
    batch_len = assert_padded_matches_alone(model, lengths)
    assert batch_len.tolist() == model.output_lengths(torch.tensor(lengths)).tolist()


def test_conv2d_front_end_shares_filters_across_mel_bands():
    # One conv, stride 1: a pattern moved up the mel axis gives the same feature maps,
    # moved likewise (away from the edges), which a 1-D front end does not promise.
    model = tiny(1, kernel=3, front_end="conv2d").eval()
    conv = model.front_end.convs[0]
    feats = torch.zeros(1, 9, 16)
    feats[0, 3:6, 4:7] = torch.randn(3, 3)
    moved = torch.roll(feats, 5, dims=2)
    with torch.no_grad():
        a, b = conv(feats[:, None]), conv(moved[:, None])
    torch.testing.assert_close(torch.roll(a, 5, dims=3)[..., 1:-1], b[..., 1:-1])
    assert model.front_end.proj.in_features == 3 * 8  # N_MELS bands, 3 maps


def test_conv2d_front_end_trains_under_bf16_with_intermediate_ctc():
    model = tiny(4, kernel=3, front_end="conv2d", dropout=0.1).train()
    view = IntermediateCTC(model, layer=1)
    feats, lengths = padded_batch([21, 14, 5])
    targets, target_lengths = torch.tensor([[1, 2], [3, 4], [5, 0]]), torch.tensor([2, 2, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        top, out_lengths, lower = view(feats, lengths)
    assert top.dtype == lower.dtype == torch.float32  # log_softmax in float32
    loss = sum(
        F.ctc_loss(lp.transpose(0, 1), targets, out_lengths, target_lengths) for lp in (top, lower)
    )
    loss.backward()
    grads = [p.grad for p in model.front_end.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_unknown_front_end():
    with pytest.raises(ValueError, match=r"^front_end must be conv1d or conv2d, got 'conv3d'"):
        tiny(front_end="conv3d")


@pytest.mark.parametrize("proj_size", [0, 4])
def test_recurrent_dropout_keeps_padding_invariance(proj_size):
    # one mask a batch, drawn from the weights' shape alone: with the same random stream an
    # utterance gets the same mask padded in a batch as alone, so the same output
    model = tiny(2, proj_size=proj_size, recurrent_dropout=0.4).train()
    feats, lengths = padded_batch([17, 9])
    with torch.no_grad():
        torch.manual_seed(3)
        batch_lp, _ = model(feats, lengths)
        torch.manual_seed(3)
        alone_lp, alone_len = model(feats[1:, :9], lengths[1:])
        torch.manual_seed(4)
        other_lp, _ = model(feats[1:, :9], lengths[1:])
    m = int(alone_len[0])
    torch.testing.assert_close(batch_lp[1, :m], alone_lp[0], atol=1e-5, rtol=0)
    assert not torch.allclose(other_lp, alone_lp, atol=1e-3)  # another mask, another output


def test_recurrent_dropout_acts_in_training_only():
    plain = tiny(2)
    dropped = tiny(2, recurrent_dropout=0.5)  # same seed: same weights
    feats, lengths = padded_batch([14, 8])
    with torch.no_grad():
        want, _ = plain.eval()(feats, lengths)
        got, _ = dropped.eval()(feats, lengths)
        torch.testing.assert_close(got, want, atol=0, rtol=0)
        noisy, _ = dropped.train()(feats, lengths)
        assert not torch.allclose(noisy, want, atol=1e-3)
    # the dropped matrix is a function of the parameter: gradients still reach it
    log_probs, _ = dropped.train()(feats, lengths)
    log_probs.sum().backward()
    for layer in dropped.layers:
        for lstm in (layer.forward_lstm, layer.backward_lstm):
            grad = lstm.weight_hh_l0.grad
            assert grad is not None and float(grad.abs().sum()) > 0
    assert [type(p) for p in dropped.parameters()] == [type(p) for p in plain.parameters()]


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_recurrent_dropout_out_of_range(value):
    with pytest.raises(ValueError, match=r"^recurrent_dropout must be in \[0, 1\)"):
        tiny(2, recurrent_dropout=value)


def test_padding_content_is_irrelevant():
    model = tiny(2).eval()
    clean, lengths = padded_batch([16, 9, 3], garbage=False, seed=5)
    dirty, _ = padded_batch([16, 9, 3], garbage=True, seed=5)
    assert not torch.equal(clean, dirty)
    with torch.no_grad():
        a, out_len = model(clean, lengths)
        b, _ = model(dirty, lengths)
    for i, m in enumerate(out_len.tolist()):
        torch.testing.assert_close(a[i, :m], b[i, :m], atol=1e-6, rtol=0)


# ------------------------------------------------------------------ reverse_within_lengths


def test_reverse_within_lengths_by_hand():
    x = torch.arange(2 * 5 * 1, dtype=torch.float32).reshape(2, 5, 1)  # [[0..4], [5..9]]
    out = reverse_within_lengths(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]  # padding (8, 9) stays where it was


def test_reverse_within_lengths_twice_is_identity():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, 3, generator=gen)
    lengths = torch.tensor([9, 4, 1, 0])
    once = reverse_within_lengths(x, lengths)
    twice = reverse_within_lengths(once, lengths)
    assert torch.equal(twice, x)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(once[b, :n], x[b, :n].flip(0))
        assert torch.equal(once[b, n:], x[b, n:])


# ------------------------------------------------------------------ train vs eval, gradients


def test_train_and_eval_return_the_same_kind_of_output():
    model = tiny(2, dropout=0.3)
    feats, lengths = padded_batch([12, 7])
    model.train()
    train_out = model(feats, lengths)
    model.eval()
    with torch.no_grad():
        eval_out = model(feats, lengths)
    for out in (train_out, eval_out):
        assert isinstance(out, tuple) and len(out) == 2
    assert train_out[0].shape == eval_out[0].shape
    assert train_out[0].dtype == eval_out[0].dtype == torch.float32
    assert torch.equal(train_out[1], eval_out[1])
    for lp in (train_out[0], eval_out[0]):
        torch.testing.assert_close(lp.logsumexp(-1), torch.zeros(lp.shape[:2]), atol=1e-5, rtol=0)
    # Dropout is active in training only: eval is deterministic, train is not.
    with torch.no_grad():
        assert torch.equal(eval_out[0], model(feats, lengths)[0])
    model.train()
    assert not torch.equal(train_out[0], model(feats, lengths)[0])


def test_dropout_zero_train_equals_eval():
    model = tiny(2, dropout=0.0)
    feats, lengths = padded_batch([10, 6])
    with torch.no_grad():
        a, _ = model.train()(feats, lengths)
        b, _ = model.eval()(feats, lengths)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("proj_size", [0, 4])
def test_gradients_reach_every_parameter(proj_size):
    model = tiny(2, proj_size=proj_size, dropout=0.1).train()
    feats, lengths = padded_batch([20, 13])
    log_probs, out_lengths = model(feats, lengths)
    targets = torch.tensor([[1, 2, 3], [4, 5, 0]])
    loss = F.ctc_loss(
        log_probs.transpose(0, 1), targets, out_lengths, torch.tensor([3, 2]), blank=0
    )
    assert math.isfinite(loss.item())
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert float(param.grad.abs().sum()) > 0, name


def test_num_parameters_and_dims():
    model = tiny(2)
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    assert model.dims.to_dict()["vocab_size"] == VOCAB
    assert isinstance(ModelDims(**model.dims.to_dict()), ModelDims)


# ------------------------------------------------------------------ intermediate CTC


def test_intermediate_log_probs_are_the_head_on_that_layer():
    model = tiny(2).eval()
    feats, lengths = padded_batch([14, 9])
    with torch.no_grad():
        top, out_lengths, inter = model.forward_with_intermediate(feats, lengths, 1)
        plain, plain_lengths = model(feats, lengths)
        # the same model cut after its first BiLSTM layer, read by the same head
        x, n = model.front_end(feats, lengths)
        want = model.head(model.layers[0](x, n)).log_softmax(-1)
        none = model.forward_with_intermediate(feats, lengths, 0)[2]
    assert torch.equal(top, plain) and torch.equal(out_lengths, plain_lengths)
    torch.testing.assert_close(inter, want, atol=1e-6, rtol=0)
    assert not torch.allclose(inter, top, atol=1e-3)
    assert none is None
    with pytest.raises(ValueError, match="intermediate layer"):
        model.forward_with_intermediate(feats, lengths, 2)  # the top layer is no intermediate


def test_intermediate_view_shares_the_models_weights():
    model = tiny(2)
    view = IntermediateCTC(model, 1)
    assert {id(p) for p in view.parameters()} == {id(p) for p in model.parameters()}
    feats, lengths = padded_batch([11, 8])
    top, out_lengths, inter = view(feats, lengths)
    targets = torch.tensor([[1, 2], [3, 4]])
    loss = F.ctc_loss(inter.transpose(0, 1), targets, out_lengths, torch.tensor([2, 2]))
    loss.backward()
    # a loss on layer 1 alone reaches the front end and layer 1, never layer 2
    assert float(model.front_end.convs[0].weight.grad.abs().sum()) > 0
    assert float(model.layers[0].forward_lstm.weight_ih_l0.grad.abs().sum()) > 0
    assert model.layers[1].forward_lstm.weight_ih_l0.grad is None
    with pytest.raises(ValueError, match="intermediate layer"):
        IntermediateCTC(model, 2)
