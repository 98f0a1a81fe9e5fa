"""The one trading core: the rules from a decision to a booked fill, with no I/O (see guard, fills)."""
