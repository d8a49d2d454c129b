"""Command groups of the ``gsomia`` CLI, one module per area; ``cli.py`` assembles them."""
