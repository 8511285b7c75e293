"""Conversations and prompt templates (Lab 01, Lab 02)."""
