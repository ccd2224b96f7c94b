"""Data plane: everything between the HTTP routes and the inference backend."""
