import pytest
import torch
from torch import nn

from optprobe.curvature import HessianOperator, ParamLayout
from optprobe.curvature.data_conv import DataConvMode
from optprobe.evaluation import Evaluator, trained_parameters


class _Convs(nn.Module):
    """A data convolution of every kind followed by a convolution of activations (ordinary path)."""

    def __init__(self, first: nn.Module, n: int) -> None:
        super().__init__()
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[n - 1]
        self.first = first
        self.second = conv(first.out_channels, 2, 2, groups=2, bias=False)
        self.head = nn.LazyLinear(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.second(torch.tanh(self.first(x)))).flatten(1))


FIRST = {
    "conv1d": (1, lambda: nn.Conv1d(2, 4, 3, stride=2, padding=1, dilation=2, groups=2)),
    "conv2d": (2, lambda: nn.Conv2d(2, 4, (3, 2), stride=(1, 2), padding=(2, 1), bias=False)),
    "conv3d": (3, lambda: nn.Conv3d(1, 2, 2, padding=1, dilation=(1, 2, 1))),
    "circular": (2, lambda: nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular")),
    "same": (2, lambda: nn.Conv2d(2, 2, 3, padding="same")),  # unsupported: the ordinary path
}


def _case(kind: str) -> tuple[Evaluator, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    n, make = FIRST[kind]
    first = make()
    x = torch.randn(5, first.in_channels, *(7,) * n, dtype=torch.float64)
    model = _Convs(first, n).double()
    model(x)  # materialise the lazy head
    return Evaluator(model, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])), (x, torch.arange(5) % 3)


@pytest.mark.parametrize("kind", list(FIRST))
def test_double_backward_with_data_convolutions_matches_exact_hessian(kind):
    evaluator, batch = _case(kind)
    params = trained_parameters(evaluator.model)
    layout = ParamLayout.of(params)
    exact = torch.func.hessian(lambda t: evaluator.loss_at(layout.unflatten(t), batch))(
        layout.flatten(params).detach()
    )
    op = HessianOperator(evaluator, params, batch, method="double_backward")
    v = torch.randn(3, layout.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(op(v), v @ exact, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", list(FIRST))
def test_mode_routes_only_data_convolutions_and_leaves_the_model_alone(kind):
    evaluator, (x, _) = _case(kind)
    first = evaluator.model.first
    with DataConvMode():
        routed = first(x).grad_fn
        activations = first(x.clone().requires_grad_()).grad_fn
        with torch.no_grad():
            assert first(x).grad_fn is None
    expected = "ConvolutionBackward0" if kind == "same" else "_DataConvBackward"
    assert type(routed).__name__ == expected
    assert type(activations).__name__ == "ConvolutionBackward0"
    assert type(first(x).grad_fn).__name__ == "ConvolutionBackward0"  # nothing left patched
    assert not torch.overrides._get_current_function_mode_stack()


def test_unbatched_and_functional_calls():
    torch.manual_seed(0)
    w = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 9, dtype=torch.float64)
    with DataConvMode():
        unbatched = nn.functional.conv1d(x, w, padding=1)
        batched = nn.functional.conv1d(x[None], weight=w, stride=2)
    assert type(unbatched.grad_fn.next_functions[0][0]).__name__ == "ConvolutionBackward0"  # after unsqueeze
    assert type(batched.grad_fn).__name__ == "_DataConvBackward"
    torch.testing.assert_close(batched, nn.functional.conv1d(x[None], w, stride=2), rtol=0, atol=0)
