"""Assets of the ml group."""
