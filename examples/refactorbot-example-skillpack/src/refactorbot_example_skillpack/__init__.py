"""An example skill pack."""
