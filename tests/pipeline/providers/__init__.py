"""Tests of the providers, each against its local fake."""
