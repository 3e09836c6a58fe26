"""The inference server of the contract: request parsing, the Flask application, gunicorn and its settings.
Serving never imports TensorFlow (the fusion network predicts with NumPy)."""
