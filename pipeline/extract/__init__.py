"""Application extractors: pure parsers and state trackers over transport payloads."""
