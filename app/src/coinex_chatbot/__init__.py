"""CoinEx customer-service chatbot: Flask API, Dramatiq answer workers, help-centre knowledge."""

__version__ = "1.1.0"
