"""gsomia: a General Security of Military Information Agreement as software."""

__version__ = "0.1.0"
