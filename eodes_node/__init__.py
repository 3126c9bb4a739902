"""eodes-node: exchange signed electronic certificates of origin between partner countries."""

__version__ = "0.1.0"
