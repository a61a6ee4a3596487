"""iis layer."""
