"""The names of evaluate's numbers: keys of metrics.json, MLflow metric names, champion choices."""

MAP50 = "mAP50"
MAP50_95 = "mAP50-95"
PRECISION = "precision"  # of the crops made at CONF_THRESHOLD, a question found at IoU >= 0.5
RECALL = "recall"  # the same, the share of questions found
VAL_PAGES = "val_pages"
CROP_RATE = "crop_rate"  # share of true questions cropped at IoU >= 0.9, at CONF_THRESHOLD, as propose crops
CROP_RATE_UNSNAPPED = "crop_rate_unsnapped"  # the same, with the model's own edges (no ink snapping)
FALSE_CROPS = "false_crops_per_page"
CONF_THRESHOLD = "conf_threshold"  # chosen on val; `qblock propose` uses it

HEADLINE = (MAP50, MAP50_95, PRECISION, RECALL, CROP_RATE)  # the per-run numbers, each in 0..1
CHAMPION_METRICS = (MAP50, MAP50_95, CROP_RATE)  # what `evaluate.champion_metric` may name

TEST = "test_"  # the same figures on the test split (whole documents nothing was chosen on): test_crop_rate ...
TEST_PAGES = "test_pages"
TEST_DOCUMENTS = "test_documents"
# the test split's crop rate of its worst and best document: how far one new workbook may fall from the headline
TEST_WORST_DOCUMENT = TEST + CROP_RATE + "_worst_document"
TEST_BEST_DOCUMENT = TEST + CROP_RATE + "_best_document"
TEST_HEADLINE = tuple(TEST + name for name in (CROP_RATE, MAP50, MAP50_95, FALSE_CROPS))  # what a new workbook gets
