"""normlab's norms in Keras terms: the layer a Keras user writes for what a study measured.

Plain text, no Keras needed: the report names it beside a recommendation for a Keras model.
Only norms with a Keras layer computing the same thing (at normlab's defaults) have one.
"""

from __future__ import annotations

from typing import Any

from normlab.norms.group import DEFAULT_GROUPS


def keras_layer(norm: str, options: dict[str, Any] | None = None) -> str | None:
    """The Keras layer that computes ``norm`` with ``options`` (a normlab registry name), as
    Python source; ``""`` for ``none`` (no layer); None where Keras has no such layer."""
    options = options or {}
    eps = options.get("eps")
    if norm == "none":
        return ""
    if norm == "bn_keras":
        return "keras.layers.BatchNormalization()"
    if norm == "bn":  # PyTorch's defaults in Keras's convention
        return "keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-05)"
    if norm == "ln":  # per position across channels, eps 1e-3: Keras's own default
        return (
            "keras.layers.LayerNormalization()"
            if eps is None
            else (f"keras.layers.LayerNormalization(epsilon={float(eps)!r})")
        )
    groups = {"ln_chw": 1, "in": -1, "gn": options.get("groups") or DEFAULT_GROUPS}.get(norm)
    if groups is None:
        return None
    return f"keras.layers.GroupNormalization(groups={groups}, epsilon={float(eps or 1e-5)!r})"
