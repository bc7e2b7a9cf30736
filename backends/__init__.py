"""Model backends: the PIPO model, training, decoders and engines."""
