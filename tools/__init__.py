"""Tools for working on the repository itself (not installed with punch): ``python -m tools.docgen``."""
