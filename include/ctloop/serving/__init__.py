"""Scoring for serving: the one path requests take to the model."""
