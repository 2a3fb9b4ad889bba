"""REST API (DRF): the same rater loop as the pages, for scripts and other front ends."""
