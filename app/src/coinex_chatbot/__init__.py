"""CoinEx customer-service chatbot: Flask API, Dramatiq answer workers, help-centre knowledge base."""

__version__ = "1.0.0"
