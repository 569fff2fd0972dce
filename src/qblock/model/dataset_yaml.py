"""The ultralytics dataset file, written fresh at run time with this machine's absolute paths.

The split stage's lists are relative to the export folder, so they are the same on the laptop
and the Windows desktop (and hash the same in DVC); ultralytics wants paths it can open from
wherever it runs, so train and evaluate turn them into absolute ones in a scratch folder.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from qblock.core.errors import UserError
from qblock.data.yolo_folder import SPLITS, read_manifest, split_list


def write_dataset_yaml(export_dir: Path, split_dir: Path, scratch: Path, test: bool = False) -> Path:
    """The dataset file; the test split is in it only when ``test`` (evaluate's measure of it), so
    nothing that trains or chooses can read it."""
    export_dir = export_dir.resolve()
    class_names = read_manifest(export_dir).summary["class_names"]
    scratch.mkdir(parents=True, exist_ok=True)
    data: dict = {"path": str(export_dir)}
    for split in SPLITS if test else ("train", "val"):
        entries = split_list(split_dir, split)
        if entries is None:
            continue
        target = scratch / f"{split}.txt"
        target.write_text("".join(f"{export_dir / e}\n" for e in entries), encoding="utf-8")
        data[split] = str(target.resolve())
    if "train" not in data or "val" not in data:
        raise UserError(f"{split_dir}: train.txt and val.txt are both needed; run the split stage")
    data["names"] = dict(enumerate(class_names))
    path = scratch / "data.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
