"""The movie index: embeddings (store and load), the int8 scoring pass and the exact top-n."""
