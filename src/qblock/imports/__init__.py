"""`qblock import`: labels from Roboflow and Label Studio exports become pages of the app's folder,
so the pipeline, the split by document and the round trips work on them unchanged."""
