"""The base model's recipe (`pretrain/dvc.yaml`): real exam pages and demo pages in many styles."""
