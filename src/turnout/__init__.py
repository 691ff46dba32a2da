"""turnout: an LLM gateway that routes each request by the operator's plain-language preferences."""

__version__ = "0.1.0"
