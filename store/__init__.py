"""Persistence: SQL is the system of record, the FAISS index is a cache rebuilt from it."""
