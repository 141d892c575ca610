"""Photo uploads and the public, content-addressed media they are served from."""
