"""Tests of exporter.core."""
