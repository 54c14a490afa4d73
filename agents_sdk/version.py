"""The SDK's version, in a module of its own so submodules can name it (in User-Agent
headers) without importing the package they belong to."""

__version__ = "0.1.0"
