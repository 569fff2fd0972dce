"""The names of evaluate's numbers: keys of metrics.json, MLflow metric names, champion choices."""

MAP50 = "mAP50"
MAP50_95 = "mAP50-95"
PRECISION = "precision"
RECALL = "recall"
VAL_PAGES = "val_pages"

HEADLINE = (MAP50, MAP50_95, PRECISION, RECALL)  # the per-run numbers, each in 0..1
CHAMPION_METRICS = (MAP50, MAP50_95)  # what `evaluate.champion_metric` may name
