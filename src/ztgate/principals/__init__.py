"""Principals: the humans and systems on whose behalf agents act."""
