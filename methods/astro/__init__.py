"""ASTRO components, one file each."""
