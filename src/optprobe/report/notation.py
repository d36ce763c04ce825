"""Subscripts written as text (``x_{t−1}``, ``x_(t−1)``, ``g_t``) rendered for a reader: HTML ``<sub>`` in
the page, Unicode subscripts in tooltips, matplotlib mathtext (``$x_{t-1}$``) in figures.

A subscript is recognised only after a single symbol that does not continue a word (``x_t``, ``R_med``,
``Σ_t``, ``L̂_t``), so column names such as ``inst_gap_prev`` or ``r_med/<layer>`` stay as they are.
Unbraced subscripts are 1–3 letters or digits not followed by another word character (nor, when longer than
one character, by ``/``: ``r_med/<layer>`` is a column).
"""

from __future__ import annotations

import re

_HAT = "\u0302"
#: symbol (one letter, Greek, ℓ, ∇, optionally with a combining hat, or the bar closing a norm ‖H‖_{1,1}),
#: then _{…}, _(…) or a short _abc.
_SUBSCRIPT = re.compile(
    r"((?<![\w\\$])[A-Za-zΑ-Ωα-ωℓ∇]" + _HAT + r"?|[‖|])"
    r"_(?:\{([^{}]+)\}|\(([^()]+)\)|([A-Za-z0-9]{1,3})(?!\w))"
)


def _parts(match: re.Match[str]) -> tuple[str, str] | None:
    """(symbol, subscript), or None for a column name such as ``r_med/<layer>``."""
    short = match.group(4)
    if short is not None and len(short) > 1 and match.string[match.end() : match.end() + 1] == "/":
        return None
    return match.group(1), next(g for g in match.groups()[1:] if g is not None)


def html_math(escaped: str) -> str:
    """``escaped`` (HTML-escaped text) with every ``a_{b}``, ``a_(b)`` and ``a_b`` as a<sub>b</sub>."""

    def sub(match: re.Match[str]) -> str:
        parts = _parts(match)
        if parts is None:
            return match.group(0)
        base, index = parts
        return f"{base}<sub>{index}</sub>"

    return _SUBSCRIPT.sub(sub, escaped)


_UNICODE_SUB = str.maketrans("0123456789+-−=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ")


def unicode_math(text: str) -> str:
    """``text`` with every subscript that Unicode has characters for as those (``x_{t−1}`` → xₜ₋₁), for
    places that take no markup (tooltips); other subscripts are left as written."""

    def sub(match: re.Match[str]) -> str:
        parts = _parts(match)
        if parts is None:
            return match.group(0)
        base, index = parts
        lowered = index.replace(" ", "")
        if all(c in "0123456789+-−=()aehijklmnoprstuvx" for c in lowered):
            return base + lowered.translate(_UNICODE_SUB)
        return match.group(0)

    return _SUBSCRIPT.sub(sub, text)


def mpl_math(text: str) -> str:
    """``text`` with every subscripted symbol as mathtext: ``x_{t−1}`` → ``$x_{t-1}$``, ``L̂_t`` →
    ``$\\hat{L}_{t}$``; text with a ``$`` already is left as it is."""
    if "$" in text:
        return text

    def sub(match: re.Match[str]) -> str:
        parts = _parts(match)
        if parts is None:
            return match.group(0)
        base, index = parts
        if base.endswith(_HAT):
            base = rf"\hat{{{base[0]}}}"
        index = index.replace("−", "-").replace(" ", r"\ ")
        if len(index) > 2 and index.isalpha():
            index = rf"\mathrm{{{index}}}"  # a name (R_med), not a product of symbols
        return f"${base}_{{{index}}}$"

    return _SUBSCRIPT.sub(sub, text)
