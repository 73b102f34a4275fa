"""Offline serving work: the champion's movie embeddings and the batch table of every user's top 10."""
