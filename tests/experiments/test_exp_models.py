"""Models: output shapes, a few SGD steps lower the loss, torch.func works (and HVPs for transformers)."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

from optprobe.errors import OptprobeError
from optprobe.experiments.models import CNN1D, GPT, MLP, BertMLM, SmallCNN, hf, resnet18, resnet_cifar

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


def classifier_case(model, x_shape, n_classes=10):
    x = torch.randn(8, *x_shape)
    y = torch.randint(0, n_classes, (8,))
    return model, (x, y), (8, n_classes)


def lm_case(model, vocab_out):
    x = torch.randint(0, 256, (4, 16))
    return model, (x, torch.roll(x, -1, 1)), (4, 16, vocab_out)


CASES = {
    "mlp_relu": lambda: classifier_case(MLP(64, 10, (32, 32), "relu", dropout=0.1), (64,)),
    "mlp_tanh": lambda: classifier_case(MLP(64, 10, (32,), "tanh"), (1, 8, 8)),
    "mlp_gelu": lambda: classifier_case(MLP(40, 3, (16,), "gelu"), (40,), 3),
    "cnn8": lambda: classifier_case(SmallCNN(1, 10, 8), (1, 8, 8)),
    "cnn28": lambda: classifier_case(SmallCNN(1, 10, 28, (4, 8)), (1, 28, 28)),
    "cnn32": lambda: classifier_case(SmallCNN(3, 10, 32, (4, 8, 8)), (3, 32, 32)),
    "cnn1d": lambda: classifier_case(CNN1D(40, 10, (8, 8)), (40,)),
    "resnet8_batch": lambda: classifier_case(resnet_cifar(8, 10, 1, "batch", 4), (1, 8, 8)),
    "resnet8_layer": lambda: classifier_case(resnet_cifar(8, 10, 3, "layer", 4), (3, 16, 16)),
    "resnet14_none": lambda: classifier_case(resnet_cifar(14, 10, 1, "none", 4), (1, 8, 8)),
    "gpt_sdpa": lambda: lm_case(GPT(256, 16, 1, 2, 16), 256),
    "gpt_math": lambda: lm_case(GPT(256, 16, 1, 2, 16, math_attention=True), 256),
    "bert_math": lambda: lm_case(BertMLM(257, 16, 1, 2, 16, math_attention=True), 257),
}


def loss_of(model, batch):
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


@pytest.mark.parametrize("case", sorted(CASES))
def test_shapes_and_sgd_reduces_loss(case):
    torch.manual_seed(0)
    model, batch, out_shape = CASES[case]()
    model.eval()  # dropout off so that the loss before/after is comparable
    assert model(batch[0]).shape == out_shape
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = loss_of(model, batch).item()
    for _ in range(5):
        opt.zero_grad()
        loss_of(model, batch).backward()
        opt.step()
    assert loss_of(model, batch).item() < before


def functional_loss(model, params, batch):
    return loss_of(lambda x: functional_call(model, params, (x,)), batch)


@pytest.mark.parametrize("case", sorted(CASES))
def test_functional_grad_matches_autograd(case):
    torch.manual_seed(0)
    model, batch, _ = CASES[case]()
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    g = grad(lambda p: functional_loss(model, p, batch))(params)
    loss_of(model, batch).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(g[name], p.grad, rtol=1e-4, atol=1e-6)


def check_forward_over_reverse_hvp(model, batch):
    """jvp of grad (forward-over-reverse) equals the double-backward Hessian-vector product."""
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    torch.manual_seed(1)
    v = {k: torch.randn_like(t) for k, t in params.items()}
    _, hv = jvp(grad(lambda p: functional_loss(model, p, batch)), (params,), (v,))
    names = list(params)
    g = torch.autograd.grad(
        loss_of(model, batch), [dict(model.named_parameters())[n] for n in names], create_graph=True
    )
    hv_ref = torch.autograd.grad(
        sum((gi * v[n]).sum() for gi, n in zip(g, names, strict=True)),
        [dict(model.named_parameters())[n] for n in names],
    )
    for n, ref in zip(names, hv_ref, strict=True):
        torch.testing.assert_close(hv[n], ref, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("case", ["gpt_math", "bert_math"])
def test_transformer_hvp_with_math_attention(case):
    torch.manual_seed(0)
    model, batch, _ = CASES[case]()
    check_forward_over_reverse_hvp(model, batch)


@pytest.mark.parametrize("cls", [GPT, BertMLM])
def test_math_attention_matches_sdpa(cls):
    torch.manual_seed(0)
    fused = cls(257, 16, 2, 2, 16).eval()
    math = cls(257, 16, 2, 2, 16, math_attention=True).eval()
    math.load_state_dict(fused.state_dict())
    x = torch.randint(0, 257, (2, 16))
    torch.testing.assert_close(math(x), fused(x), rtol=1e-4, atol=1e-5)


def test_gpt_is_causal_and_bert_is_not():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (1, 12))
    x2 = x.clone()
    x2[0, -1] = (x[0, -1] + 1) % 256
    gpt, bert = GPT(256, 12, 1, 2, 16).eval(), BertMLM(257, 12, 1, 2, 16).eval()
    torch.testing.assert_close(gpt(x)[:, :-1], gpt(x2)[:, :-1])
    assert not torch.allclose(bert(x)[:, 0], bert(x2)[:, 0])


def test_gpt_rejects_too_long_sequence():
    with pytest.raises(OptprobeError, match="block_size"):
        GPT(256, 8, 1, 2, 16)(torch.zeros(1, 9, dtype=torch.long))


def test_resnet_options():
    none = resnet_cifar(8, norm="none", width=4)
    scales = [p for n, p in none.named_parameters() if n.endswith("branch_scale")]
    assert len(scales) == 3 and all(s.item() == 0.0 for s in scales)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in none.modules())
    with pytest.raises(OptprobeError, match="6n\\+2"):
        resnet_cifar(10)
    with pytest.raises(OptprobeError, match="norm"):
        resnet_cifar(8, norm="group")


def test_resnet18_size_and_shape():
    model = resnet18(10, 3).eval()
    assert 11_000_000 < sum(p.numel() for p in model.parameters()) < 11_300_000
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers not installed (pip install transformers)")
@pytest.mark.parametrize(("factory", "vocab"), [(hf.hf_gpt2, 256), (hf.hf_bert, 257)])
def test_hf_models_forward_and_hvp(factory, vocab):
    torch.manual_seed(0)
    model = factory(n_layer=1, n_head=2, n_embd=16, block_size=16)
    model, batch, out_shape = lm_case(model, vocab)
    assert model(batch[0]).shape == out_shape
    check_forward_over_reverse_hvp(model, batch)


def test_hf_missing_transformers_names_pip_install(monkeypatch):
    def missing(name):
        raise ImportError(name)

    monkeypatch.setattr(hf.importlib, "import_module", missing)
    with pytest.raises(OptprobeError, match="pip install transformers"):
        hf.hf_gpt2()
