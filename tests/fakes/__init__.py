"""Local peers speaking vendors' documented protocols, for tests to talk to instead of mocks."""
