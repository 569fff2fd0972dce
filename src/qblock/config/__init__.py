"""The parameters: `schema` (the typed params.yaml every stage reads) and `compose` (conf/ -> params.yaml)."""
