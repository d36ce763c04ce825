import warnings

import pytest
import torch

from optprobe.curvature import sharpness, spectral_norm
from optprobe.errors import ProbeWarning


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)
        yield


def test_top_k_and_bottom_match_exact_eigenvalues(case):
    eig = torch.linalg.eigvalsh(case.hessian())
    spec = sharpness(case.operator(), k=3, bottom=True, tol=1e-8, max_iter=200)
    scale = eig.abs().max().item()
    assert spec.converged
    for got, want in zip(spec.top, eig.flip(0)[:3].tolist(), strict=True):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6 * scale)
    assert spec.bottom == pytest.approx(eig[0].item(), rel=1e-4, abs=1e-6 * scale)
    assert spec.n_hvps <= min(200, eig.numel())
    assert spectral_norm(case.operator(), tol=1e-8) == pytest.approx(scale, rel=1e-4)


def test_known_quadratic_spectrum_and_reproducible():
    from .conftest import make_case

    case = make_case("quadratic")
    first = sharpness(case.operator(), k=2, bottom=True, tol=1e-10, seed=3)
    assert first.top == pytest.approx([5.0, 3.0], rel=1e-8)
    assert first.bottom == pytest.approx(-2.0, rel=1e-8)
    assert sharpness(case.operator(), k=2, bottom=True, tol=1e-10, seed=3) == first


def test_loose_tolerance_uses_fewer_products():
    from .conftest import make_case

    case = make_case("cnn")
    loose = sharpness(case.operator(), tol=1e-2)
    tight = sharpness(case.operator(), tol=1e-10, max_iter=200)
    assert loose.n_hvps < tight.n_hvps
    # at a loose tol the Kato–Temple gap is read off Ritz values, which overestimate it early: allow 3·tol
    assert loose.top[0] <= tight.top[0] * (1 + 1e-12)
    assert loose.top[0] == pytest.approx(tight.top[0], rel=3e-2)
    capped = sharpness(case.operator(), tol=1e-14, max_iter=3)
    assert capped.n_hvps == 3 and not capped.converged
