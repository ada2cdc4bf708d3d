"""The domain: embedding, instruction selection, prompt composition. No FastAPI here."""
