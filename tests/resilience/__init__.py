"""Crash drills: real worker processes killed, Redis flushed, and the pipeline made to recover."""
