"""Between the machines: the NAS as DVC remote, the laptop/desktop round trips, the app folder
mirror, which model is where, pretrained weights fetched once."""
