"""Assets of the serving group."""
