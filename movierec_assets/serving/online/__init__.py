"""Online serving: the Recommender over one ServingState, the micro-batcher, the user lookups and
encoders, the batched answer path (candidates.py) and the HTTP API."""
