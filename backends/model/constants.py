"""Constants shared by the model, the decoders and training."""

# Tokens folded into one backbone position. The method is defined for 2 ("pair"); code that depends on
# it uses this name so the assumption is visible.
PAIR = 2

# Label value ignored by every loss (Hugging Face convention).
IGNORE_INDEX = -100
