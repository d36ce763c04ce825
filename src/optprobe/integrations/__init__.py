"""Trainer integrations (Hugging Face, Lightning), each importing its framework only when used."""
