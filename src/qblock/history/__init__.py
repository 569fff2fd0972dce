"""What earlier runs say, read for people: `qblock show` and doctor's look through the logged values.

No stage imports this folder, and no stage depends on it in dvc.yaml: editing how runs are shown
reruns nothing (tests/test_structure.py).
"""
