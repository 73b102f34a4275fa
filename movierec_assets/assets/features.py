"""Assets of the features group."""
