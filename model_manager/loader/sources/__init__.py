"""Where model files come from: Hugging Face, an Ollama registry, an S3 bucket."""
