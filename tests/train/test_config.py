"""A run's identity: content hash of its config, stable for runs recorded before a field existed."""

import hashlib
import json

from normlab.train import RunConfig
from normlab.train.config import ADDED_FIELDS


def test_fields_added_later_leave_old_run_ids_unchanged_at_their_defaults():
    config = RunConfig(norm="gn", batch_size=8, lr=0.01, seed=2)
    before = {k: v for k, v in config.to_dict().items() if k not in ADDED_FIELDS}
    text = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert config.run_id == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert set(ADDED_FIELDS) <= set(config.to_dict())  # the stored config keeps every field


def test_every_field_away_from_its_default_changes_the_id():
    config = RunConfig()
    changed = [
        config.replace(model="resnet20"),
        config.replace(augment=True),
        config.replace(classes_per_batch=2),
        config.replace(data_fingerprint="0123456789abcdef"),
        config.replace(batch_size=4),
    ]
    ids = {config.run_id, *(other.run_id for other in changed)}
    assert len(ids) == 1 + len(changed)
