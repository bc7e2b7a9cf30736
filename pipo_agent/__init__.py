"""pipo-agent: an asynchronous chat-agent framework with a PIPO reasoning backend."""

__version__ = "0.1.0"
