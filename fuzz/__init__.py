"""Fuzz targets for the node's three doors: envelopes from the partner, records and
feedback from the local systems, and the configuration file. ``make fuzz`` runs them."""
