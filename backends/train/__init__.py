"""Training: tokenizer, AR teacher, PIPO SFT and OPD."""
