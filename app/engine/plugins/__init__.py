"""Algorithm files: discovery and loading (the catalogue) and the guarded runner that calls them."""
