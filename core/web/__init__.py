"""The web layer: the FastAPI app factory, its guard and the offline API documentation."""
