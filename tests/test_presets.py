"""Every training preset composes from conf/ and really starts training on the CPU: ultralytics
accepts its arguments, builds its model, loads a batch with its augmentation and takes one
optimizer step. (How good each preset is, is measured by bench/train_quality.py, not here.)"""

from __future__ import annotations

import math
import os

import pytest
from tests.conftest import REPO, conf_params

PRESETS = sorted(p.stem for p in (REPO / "conf" / "train").glob("*.yaml"))


class FirstBatchDone(Exception):
    pass


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Four demo pages of two workbooks through export and split: (export dir, split dir, root)."""
    from rich.console import Console

    from qblock.labeling.demo_data import write_demo_dataset
    from qblock.stages import export, split

    root = tmp_path_factory.mktemp("presets")
    write_demo_dataset(root / "app", documents=2, pages=2, seed=4)
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    params = conf_params()
    export.run(root / "app", root / "yolo", params.export, root / "export.json", quiet)
    split.run(root / "yolo", root / "split", params.split, quiet)
    return root / "yolo", root / "split", root


def test_the_presets_are_the_ones_people_are_told_about():
    assert PRESETS == ["cpu", "desktop_4070", "smoke"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_trains_one_batch_on_the_cpu(preset, tiny_dataset):
    from qblock.model.yolo_env import prepare_ultralytics, ultralytics_dataset, use_cpu_threads
    from qblock.stages.train import model_source, train_arguments

    export_dir, split_dir, root = tiny_dataset
    params = conf_params(f"train={preset}")
    assert params.train.preset == preset
    prepare_ultralytics(root)
    from ultralytics import YOLO

    losses = []

    def stop_after_one_batch(trainer):
        losses.append(float(trainer.loss.detach()))
        raise FirstBatchDone

    with ultralytics_dataset(export_dir, split_dir, root) as data_yaml:
        arguments = train_arguments(params, data_yaml, root / "runs" / preset, params.train.imgsz)
        # Only what a 2-core machine needs changed: the device and its loaders, and (auto batch
        # means 16 on a CPU) a batch it can hold at the preset's own image size.
        arguments |= {"device": "cpu", "workers": 0, "plots": False, "verbose": False}
        if arguments["batch"] < 1 or arguments["imgsz"] > 512:
            arguments["batch"] = 2
        model = YOLO(model_source(params.model)[0])
        use_cpu_threads(model, params.train.cpu_threads)
        model.add_callback("on_train_batch_end", stop_after_one_batch)
        with pytest.raises(FirstBatchDone):
            model.train(**arguments)
    assert len(losses) == 1 and math.isfinite(losses[0]) and losses[0] > 0
    got = model.trainer.args
    for name in ("imgsz", "mosaic", "fliplr", "hsv_s", "scale", "close_mosaic", "nbs", "rect"):
        assert getattr(got, name) == getattr(params.train, name), name


def test_a_gpu_out_of_memory_error_is_answered_with_the_setting_to_lower():
    from qblock.stages.train import _out_of_gpu_memory, out_of_memory_advice

    assert _out_of_gpu_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not _out_of_gpu_memory(RuntimeError("shapes cannot be multiplied"))
    advice = out_of_memory_advice(conf_params("train=desktop_4070"))
    assert "imgsz 1024" in advice and "-S train.batch=4" in advice and "train.imgsz=768" in advice
    fixed = out_of_memory_advice(conf_params("train=desktop_4070", "train.batch=8"))
    assert "-S train.batch=4" in fixed and "batch 8" in fixed


def test_few_training_pages_are_seen_larger_at_the_same_cost():
    """The cpu preset: 448 px for 64 pages or more (the demo's 56 stay at 448: 448 x sqrt(64 / 56) rounds
    down to it), larger for fewer by the square root, in steps of 32, up to train.imgsz_max."""
    from qblock.model.image_size import training_size

    cpu = conf_params("train=cpu").train
    sizes = {pages: training_size(cpu, pages) for pages in (0, 8, 16, 24, 32, 48, 56, 64, 500)}
    assert sizes == {0: 448, 8: 800, 16: 800, 24: 704, 32: 608, 48: 512, 56: 448, 64: 448, 500: 448}
    assert all(size % 32 == 0 for size in sizes.values())
    for preset in ("desktop_4070", "smoke"):  # sizes that already spend what the machine has: never larger
        train = conf_params(f"train={preset}").train
        assert training_size(train, 4) == train.imgsz


def test_large_questions_cap_the_size_a_page_is_seen_at(tmp_path):
    """A YOLOv8 head's boxes stop short beyond about train.box_reach px, so the size is capped where the
    training pages' large boxes (19 in 20) stay within it: one-column questions spanning 0.59 of a page are
    seen at 640 px, not 800 (cpu, 16 pages) or 1024 (desktop); narrow ones leave the size alone."""
    from PIL import Image

    from qblock.model.image_size import largest_box, training_size

    export = tmp_path / "yolo"
    (export / "images").mkdir(parents=True)
    (export / "labels").mkdir()
    entries = []
    for n, widths in enumerate([[0.83, 0.83], [0.83, 0.4]] * 10):  # A4 portrait: 827 x 1170
        Image.new("RGB", (827, 1170), "white").save(export / "images" / f"p{n}.png")
        (export / "labels" / f"p{n}.txt").write_text("".join(f"0 0.5 0.5 {w} 0.1\n" for w in widths))
        entries.append(f"images/p{n}.png")
    one_column = largest_box(export, entries)
    assert abs(one_column - 0.83 * 827 / 1170) < 1e-6
    cpu, desktop = conf_params("train=cpu").train, conf_params("train=desktop_4070").train
    assert training_size(cpu, 16, one_column) == 640 and training_size(desktop, 16, one_column) == 640
    assert training_size(cpu, 64, one_column) == 448  # within reach at the preset's own size
    assert training_size(cpu, 16, 0.28) == 800 and training_size(cpu, 16, None) == 800  # two columns; unknown
    from qblock.stages.train import page_size

    size, why = page_size(conf_params("train=cpu"), export, entries[:16])  # what `qblock train` says
    assert size == 640 and why is not None
    assert "seen at 640 px, not 800" in why and "0.59 of a page" in why and "train.box_reach 384" in why, why
    cpu.box_reach = 0
    assert training_size(cpu, 16, one_column) == 800  # 0: no cap
    (export / "labels" / "p0.txt").write_text("0 0.5 0.5 0.99 0.99\n")  # one odd box among 39 does not decide
    assert largest_box(export, entries) == one_column
    assert largest_box(export, []) is None
