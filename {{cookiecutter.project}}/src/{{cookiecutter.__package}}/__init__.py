"""{{ cookiecutter.project }}: a public Flask API in front of an internal data service."""

__version__ = "0.1.0"
