"""Domain logic: called by routes and by jobs; takes plain values, returns models."""
