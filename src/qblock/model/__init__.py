"""The model: ultralytics set up offline and quiet, MLflow tracking and the registry, the
champion rule, the pyfunc model, pictures of predictions."""
