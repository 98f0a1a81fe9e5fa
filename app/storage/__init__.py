"""SQLite stores: the only package that writes SQL."""
