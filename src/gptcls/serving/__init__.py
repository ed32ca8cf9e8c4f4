"""File prediction, the HTTP server and exports."""
