"""Around the person labeling: progress per document (`qblock status`) and synthetic labeled
workbooks (`qblock demo-data`)."""
