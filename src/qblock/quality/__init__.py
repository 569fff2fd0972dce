"""How good the boxes are, as a person judges them: the val pages the model gets most wrong,
drawn (and, with the crop-quality work, crop rates and edges snapped to the ink)."""
