"""The registered model: ultralytics weights behind MLflow's pyfunc interface.

MLflow copies this file into every logged model ("models from code"), so a model loads anywhere
ultralytics, pandas and MLflow are installed, qblock or not:

    model = mlflow.pyfunc.load_model("models:/question-block-detector@champion")
    boxes = model.predict(pd.DataFrame({"image": ["page_001.png"]}), params={"conf": 0.25})

Each output row is one proposed question block in the app's own terms: the image it was found
on, and `x`, `y`, `width`, `height` in pixels of that image (a `combinedBbox`), with its class
name and confidence. This file imports nothing from qblock on purpose.
"""

from __future__ import annotations

import getpass
import os
import tempfile

import mlflow
import pandas as pd

COLUMNS = ["image", "class", "confidence", "x", "y", "width", "height"]


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (some containers)
        return "anyone"


class QuestionBlockDetector(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        # Offline and quiet: never download, install or write settings into the user's home.
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_AUTOINSTALL", "false")
        # one settings folder for every load (not the user's ~/.config/Ultralytics, not a new one each time)
        os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), f"qblock-ultralytics-{_user()}"))
        from ultralytics import YOLO

        self.model = YOLO(context.artifacts["weights"])
        self.imgsz = int((context.model_config or {}).get("imgsz", 640))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        params = params or {}
        rows = []
        for image in (str(v) for v in model_input["image"]):
            result = self.model.predict(image, conf=float(params.get("conf", 0.25)), imgsz=self.imgsz,
                                        device=params.get("device") or None, verbose=False)[0]
            for (x0, y0, x1, y1), score, cls in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(),
                                                     result.boxes.cls.tolist(), strict=True):
                rows.append([image, result.names[int(cls)], round(score, 4), round(x0, 1), round(y0, 1),
                             round(x1 - x0, 1), round(y1 - y0, 1)])
        return pd.DataFrame(rows, columns=COLUMNS)


mlflow.models.set_model(QuestionBlockDetector())
