"""Algorithm plug-ins: one file per algorithm type; the file name is the algorithm_type."""
