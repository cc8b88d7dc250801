"""Shipped checkpoint of the symbolic model (a package only so that setuptools ships its data files)."""
