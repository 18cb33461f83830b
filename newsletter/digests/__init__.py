"""The day's digests: who is due, which papers each gets, and the daily run around them."""
