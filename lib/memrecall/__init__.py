"""memrecall: layer-wise analysis of memorized predictions in transformer LMs."""
