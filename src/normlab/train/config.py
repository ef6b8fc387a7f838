"""One run's configuration: plain values, JSON-serializable, hashed into the run's identity."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from normlab.errors import NormlabError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run (and nothing about where it executes)."""

    dataset: str = "digits"
    """Dataset registry name."""
    dataset_options: dict[str, Any] = field(default_factory=dict)
    """Options for the dataset builder (e.g. ``num_examples`` for ``synthetic``)."""
    model: str = "resnet"
    """Model: ``resnet`` (the seed-block ResNet shaped by depth, widths, dropout_position and init,
    which only it reads), another built-in name (``resnet20``, ``preact_resnet18``, ...), or a
    factory ``pkg.module:factory`` / ``path/to/file.py:factory`` (``train/model_ref.py``). Part
    of the run's identity, like every field."""
    depth: int = 8
    """Weighted layers of the ResNet: 2 + 2 * blocks (8 = one seed block per stage)."""
    widths: tuple[int, ...] = (16, 32, 64)
    """Channels of each stage."""
    norm: str = "bn"
    """Normalization registry name."""
    norm_options: dict[str, Any] = field(default_factory=dict)
    """Options for the normalization (e.g. ``groups`` for ``gn``)."""
    bn_momentum: float | None = None
    """Running-statistics momentum (PyTorch convention) of every normalization that keeps running
    statistics; None = each norm's default. Setting it and ``norm_options.momentum`` is an error."""
    init: str = "default"
    """Initialization: ``default`` (PyTorch's), ``skipinit`` (any norm) or ``fixup`` (norm none)."""
    batch_size: int = 32
    """Examples per mini-batch; the last incomplete batch of an epoch is dropped."""
    sampler: str = "shuffle"
    """Batch sampler (``data/order.py``): ``shuffle`` (a fresh permutation each epoch) or
    ``balanced`` (class-balanced mini-batches)."""
    lr: float = 0.1
    """Peak learning rate."""
    optimizer: str = "sgd"
    """``sgd`` (with momentum) or ``adamw``."""
    momentum: float = 0.9
    """SGD momentum (beta1 for AdamW)."""
    weight_decay: float = 5e-4
    """L2 penalty (SGD) or decoupled decay (AdamW)."""
    norm_weight_decay: bool = True
    """Whether weight decay also applies to norm scales/shifts and biases (PyTorch applies it)."""
    dropout: float = 0.0
    """Dropout probability."""
    dropout_position: str = "head"
    """``head`` (before the classifier), ``before_norm`` or ``after_norm`` (in every block)."""
    epochs: int = 10
    """Passes over the training set (equal examples across batch sizes)."""
    steps: int | None = None
    """If set, train exactly this many optimizer steps instead (equal steps)."""
    schedule: str = "cosine"
    """Learning-rate schedule over the run's steps: ``cosine`` (to 0) or ``constant``."""
    agc_clip: float | None = None
    """Adaptive gradient clipping threshold lambda (Brock et al. 2021), unit-wise; None: off."""
    seed: int = 0
    """Initialization, data order and dropout seed; the same seed gives every norm the same order."""
    augment: bool = False
    """Standard 32x32 augmentation of every training batch: random crop with 4-pixel zero padding
    and horizontal flip, drawn from (seed, step) (``data/augment.py``)."""
    classes_per_batch: int | None = None
    """Correlated (non-i.i.d.) mini-batches: every batch drawn from exactly this many classes
    (``data/order.py``); None: the ``sampler``'s batches."""
    data_fingerprint: str = ""
    """Content hash of the data files the run reads, set by the planner ("" for built-in data):
    a changed file gives new runs, never results mixed across data."""
    model_format: str = ""
    """``"keras"`` when the model's factory returns a Keras model (converted by
    ``normlab.keras``), set by the planner; "" otherwise. The report then names the Keras layer
    for a recommended norm."""
    model_fingerprint: str = ""
    """Content hash of a ``file.py:factory`` or ``pkg.module:factory`` model's source files (and
    package version), set by the planner ("" for built-in models): a changed model gives new runs
    (``train/model_files.py``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    def identity(self) -> dict[str, Any]:
        """The fields that identify the run: all of them, except that a field added after the
        first release is left out while at its default, so that runs recorded before it existed
        keep their ids (and an old output folder resumes)."""
        data = self.to_dict()
        for name in ADDED_FIELDS:
            if data[name] == _DEFAULTS[name]:
                del data[name]
        return data

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["widths"] = list(self.widths)
        return data

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): the same config always gives the same text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def run_id(self) -> str:
        """Content hash of :meth:`identity`: a run's identity in the store."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NormlabError(f"unknown run config keys: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> RunConfig:
        return RunConfig.from_dict({**self.to_dict(), **changes})


ADDED_FIELDS = (
    "model",
    "augment",
    "classes_per_batch",
    "data_fingerprint",
    "model_format",
    "model_fingerprint",
)
"""RunConfig fields added after the first release (see :meth:`RunConfig.identity`)."""
_DEFAULTS = {f.name: f.default for f in fields(RunConfig) if f.name in ADDED_FIELDS}
